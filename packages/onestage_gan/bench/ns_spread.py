"""The non-saturating MNIST arm of the slow test, FD at 1,500 / 2,000 / 2,500 iterations, for one draw.

    python bench/ns_spread.py --seed 1 --out runs/ns_spread          # default numerics
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python bench/ns_spread.py --seed 0 --tag avx2 --out runs/ns_spread

Each scheme runs once to 2,500 iterations, stopping at 1,500 and 2,000 to measure the FD of a copy of G and
resuming (resume is bit-exact, so the 2,500 result equals the slow test's). Appends one JSON line per draw to
OUT/results.jsonl. Needs TENFOLD_DATA with mnist/. About 6 CPU-minutes per draw on one thread.
"""
import argparse
import copy
import json
import shutil
from pathlib import Path

import torch
from onestage_gan.config import OSGANConfig
from onestage_gan.nets import DCGenerator
from onestage_gan.proxy import image_quality
from onestage_gan.train import quality, run_gan, sample
from tenfold import config, runtime

LR_D = {"two": "2e-4", "one": "5e-5"}  # as the slow test


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="default", help="label of the numerics setting in the output")
    ap.add_argument("--out", default="runs/ns_spread")
    a = ap.parse_args()
    out = Path(a.out) / f"{a.tag}-seed{a.seed}"
    base = ["data.name=mnist", "model.size=32", "model.g_width=16", "model.d_width=16", "batch_size=64",
            "eval_samples=2000", "log_every=100", "ckpt_every=100000", "device=cpu", f"seed={a.seed}",
            "precision=fp32", "max_steps=2500", "loss=nonsaturating", "model.d_norm=gn"]
    res = {"seed": a.seed, "tag": a.tag}
    with runtime.num_threads(1):
        for mode in ("two", "one"):
            d = out / mode
            shutil.rmtree(d, ignore_errors=True)
            cfg = config.load(OSGANConfig, None, base + [f"mode={mode}", f"optim.lr_d={LR_D[mode]}", f"out={d}"])
            for stop in (1500, 2000):
                r = run_gan(cfg, resume=str(d / "last.pt") if stop > 1500 else None, stop_at=stop)
                rng = torch.get_rng_state()  # the FD's sampling must not move the resumed run's stream
                res[f"{mode}_{stop}"] = quality(cfg, copy.deepcopy(r["G"]), torch.device("cpu"), 1)["fd"]
                torch.set_rng_state(rng)
            r = run_gan(cfg, resume=str(d / "last.pt"))
            res[f"{mode}_2500"], res[f"{mode}_step_cpu_ms"] = r["fd"], r["step_cpu_s"] * 1e3
        torch.manual_seed(a.seed)
        res["untrained"] = image_quality(cfg, sample(DCGenerator(100, 1, 16, 32), 2000, 100,
                                                     torch.device("cpu")))["fd"]
    print(json.dumps(res))
    with open(Path(a.out) / "results.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
