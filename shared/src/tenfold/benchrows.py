"""The results file of a long, resumable benchmark and what its report needs.

OUT/results.jsonl is append-only, one JSON row per line: a rerun reads the rows already there (`read_rows`), looks
up what is finished (`find`: the last row matching some keys) and appends only what is missing (`append_row`).
`check_setup` stores the options that define the run once (a `kind: setup` row) and refuses a rerun into the same
folder with other ones. Also: the command-line options such a run shares, evenly spaced evaluation points,
the kNN-curve plot of such a file (`kind: eval` and `kind: random` rows), its table.json summary, and a machine
label (CPU model, logical CPUs, GPU, torch).

Imports neither torch nor matplotlib at import time (a bench's `--help` stays fast).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["RESULTS", "long_run_parser", "read_rows", "append_row", "find", "check_setup", "eval_points", "cpu_name",
           "machine", "write_summary", "arms_table", "plot_knn_curves"]

RESULTS = "results.jsonl"
CPUINFO = Path("/proc/cpuinfo")


def long_run_parser(description: str, out: str, datasets: list[str], steps_help: str) -> argparse.ArgumentParser:
    """The options a resumable kNN long run (arms x seeds, results.jsonl) shares, in this order: --out (default
    `out`), --device, --minutes-per-arm | --steps, --seeds, --threads, --data-root, --dataset (`datasets`, the first
    the default), --evals, --bank-per-class, --test-per-class, --train-per-class. The bench adds its own after."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=out)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--minutes-per-arm", type=float, default=45.0)
    g.add_argument("--steps", type=int, default=0, help=steps_help)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--dataset", default=datasets[0], choices=list(datasets))
    p.add_argument("--evals", type=int, default=8, help="kNN evaluations per arm (evenly spaced, last = end)")
    p.add_argument("--bank-per-class", type=int, default=1000, help="kNN bank: train images per class (0: all)")
    p.add_argument("--test-per-class", type=int, default=0, help="kNN test images per class (0: all)")
    p.add_argument("--train-per-class", type=int, default=0, help="pre-training images per class (0: all)")
    return p


def read_rows(out: str | os.PathLike) -> list[dict]:
    """Every row of OUT/results.jsonl, in order ([] when the file does not exist yet)."""
    p = Path(out) / RESULTS
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def append_row(out: str | os.PathLike, row: dict) -> dict:
    """Append `row` to OUT/results.jsonl (one line, written at once) and return it."""
    with open(Path(out) / RESULTS, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def find(rows: Iterable[dict], **kw) -> dict | None:
    """The last row whose values equal all of `kw` (None when no row does)."""
    hit = [r for r in rows if all(r.get(k) == v for k, v in kw.items())]
    return hit[-1] if hit else None


def check_setup(out: str | os.PathLike, setup: Mapping) -> None:
    """Store `setup` (the options that define the run) once as a `kind: setup` row; a later call into the same OUT
    with other values is refused with SystemExit naming each differing key as (stored, given). Options left out of
    `setup` (seeds, threads, device, ...) may change between reruns."""
    setup = dict(setup)
    have = find(read_rows(out), kind="setup")
    if have is None:
        append_row(out, {"kind": "setup", **setup})
    elif {k: have.get(k) for k in setup} != setup:
        diff = {k: (have.get(k), v) for k, v in setup.items() if have.get(k) != v}
        raise SystemExit(f"{out} holds a run with other settings {diff}: use another --out")


def eval_points(n: int, evals: int) -> list[int]:
    """`evals` evenly spaced points in 1..n, the last one n (fewer when n < evals: no point twice)."""
    return sorted({max(1, math.ceil(n * i / evals)) for i in range(1, evals + 1)})


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows (e.g. "x86_64")."""
    try:
        for line in CPUINFO.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """"<CPU model>, <n> logical CPUs[, <GPU name>], torch <version>" (the GPU when CUDA is available)."""
    import torch

    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu_name()}, {os.cpu_count()} logical CPUs{gpu}, torch {torch.__version__}"



def write_summary(out: str | os.PathLike, rows: list[dict], command: str, threads: int, device: str,
                  seeds: list[int]) -> dict:
    """Write OUT/table.json of a kNN long run and return it: command, machine label, threads, device, date, seeds,
    random_init ({seed: knn_top1} of the `kind: random` rows), calibration (the last `kind: calibration` row or
    None) and arms (every `kind: arm` row, in file order)."""
    table = {"command": command, "machine": machine(), "threads": threads, "device": device,
             "date": time.strftime("%Y-%m-%d"), "seeds": seeds,
             "random_init": {r["seed"]: r["knn_top1"] for r in rows if r.get("kind") == "random"},
             "calibration": find(rows, kind="calibration"), "arms": [r for r in rows if r.get("kind") == "arm"]}
    (Path(out) / "table.json").write_text(json.dumps(table, indent=1))
    return table


def arms_table(arms: list[dict], random_init: Mapping[int, float], order: list[str] | tuple[str, ...],
               s_key: str, s_label: str) -> list[str]:
    """The markdown lines of a kNN long run's per-arm table (arms in `order`, then by seed), with each arm's gain
    over its seed's random init, followed by a line listing the random-init kNNs. `s_key` names the seconds-per-step
    field of the arm rows, `s_label` its column header."""
    lines = [f"| arm | seed | optimizer steps | epochs | train s | {s_label} | final kNN | best kNN | "
             "final − random init |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(arms, key=lambda r: (order.index(r["arm"]), r["seed"])):
        ri = random_init.get(r["seed"])
        gain = "" if ri is None else f"{r['final_knn'] - ri:+.1f}"
        lines.append(f"| {r['arm']} | {r['seed']} | {r['steps']} | {r['epochs']:.2f} | {r['train_s']:.0f} | "
                     f"{r[s_key]:.3f} | {r['final_knn']:.1f} | {r['best_knn']:.1f} | {gain} |")
    return lines + ["", "Random init kNN: " + ", ".join(f"seed {s}: {v:.1f}" for s, v in sorted(random_init.items()))]


def plot_knn_curves(path: str | os.PathLike, rows: list[dict], arms: Iterable[str], colours: Mapping[str, str],
                    title: str) -> None:
    """Two panels, kNN top-1 against optimizer step and against training seconds: one line per arm x seed from the
    `kind: eval` rows (arm, seed, step, train_s, knn_top1), the `kind: random` rows as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    styles = ["-", "--", ":", "-."]
    seeds = sorted({r["seed"] for r in rows if "seed" in r})
    for arm in arms:
        for i, s in enumerate(seeds):
            pts = sorted((r for r in rows if r.get("kind") == "eval" and r["arm"] == arm and r["seed"] == s),
                         key=lambda r: r["step"])
            if not pts:
                continue
            kw = dict(color=colours[arm], ls=styles[i % 4], marker="o", ms=3, label=f"{arm} s{s}")
            axes[0].plot([p["step"] for p in pts], [p["knn_top1"] for p in pts], **kw)
            axes[1].plot([p["train_s"] for p in pts], [p["knn_top1"] for p in pts], **kw)
    for i, s in enumerate(seeds):
        r = find(rows, kind="random", seed=s)
        if r:
            for ax in axes:
                ax.axhline(r["knn_top1"], color="grey", ls=styles[i % 4], lw=1, label=f"random init s{s}")
    axes[0].set_xlabel("optimizer step")
    axes[1].set_xlabel("training wall-clock seconds")
    for ax in axes:
        ax.set_ylabel("kNN top-1 (%)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
