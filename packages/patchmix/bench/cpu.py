"""CPU benchmark: PatchMix step time with mixing vs the same step without mixing (mix_p=0), one run.

    python bench/cpu.py [--out bench/cpu.json] [--batch 128] [--repeat 8]

Both steps compute the same passes (mix_p=0 feeds the unmixed views through the same three loss terms),
so the ratio is the cost of the mixing itself. Also reported: the no-mix baselines (src_only: 1 online +
1 momentum pass; mocov3: 2 + 2) and the mixer's time per call. Measurements are interleaved (A, B, A, B...)
so background load hits both sides alike; the headline ratio uses CPU process time (wall time printed too).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from patchmix.config import PretrainConfig
from patchmix.method import patch_mix
from patchmix.models import build_models
from patchmix.train import StepFn, build_optimizer
from tenfold import config as config_mod
from tenfold.bench import device_name, write_json
from tenfold.loop import LoopState

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def make(objective: str, mix_p: float, batch: int):
    cfg = config_mod.load(PretrainConfig, DEMO, ["device=cpu", f"optim.batch_size={batch}",
                                                 f"loss.objective={objective}", f"mix.mix_p={mix_p}"])
    torch.manual_seed(0)
    online, mom = build_models(cfg.model, cfg.model.framework)
    opt = build_optimizer(cfg, online)
    return StepFn(cfg, online, mom, opt, torch.device("cpu"), 15, 1000)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).with_name("cpu.json")))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    arms = {"patchmix": make("patchmix", 1.0, args.batch), "patchmix_mix_off": make("patchmix", 0.0, args.batch),
            "src_only": make("src_only", 1.0, args.batch), "mocov3": make("mocov3", 1.0, args.batch)}
    x = torch.rand(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    wall = {k: [] for k in arms}
    cpu = {k: [] for k in arms}
    for i in range(args.repeat + 2):
        for name, step in arms.items():
            t0, c0 = time.perf_counter(), time.process_time()
            step((x, None), LoopState(step=i))
            if i >= 2:  # warm-up
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    xn = torch.randn(args.batch, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(50):
        patch_mix(xn, 2, 4, g)
    mixer_s = (time.perf_counter() - t0) / 50
    # CPU process time of this process: on a shared machine wall time mostly measures the neighbours' load.
    ratio = med_cpu["patchmix"] / med_cpu["patchmix_mix_off"]
    res = {"device": device_name(torch.device("cpu")), "batch": args.batch, "model": "ViT D=64 depth 2 patch 4, 32 px",
           "step_wall_s": med, "step_cpu_s": med_cpu, "mixer_s_per_call": mixer_s,
           "ratio_mix_on_over_mix_off": ratio,
           "ratio_mix_on_over_mix_off_wall": med["patchmix"] / med["patchmix_mix_off"],
           "ratio_patchmix_over_src_only": med_cpu["patchmix"] / med_cpu["src_only"],
           "ratio_patchmix_over_mocov3": med_cpu["patchmix"] / med_cpu["mocov3"],
           "mixer_fraction_of_step": 2 * mixer_s / med["patchmix"]}
    write_json(args.out, res)
    print(f"{'arm':<18}{'wall s/step':>12}{'cpu s/step':>12}")
    for k in arms:
        print(f"{k:<18}{med[k]:>12.4f}{med_cpu[k]:>12.4f}")
    print(f"mixer per call: {mixer_s * 1e3:.2f} ms ({100 * res['mixer_fraction_of_step']:.1f}% of a PatchMix step, "
          f"2 calls)")
    print(f"ratio patchmix/src_only: {res['ratio_patchmix_over_src_only']:.2f}; "
          f"patchmix/mocov3: {res['ratio_patchmix_over_mocov3']:.2f}")
    print(f"wall-time ratio mixing on / off: {res['ratio_mix_on_over_mix_off_wall']:.3f}")
    print(f"ratio A/B (mixing on / mixing off, same step, CPU time): {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
