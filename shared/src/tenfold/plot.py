"""Pictures of a run: `curves.png` (loss and the main metric against step, from metrics.jsonl), sample grids,
and 2-D scatter plots. Headless (matplotlib's Agg backend); matplotlib and torch are imported on use.

    tenfold-plot runs/a runs/b --out compare.png     # overlay runs (method vs baseline)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

__all__ = ["curves", "save_grid", "save_scatter", "main", "main_metric"]

# preferred "main metric" keys, best first (first match in a run's records wins)
MAIN_METRICS = ("test_acc", "acc", "top1", "knn_top1", "knn_acc", "knn", "val_auc", "auc", "ap", "fid",
                "accuracy", "linear_acc")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _records(run_dir: Path) -> list[dict]:
    p = Path(run_dir) / "metrics.jsonl"
    if not p.is_file():
        return []
    out = []
    for line in p.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), (int, float)):
            out.append(rec)
    return out


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def main_metric(records: list[dict]) -> str | None:
    keys = {k for r in records for k, v in r.items() if _num(v)}
    for m in MAIN_METRICS:
        if m in keys:
            return m
    for m in MAIN_METRICS:
        for k in sorted(keys):
            if m in k and "loss" not in k:
                return k
    return None


def _loss_key(records: list[dict]) -> str | None:
    keys = {k for r in records for k, v in r.items() if _num(v)}
    if "loss" in keys:
        return "loss"
    losses = sorted(k for k in keys if "loss" in k)
    return losses[0] if losses else None


def _series(records, key):
    """{stage: ([steps], [values])} — stages kept apart when a loop restarts its step count per stage."""
    out: dict = {}
    for r in records:
        if _num(r.get(key)):
            xs, ys = out.setdefault(r.get("stage"), ([], []))
            xs.append(r["step"])
            ys.append(r[key])
    return out


def curves(run_dirs, path: str | os.PathLike | None = None, labels=None) -> Path | None:
    """Draw loss and the main metric against step for one run (to <run>/curves.png) or several overlaid.
    Returns the path, or None when no run has numeric records."""
    run_dirs = [Path(d) for d in (run_dirs if isinstance(run_dirs, (list, tuple)) else [run_dirs])]
    runs = [(d, _records(d)) for d in run_dirs]
    runs = [(d, r) for d, r in runs if r]
    if not runs:
        return None
    path = Path(path) if path is not None else run_dirs[0] / "curves.png"
    all_recs = [rec for _, r in runs for rec in r]
    panels = [k for k in (_loss_key(all_recs), main_metric(all_recs)) if k]
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    for ax, key in zip(axes[0], panels):
        for i, (d, recs) in enumerate(runs):
            name = labels[i] if labels else (d.name if len(runs) > 1 else None)
            for stage, (xs, ys) in _series(recs, key).items():
                lab = " ".join(str(x) for x in (name, f"stage {stage}" if stage is not None else None) if x)
                ax.plot(xs, ys, label=lab or None, marker="." if len(xs) < 30 else None)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def save_grid(images, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Save a (N, C, H, W) batch (values in [0, 1], or [-1, 1] which is mapped to [0, 1]) as one PNG grid."""
    import torch
    from torchvision.utils import save_image

    x = torch.as_tensor(images).detach().float().cpu()
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.numel() and x.min() < 0:
        x = (x + 1) / 2
    nrow = nrow or max(1, int(math.ceil(math.sqrt(len(x)))))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(x.clamp(0, 1), path, nrow=nrow, padding=1)
    return path


def save_scatter(real, fake, path: str | os.PathLike, title: str = "") -> Path:
    """2-D points: real (grey) vs generated (red)."""
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 4))
    r, f = np.asarray(real, dtype=float), np.asarray(fake, dtype=float)
    ax.scatter(r[:, 0], r[:, 1], s=2, c="0.6", label="real")
    ax.scatter(f[:, 0], f[:, 1], s=2, c="tab:red", alpha=0.6, label="generated")
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="upper right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tenfold-plot", description="Redraw curves.png of one run, or overlay several "
                                "runs (e.g. a method and its baseline) in one picture: loss and the main metric "
                                "against step, from each run's metrics.jsonl.",
                                epilog="Examples: tenfold-plot runs/demo-mgc   |   tenfold-plot runs/a runs/b "
                                       "--labels method baseline --out compare.png")
    p.add_argument("runs", nargs="+", help="run directories (each with metrics.jsonl)")
    p.add_argument("--out", help="PNG path (default: <run>/curves.png for one run, ./curves-compare.png for several)")
    p.add_argument("--labels", nargs="+", help="legend labels, one per run (default: directory names)")
    args = p.parse_args(argv)
    if args.labels and len(args.labels) != len(args.runs):
        print(f"error: {len(args.labels)} labels for {len(args.runs)} runs", file=sys.stderr)
        return 2
    missing = [r for r in args.runs if not (Path(r) / "metrics.jsonl").is_file()]
    if missing:
        print(f"error: no metrics.jsonl in {', '.join(missing)}", file=sys.stderr)
        return 2
    out = args.out or (None if len(args.runs) == 1 else "curves-compare.png")
    path = curves(args.runs, out, args.labels)
    if path is None:
        print("error: no numeric records to plot", file=sys.stderr)
        return 2
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
