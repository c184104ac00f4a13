"""CPU benchmark: one MosaicKD outer iteration (D step + G step + kd_steps student steps on 2B images) vs one
plain-KD iteration (one student step on 2B OOD images), same teacher (WRN-40-2), student (WRN-16-1) and batch,
measured in one run. Random tensors stand in for the OOD images (no data needed).

    OMP_NUM_THREADS=1 python bench/cpu.py [--batch 16] [--kd-steps 5] [--json runs/bench_cpu.json]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from mosaickd.game import MosaicGame
from mosaickd.method import student_kd_loss
from mosaickd.nets import NORMALIZE_DICT, Normalizer, PatchDiscriminator, UpsampleGenerator
from tenfold.bench import device_name, time_it, write_json
from tenfold.nets import create, load_teacher

MODELS = Path(os.environ.get("TENFOLD_MODELS") or Path(__file__).resolve().parents[3].parent / "shared" / "models")
TEACHER = MODELS / "cifar10_animals6_wrn40_2.pt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16, help="B: synthetic batch; student steps see 2B images")
    ap.add_argument("--kd-steps", type=int, default=5, help="student steps per outer iteration (spec: 5)")
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions (median reported)")
    ap.add_argument("--json", default="runs/bench_cpu.json", help="where to write the JSON result")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cpu")
    teacher = load_teacher(TEACHER) if TEACHER.is_file() else create("wrn40_2", 6).eval().requires_grad_(False)
    student = create("wrn16_1", 6)
    B = args.batch
    norm = Normalizer(*NORMALIZE_DICT["cifar10"])
    game = MosaicGame(UpsampleGenerator(100, 64), PatchDiscriminator(3, 128), student, teacher, norm,
                      total_iters=10_000, kd_steps=args.kd_steps, device=dev)
    ood = torch.randn(2 * B, 3, 32, 32)

    def mosaic_iteration():
        game.outer_step(ood[:B], lambda: (ood[:B], None))

    opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def kd_iteration():  # kd_vanilla.py's step on 2B OOD images
        with torch.no_grad():
            t = teacher(ood)
        loss = student_kd_loss(student(ood), t, 5.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    mk = time_it(mosaic_iteration, warmup=1, repeat=args.repeat)
    kd = time_it(kd_iteration, warmup=1, repeat=args.repeat)
    ratio = mk["median_s"] / kd["median_s"]
    per_step = ratio / args.kd_steps
    res = {"device": device_name(dev), "threads": torch.get_num_threads(), "batch": B, "kd_steps": args.kd_steps,
           "mosaickd_iteration_s": mk["median_s"], "kd_iteration_s": kd["median_s"],
           "ratio_mosaickd_iteration_over_kd_iteration": ratio, "ratio_per_student_step": per_step,
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    write_json(args.json, res)
    print(f"mosaickd iteration {mk['median_s']:.3f} s, plain-KD iteration {kd['median_s']:.3f} s "
          f"(B={B}, {args.kd_steps} student steps of 2B per MosaicKD iteration, {device_name(dev)})")
    print(f"ratio per student step (mosaickd/kd): {per_step:.2f}")
    print(f"ratio mosaickd-iteration/kd-iteration: {ratio:.2f}")


if __name__ == "__main__":
    main()
