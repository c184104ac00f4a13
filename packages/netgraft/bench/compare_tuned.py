"""A symmetric comparison (issue #19): NetGraft, prefix-shared plain KD and from-scratch KD, each arm's learning
rate(s) tuned the same way on labelled validation images from the training split, then 3 seeds at the chosen lr.

Setting: configs/cifar10_vgg16_10shot_cpu.yaml (half the official schedule, 420 steps of batch 64 for every arm,
prefix and teacher logits cached) with `data.cache_crops=81` (every crop offset and its mirror: exactly the
official RandomCrop(32, 4) + flip augmentation), 10 unlabeled shots per class, 2,000 random test images.

  arms        netgraft   stage-1 lrs (block, t2s, s2t) and the stage-2 lr, all × m (base: the paper's values)
              kd         the same student with the copied teacher prefix, trained end to end, normalised-logit loss,
                         Adam lr 3e-4 × m
              kd_scratch the same student WITHOUT the copied prefix (all layers random), trained end to end with
                         Hinton KD (KL at T = 4 on the teacher's logits of the same augmented view), lr 3e-4 × m
  grid        m ∈ {1/3, 1, 3} for every arm (the same grid), seed 0; chosen by accuracy on `--val-per-class`
              labelled images per class drawn from the training split, disjoint from the shots (never the test set)
  seeds       0, 1, 2 at each arm's chosen m (seed 0 is the grid run)

Runs are single-threaded; the prefix caches are computed once and shared. Results are appended to
<out>/runs.jsonl and <out>/table.md is rewritten after every run, so a kill loses at most the run in progress;
re-running the command skips finished runs.

    python bench/compare_tuned.py [--out runs/compare-tuned] [--arms netgraft,kd,kd_scratch] [--seeds 0,1,2]
"""
from __future__ import annotations

import argparse
import json
import statistics as st
import time
from pathlib import Path

import torch
from netgraft.config import NetGraftConfig
from netgraft.train import default_teacher_path, run
from tenfold import config

HERE = Path(__file__).resolve().parents[1]
GRID = (1 / 3, 1.0, 3.0)
STAGE1 = {"lr_block": [2.5e-4] * 3, "lr_t2s": [2.5e-3] * 3, "lr_s2t": [2.5e-3] * 3}
STAGE2_LR, KD_LR = 1e-4, 3e-4


def arm_overrides(arm: str, m: float) -> list[str]:
    """The arm's method and its learning rate(s) scaled by the grid multiplier m."""
    if arm == "netgraft":
        return ["method=netgraft", f"stage2.lr={STAGE2_LR * m:.4g}"] + [
            f"stage1.{k}=[{', '.join(f'{v * m:.4g}' for v in vals)}]" for k, vals in STAGE1.items()]
    if arm == "kd":
        return ["method=kd", f"baseline.lr={KD_LR * m:.4g}"]
    if arm == "kd_scratch":
        return ["method=kd_scratch", "loss=kl", f"baseline.lr={KD_LR * m:.4g}"]
    raise SystemExit(f"unknown arm '{arm}' (netgraft, kd, kd_scratch)")


def lr_label(arm: str, m: float) -> str:
    return f"stage-2 {STAGE2_LR * m:.3g}, stage-1 ×{m:.3g}" if arm == "netgraft" else f"{KD_LR * m:.3g}"


def write_table(out: Path, rows: list[dict], arms: list[str]) -> None:
    lines = ["| arm | lr (grid: val acc) | chosen | seeds | test acc per seed | mean ± std |",
             "|---|---|---|---|---|---|"]
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        grid = sorted((r for r in mine if r["seed"] == 0), key=lambda r: r["m"])
        chosen = choose(mine)
        finals = [r for r in mine if chosen is not None and r["m"] == chosen]
        accs = [r["test_acc"] for r in sorted(finals, key=lambda r: r["seed"])]
        ms = f"{st.mean(accs):.2f} ± {st.stdev(accs):.2f}" if len(accs) > 1 else (f"{accs[0]:.2f}" if accs else "")
        lines.append(f"| {arm} | " + "; ".join(f"{lr_label(arm, r['m'])}: {r['val_acc']:.1f}" for r in grid)
                     + f" | {lr_label(arm, chosen) if chosen else '—'} | {len(accs)} | "
                     + " / ".join(f"{a:.2f}" for a in accs) + f" | {ms} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")


def choose(rows: list[dict]) -> float | None:
    """The grid multiplier with the best validation accuracy at seed 0 (once the whole grid has run)."""
    grid = [r for r in rows if r["seed"] == 0]
    if len({r["m"] for r in grid}) < len(GRID):
        return None
    return max(grid, key=lambda r: (r["val_acc"], -abs(r["m"] - 1)))["m"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/compare-tuned")
    ap.add_argument("--arms", default="netgraft,kd,kd_scratch")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--val-per-class", type=int, default=100)
    ap.add_argument("--teacher", default=None, help="default: $TENFOLD_MODELS/cifar10_vgg16_blockwise.pt")
    ap.add_argument("--extra", nargs="*", default=[], help="more config overrides for every run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    teacher = args.teacher or default_teacher_path()
    if teacher is None:
        raise SystemExit("no teacher: pass --teacher or set TENFOLD_MODELS")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arms, seeds = args.arms.split(","), [int(s) for s in args.seeds.split(",")]
    log = out / "runs.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    memo: dict = {}
    base = ["device=cpu", "data.cache_crops=81", f"data.val_labelled_per_class={args.val_per_class}",
            f"model.teacher_ckpt={teacher}"] + args.extra

    def one(arm: str, m: float, seed: int) -> None:
        if any(r["arm"] == arm and r["m"] == m and r["seed"] == seed for r in rows):
            return
        name = f"{arm}-m{m:.3g}-s{seed}"
        cfg = config.load(NetGraftConfig, HERE / "configs" / "cifar10_vgg16_10shot_cpu.yaml",
                          base + arm_overrides(arm, m) + [f"seed={seed}", f"out={out / name}"])
        t0 = time.time()
        s = run(cfg, memo=memo)
        rec = {"arm": arm, "m": m, "seed": seed, "val_acc": s["val_acc"], "test_acc": s["test_acc"],
               "teacher_acc": s["teacher_acc"], "steps": s["steps"], "wall_s": round(time.time() - t0, 1),
               "overrides": arm_overrides(arm, m)}
        rows.append(rec)
        with log.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        write_table(out, rows, arms)
        print(json.dumps(rec), flush=True)

    # cheap arms first (cached prefix), the from-scratch arm (full forward/backward) last; within each group all
    # grids before any extra seed, so a partial run is still balanced across arms
    for group in ([a for a in arms if a != "kd_scratch"], [a for a in arms if a == "kd_scratch"]):
        for arm in group:
            for m in GRID:
                one(arm, m, seeds[0])
        for seed in seeds[1:]:
            for arm in group:
                one(arm, choose([r for r in rows if r["arm"] == arm]), seed)
    write_table(out, rows, arms)
    print((out / "table.md").read_text())


if __name__ == "__main__":
    main()
