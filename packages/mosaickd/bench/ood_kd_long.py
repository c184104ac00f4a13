"""MosaicKD vs plain KD on the same OOD images, 2,000 student steps, 3 seeds, full animal test set (issue #20).

    TENFOLD_DATA=../shared/data TENFOLD_MODELS=../shared/models \\
        python packages/mosaickd/bench/ood_kd_long.py --out runs/mosaickd-long            # ~45 min CPU, 1 thread

Teacher `cifar10_animals6_wrn40_2` (CIFAR-10's six animal classes, 85.05 %), OOD transfer set = all 20,000 CIFAR-10
*vehicle* train images (classes 0, 1, 8, 9; labels unused), evaluation = all 6,000 animal test images (chance
16.7 %). Student CNN-32 (`mosaickd.nets`), SGD lr 0.1 cosine, 2,000 student steps of 64 images in both arms:
  * plain KD: 64 OOD images a step, T = 1;
  * MosaicKD: B = 32 synthetic + 32 OOD images a step, 500 outer iterations x 4 student steps, generator ngf 32,
    patch discriminator ndf 64 (the paper's losses and weights; G and D narrower than the paper's to fit a CPU).
Deviations from the paper's setting, for a CPU (documented in the README): the smaller student and G/D, 2,000
instead of ~40,000 student steps, and no augmentation of the OOD stream (so the teacher's OOD logits are computed
once, `data.cache_teacher_ood`), in both arms alike.

Each arm x seed is a run folder OUT/<arm>-s<seed> (config.yaml, metrics.jsonl with the test top-1 every 250
student steps, summary.json); a finished folder is reused, not re-run, so an interrupted bench continues where it
stopped. Writes OUT/results.jsonl (one line per arm x seed), OUT/table.md and OUT/curves.png (top-1 vs student
step, every arm x seed).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from tenfold.benchrows import machine

ARMS = ("kd", "mosaickd")
STEPS = 2000  # student steps per arm
EVAL_EVERY = 250  # student steps between test evaluations


def common(seed: int, ood_per_class: int) -> list[str]:
    teacher = Path(os.environ.get("TENFOLD_MODELS", "../shared/models")) / "cifar10_animals6_wrn40_2.pt"
    return ["data.in_domain=cifar10", "data.in_domain_classes=[2,3,4,5,6,7]", "data.test_per_class=1000",
            "data.ood=[cifar10]", "data.ood_classes=[0,1,8,9]", f"data.ood_per_class={ood_per_class}",
            "data.kd_ood_augment=false", "data.cache_teacher_ood=true", f"model.teacher={teacher}",
            "model.student=cnn32", "device=cpu", f"seed={seed}"]


def arm_overrides(arm: str, steps: int) -> list[str]:
    if arm == "kd":
        return ["method=vanilla", "augment=none", "T=1", "batch_size=64", f"steps={steps}", "lr=0.1",
                "eval_teacher=false", f"eval_every={EVAL_EVERY}"]
    kd_steps = 4
    return ["generator.ngf=32", "discriminator.ndf=64", "train.batch_size=32", f"train.iters={steps // kd_steps}",
            f"train.kd_steps={kd_steps}", "optim.lr=0.1", "train.eval_teacher=false",
            f"train.eval_every={EVAL_EVERY // kd_steps}"]


def curve(run_dir: Path, arm: str) -> list[tuple[int, float]]:
    """(student step, test top-1) from the run's metrics; MosaicKD logs outer iterations of 4 student steps."""
    per = 1 if arm == "kd" else 4
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("split") == "test" and "top1" in r:
            out.append((r["step"] * per, r["top1"]))
    return out


def run_arm(arm: str, seed: int, args) -> dict:
    from mosaickd.baselines import run_kd
    from mosaickd.config import KDConfig, MosaicConfig
    from mosaickd.train import run_mosaic
    from tenfold import runtime
    from tenfold.config import load

    d = Path(args.out) / f"{arm}-s{seed}"
    if not (d / "summary.json").is_file():
        ov = common(seed, args.ood_per_class) + arm_overrides(arm, args.steps) + [f"out={d}"]
        resume = str(d / "last.pt") if (d / "last.pt").is_file() else None  # exact resume of a killed arm
        t = time.time()
        with runtime.num_threads(args.threads):
            if arm == "kd":
                run_kd(load(KDConfig, None, ov), resume=resume)
            else:
                run_mosaic(load(MosaicConfig, None, ov), resume=resume)
        print(f"{arm} seed {seed}: {time.time() - t:.0f} s", flush=True)
    s = json.loads((d / "summary.json").read_text())
    return {"arm": arm, "seed": seed, "last_top1": s["last_top1"], "best_top1": s["best_top1"],
            "student_steps": s["student_steps"], "wall_s": s.get("wall_s"), "curve": curve(d, arm)}


def table(rows: list[dict], args) -> str:
    by = {(r["arm"], r["seed"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    lines = ["| seed | plain KD | MosaicKD | MosaicKD − KD |", "|---|---|---|---|"]
    gaps = []
    for s in seeds:
        kd, mk = by.get(("kd", s)), by.get(("mosaickd", s))
        cell = lambda r: f"{r['last_top1']:.2f}" if r else "–"  # noqa: E731
        gap = f"{mk['last_top1'] - kd['last_top1']:+.2f}" if kd and mk else "–"
        if kd and mk:
            gaps.append(mk["last_top1"] - kd["last_top1"])
        lines.append(f"| {s} | {cell(kd)} | {cell(mk)} | {gap} |")
    for name, f in (("mean", statistics.mean), ("std", statistics.stdev)):
        vals = {a: [r["last_top1"] for r in rows if r["arm"] == a] for a in ARMS}
        if all(len(v) > 1 for v in vals.values()) and len(gaps) > 1:
            lines.append(f"| {name} | {f(vals['kd']):.2f} | {f(vals['mosaickd']):.2f} | {f(gaps):+.2f} |")
    head = (f"Top-1 % on the 6,000 CIFAR-10 animal test images after {args.steps} student steps (chance 16.7 %), "
            f"teacher cifar10_animals6_wrn40_2, OOD = {4 * args.ood_per_class} vehicle images. "
            f"Machine: {machine()}; {args.threads} thread(s). "
            f"Command: python packages/mosaickd/bench/ood_kd_long.py --seeds {' '.join(map(str, args.seeds))}")
    return head + "\n\n" + "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        xs, ys = zip(*r["curve"]) if r["curve"] else ((), ())
        ax.plot(xs, ys, color="C0" if r["arm"] == "kd" else "C3", alpha=0.8, marker="o", ms=3,
                label=f"{'plain KD' if r['arm'] == 'kd' else 'MosaicKD'} seed {r['seed']}")
    ax.axhline(100 / 6, color="grey", ls="--", lw=1, label="chance")
    ax.set_xlabel("student step")
    ax.set_ylabel("animal test top-1 (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--out", default="runs/mosaickd-long")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    ap.add_argument("--steps", type=int, default=STEPS, help="student steps per arm (a multiple of 4)")
    ap.add_argument("--ood-per-class", type=int, default=5000, help="vehicle images per class in the OOD pool")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.steps % 4 or args.steps < EVAL_EVERY:
        ap.error(f"--steps must be a multiple of 4 and at least {EVAL_EVERY}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [run_arm(a, s, args) for s in args.seeds for a in args.arms]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "table.md").write_text(table(rows, args))
    plot(rows, out / "curves.png")
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
