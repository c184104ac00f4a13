"""The slow test's minimax MNIST arm, longer and with other settings: FD every 500 iterations, for one setting.

    python bench/minimax_sweep.py --tag spec-lrd1.35e-5 --mode two --d-norm bn --lr-d 1.35e-5 --steps 2500
    python bench/minimax_sweep.py --tag g1e-3 --lr-d 1.35e-5 --steps 2500 optim.lr_g=1e-3   # any config override
    python bench/minimax_sweep.py --tag r1-one --mode one --lr-d 2e-4 --seed 1 optim.r1=10  # the slow test's arm

The spec's settings do not learn at this scale (D saturates); with the R1 penalty (optim.r1=10) and lr_D 2e-4 both
schemes do (README "minimax", tests/test_osgan_slow.py docstring).

Same data, model and FD as tests/test_osgan_slow.py (MNIST 32 px, d = 16, batch 64, 2,000 samples in the package's
MNIST-CNN feature space). The run stops every 500 iterations, measures the FD of a copy of G and resumes (resume is
bit-exact, so the curve is that of one uninterrupted run). Appends one JSON line per setting to OUT/results.jsonl
and rewrites OUT/table.md; the run folder OUT/<tag> keeps the sample grids (`samples/step_N.png`), which show mode
collapse where the FD alone would not. One thread; about 2-3 CPU-minutes per 1,000 iterations on an idle core.
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

EVERY = 500


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", required=True, help="name of this setting in the table and its run folder")
    ap.add_argument("--mode", choices=["one", "two"], default="two")
    ap.add_argument("--d-norm", choices=["bn", "gn", "ln", "none"], default="bn")
    ap.add_argument("--lr-d", default="2e-4")
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/osgan-minimax")
    ap.add_argument("overrides", nargs="*", help="more KEY=VALUE config overrides")
    a = ap.parse_args()
    d = Path(a.out) / a.tag
    shutil.rmtree(d, ignore_errors=True)
    cfg = config.load(OSGANConfig, None, [
        "data.name=mnist", "model.size=32", "model.g_width=16", "model.d_width=16", "batch_size=64",
        "eval_samples=2000", "log_every=100", "ckpt_every=100000", "device=cpu", f"seed={a.seed}", "precision=fp32",
        f"max_steps={a.steps}", "loss=minimax", f"model.d_norm={a.d_norm}", f"mode={a.mode}", f"optim.lr_d={a.lr_d}",
        f"out={d}", *a.overrides])
    row = {"tag": a.tag, "seed": a.seed, "mode": a.mode, "d_norm": a.d_norm, "lr_d": a.lr_d,
           "overrides": a.overrides, "fd": {}}
    with runtime.num_threads(1):
        stops = list(range(EVERY, a.steps, EVERY)) + [a.steps]
        for i, stop in enumerate(stops):
            resume = str(d / "last.pt") if i else None
            if stop < a.steps:
                r = run_gan(cfg, resume=resume, stop_at=stop)
                rng = torch.get_rng_state()  # the FD's sampling must not move the resumed run's stream
                row["fd"][stop] = round(quality(cfg, copy.deepcopy(r["G"]), torch.device("cpu"), 1)["fd"], 1)
                torch.set_rng_state(rng)
            else:
                row["fd"][stop] = round(run_gan(cfg, resume=resume)["fd"], 1)
            print(a.tag, stop, row["fd"][stop], flush=True)
        torch.manual_seed(a.seed)  # the untrained generator: the runs' initial weights, as in the slow test
        row["untrained"] = round(image_quality(cfg, sample(DCGenerator(100, 1, 16, 32), 2000, 100,
                                                           torch.device("cpu")))["fd"], 1)
    out = Path(a.out)
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(write_table(out))


def write_table(out: Path) -> str:
    """OUT/table.md from every setting in OUT/results.jsonl (lines of other shapes are skipped)."""
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    lines = ["| setting | seed | FD every 500 iterations | untrained | last / untrained |", "|---|---|---|---|---|"]
    for r in (r for r in rows if "fd" in r and "untrained" in r):
        fds = list(r["fd"].values())
        lines.append(f"| {r['tag']} ({r['mode']}-stage, {r['d_norm']} D, lr_D {r['lr_d']} {' '.join(r['overrides'])})"
                     f" | {r['seed']} | {' / '.join(map(str, fds))} | {r['untrained']} | "
                     f"{fds[-1] / r['untrained']:.2f}x |")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
