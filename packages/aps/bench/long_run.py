"""APS long run (issue #20): APS vs the full-token baseline with a kNN curve over training, per seed.

    python packages/aps/bench/long_run.py --out runs/aps-long [--minutes-per-arm 45 | --steps S]
        [--seeds 0 1] [--threads 2] [--device auto|cpu|cuda] [--data-root D] [--evals 8]

Arms, in this order for each seed, all through `aps.train.run` (the aps-train code path), same init and seed:
  * ``full``     the MoCo-v3-style full-token baseline (all tokens, one optimizer step per batch), S steps;
  * ``aps``      APS (r 0.25, K 4, γ 3, flip-aware), the same S optimizer steps (S/K batches): equal steps;
  * ``aps_wall`` APS given the steps its cheaper step buys in the baseline's training time (equal wall clock):
                 steps = full's training seconds / aps's measured seconds per optimizer step, both measured in
                 this run (the paper's efficiency argument). ``--no-wall-arm`` skips it.
Each arm has its own warm-up (10 % of its optimizer steps) and cosine schedule to its own end. S comes from
``--steps`` or from ``--minutes-per-arm``: a short calibration run of the baseline measures its seconds per step
and the random-init kNN its evaluation cost, and S is what fits in the minutes (evaluations included); the
calibration is stored, so every seed and every resume uses the same S.

kNN (k 20, T 0.07, full-token CLS features, `aps.evaluate.knn_monitor`) at ``--evals`` evenly spaced points per
arm, against a bank of ``--bank-per-class`` train images per class (class-balanced, eval transform) and the test
split (``--test-per-class`` 0 = all 10,000). Training time is the training loop's own wall clock (data loading
included, evaluations excluded), cumulative over resumes (tenfold's Trainer).

Writes OUT/results.jsonl as it goes (one row per evaluation, per finished arm, the random init and the
calibration); a rerun with the same OUT skips finished arm x seed rows and resumes an unfinished arm from its
checkpoint (OUT/<arm>-s<seed>/last.pt, saved at every evaluation point). OUT/table.md, OUT/table.json and
OUT/curves.png (kNN vs optimizer step and vs training seconds; random init as horizontal lines) are rewritten
after every arm.

Default model: the slow test's calibrated CPU model (tests/test_aps_slow.py): ViT D 64, depth 2, 2 heads, MLP
ratio 4, patch 4 (8x8 = 64 tokens, 16 kept per view; patch 8 would leave 4 tokens per view on a 4x4 overlap grid),
projector/predictor 256 -> 64; batch 128, AdamW lr 1e-3, τ 0.2; the full CIFAR-10 train set (50,000 images) for
pre-training. A documented deviation from the issue's ViT-Tiny: a full-token ViT-Tiny/4 step costs several
seconds on this CPU, so 45 min buy under one epoch (README, "Long run"); `--embed-dim 192 --depth 12 --heads 3
--hidden-dim 512 --out-dim 128` selects it.
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from aps.augment import eval_transform
from aps.config import DataConfig, EvalConfig, ModelConfig, OptimConfig, PretrainConfig, SamplingConfig
from aps.data import build_splits
from aps.evaluate import knn_monitor
from aps.train import CKPT_KIND, build_model, run
from tenfold import benchrows, checkpoint, runtime
from tenfold.benchrows import append_row, arms_table, eval_points, find, plot_knn_curves, read_rows, write_summary

ARMS = ("full", "aps", "aps_wall")
COLOURS = {"full": "tab:blue", "aps": "tab:orange", "aps_wall": "tab:green"}  # curves.png
K = 4  # APS optimizer steps per batch (num_subsets)


def parse(argv=None) -> argparse.Namespace:
    p = benchrows.long_run_parser(__doc__.splitlines()[0], "runs/aps-long", ["cifar10", "synthetic"],
                                  "optimizer steps of the equal-step arms (overrides minutes)")
    p.add_argument("--workers", type=int, default=0, help="loader processes for augmentation + sampling")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW lr at --batch")
    p.add_argument("--tau", type=float, default=0.2)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--patch", type=int, default=4)
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--out-dim", type=int, default=64)
    p.add_argument("--calib-batches", type=int, default=4, help="timed baseline batches for --minutes-per-arm")
    p.add_argument("--no-wall-arm", action="store_true")
    return p.parse_args(argv)


# ---- setup (rows of results.jsonl: tenfold.benchrows) ----------------------------------------------------
SETUP_KEYS = ("dataset", "train_per_class", "bank_per_class", "test_per_class", "batch", "lr", "tau", "embed_dim",
            "depth", "heads", "patch", "hidden_dim", "out_dim", "evals", "steps")


def check_setup(a, out: Path) -> None:
    """The options that define the arms are stored once; a rerun into the same OUT with other ones is refused
    (seeds, threads, device and minutes may change: finished rows are kept, new seeds are added)."""
    benchrows.check_setup(out, {k: getattr(a, k) for k in SETUP_KEYS})


# ---- configs ---------------------------------------------------------------------------------------------
def arm_config(a, arm: str, seed: int, opt_steps: int, device: str) -> PretrainConfig:
    full = arm == "full"
    k = 1 if full else K
    return PretrainConfig(
        out=str(Path(a.out) / f"{arm}-s{seed}"), seed=seed, device=device, data_root=a.data_root,
        threads=a.threads,
        model=ModelConfig(img_size=32, patch_size=a.patch, embed_dim=a.embed_dim, depth=a.depth, num_heads=a.heads,
                          hidden_dim=a.hidden_dim, out_dim=a.out_dim),
        sampling=SamplingConfig(mode="full" if full else "aps", ratio=0.25, num_subsets=K, power=3.0,
                                flip_aware=True),
        data=DataConfig(dataset=a.dataset, train_per_class=a.train_per_class, num_workers=a.workers,
                        synthetic_train=max(10 * a.train_per_class, a.batch), synthetic_test=10 * a.test_per_class),
        optim=OptimConfig(batch_size=a.batch, lr_base=a.lr * 256 / a.batch, epochs=10**6,
                          max_steps=math.ceil(opt_steps / k), warmup_epochs=0.0,
                          warmup_steps=max(1, round(0.1 * opt_steps)), schedule_unit="step", tau=a.tau),
        eval=EvalConfig(final_knn=False, linear_probe=False), ckpt_every=0, log_every=25)


def eval_sets(a):
    """(bank, test, num_classes): class-balanced train images (eval transform) and the test split."""
    dcfg = DataConfig(dataset=a.dataset, train_per_class=a.bank_per_class, test_per_class=a.test_per_class,
                      synthetic_train=max(10 * a.bank_per_class, a.batch), synthetic_test=10 * a.test_per_class)
    et = eval_transform((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    s = build_splits(dcfg, a.data_root, et, et)
    return s.bank, s.test, s.num_classes


def knn(backbone, sets, device) -> tuple[float, float]:
    bank, test, nc = sets
    t0 = time.perf_counter()
    r = knn_monitor(backbone, bank, test, device, k=20, t=0.07, batch_size=256, num_classes=nc, amp=True)
    return r["knn_top1"], time.perf_counter() - t0


def load_backbone(cfg: PretrainConfig):
    ck = checkpoint.load(Path(cfg.out) / "last.pt", kind=CKPT_KIND)
    model = build_model(cfg)
    model.load_state_dict(ck["state"]["model"])
    return model.backbone, ck["loop"]


# ---- one arm ---------------------------------------------------------------------------------------------
def run_arm(a, out: Path, arm: str, seed: int, opt_steps: int, sets, device, log=print) -> dict:
    """Train one arm to `opt_steps` optimizer steps with kNN at the evaluation points (resumable)."""
    rows = read_rows(out)
    done = find(rows, kind="arm", arm=arm, seed=seed)
    if done:
        log(f"skip {arm} seed {seed}: finished ({done['final_knn']:.1f} kNN)")
        return done
    cfg = arm_config(a, arm, seed, opt_steps, str(device))
    k = 1 if arm == "full" else K
    nb = cfg.optim.max_steps
    curve = {r["step"]: r for r in rows if r.get("kind") == "eval" and r["arm"] == arm and r["seed"] == seed}
    ckpt = Path(cfg.out) / "last.pt"
    at = checkpoint.load(ckpt, kind=CKPT_KIND)["loop"]["step"] if ckpt.is_file() else 0
    for b in eval_points(nb, a.evals):
        if b <= at and b * k in curve:
            continue
        if b > at:
            run(cfg, resume="auto", stop_at=b)  # trains from the checkpoint to batch b, saves last.pt
        backbone, loop = load_backbone(cfg)
        acc, es = knn(backbone.to(device), sets, device)
        at = loop["step"]
        curve[at * k] = append_row(out, {"kind": "eval", "arm": arm, "seed": seed, "step": at * k,
                                         "batches": at, "train_s": loop["elapsed_s"], "knn_top1": acc,
                                         "eval_s": es})
        log(f"{arm} seed {seed}: step {at * k}/{nb * k} kNN {acc:.1f} train {loop['elapsed_s']:.0f} s "
            f"(eval {es:.0f} s)")
    pts = [curve[s] for s in sorted(curve)]
    train_s = pts[-1]["train_s"]
    row = {"kind": "arm", "arm": arm, "seed": seed, "steps": pts[-1]["step"], "batches": pts[-1]["batches"],
           "epochs": pts[-1]["batches"] * a.batch / _train_len(a),
           "train_s": train_s, "s_per_opt_step": train_s / pts[-1]["step"], "final_knn": pts[-1]["knn_top1"],
           "best_knn": max(p["knn_top1"] for p in pts), "eval_s": sum(p["eval_s"] for p in pts)}
    return append_row(out, row)


def _train_len(a) -> int:
    """Pre-training images (for epochs = batches x batch / this)."""
    if a.train_per_class:
        return 10 * a.train_per_class
    return 50000 if a.dataset == "cifar10" else a.batch


# ---- calibration -----------------------------------------------------------------------------------------
def calibrate(a, out: Path, sets, device, log=print) -> dict:
    """Seconds per baseline step (training loop, data included) from a throw-away run: warm-up 1 batch, then
    `calib_batches` timed; the kNN cost from the random init; S = what fits in --minutes-per-arm."""
    rows = read_rows(out)
    have = find(rows, kind="calibration")
    if have:
        return have
    cfg = replace(arm_config(a, "full", a.seeds[0], 1 + a.calib_batches, str(device)),
                  out=str(out / "_calibration"))
    run(cfg, stop_at=1)
    e1 = checkpoint.load(Path(cfg.out) / "last.pt", kind=CKPT_KIND)["loop"]["elapsed_s"]
    run(cfg, resume="auto", stop_at=1 + a.calib_batches)
    e2 = checkpoint.load(Path(cfg.out) / "last.pt", kind=CKPT_KIND)["loop"]["elapsed_s"]
    s_full = (e2 - e1) / a.calib_batches
    rand = find(rows, kind="random", seed=a.seeds[0])
    eval_s = rand["eval_s"] if rand else knn(build_model(cfg).backbone.to(device), sets, device)[1]
    budget = a.minutes_per_arm * 60 - a.evals * eval_s
    steps = max(K, int(budget / s_full) // K * K)
    log(f"calibration: full-token {s_full:.3f} s/step, kNN {eval_s:.0f} s -> {steps} steps per arm")
    return append_row(out, {"kind": "calibration", "s_per_full_step": s_full, "eval_s": eval_s,
                            "minutes_per_arm": a.minutes_per_arm, "evals": a.evals, "steps": steps})


# ---- report ----------------------------------------------------------------------------------------------
def report(a, out: Path, command: str) -> dict:
    rows = read_rows(out)
    table = write_summary(out, rows, command, a.threads, a.device, a.seeds)
    rand, arms = table["random_init"], table["arms"]
    lines = ["# APS long run (issue #20)", "", f"Command: `{command}`", "",
             f"Machine: {table['machine']}; threads {a.threads or 'default'}; device {a.device}; "
             f"{table['date']}.", "",
             f"Model: ViT D {a.embed_dim}, depth {a.depth}, {a.heads} heads, patch {a.patch}; batch {a.batch}, "
             f"lr {a.lr}, τ {a.tau}; kNN k 20, T 0.07, bank {a.bank_per_class or 'all'} train images per class, "
             f"test {a.test_per_class or 'all'} per class. Best kNN is the maximum over the curve on the test "
             f"split (for reference only; final is the number to read).", ""]
    lines += arms_table(arms, rand, ARMS, "s_per_opt_step", "s / opt step")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    plot_knn_curves(out / "curves.png", rows, ARMS, COLOURS, "APS vs full-token baseline: kNN over training")
    return table


# ---- main ------------------------------------------------------------------------------------------------
def main(argv=None, log=print) -> dict:
    a = parse(argv)
    command = "python packages/aps/bench/long_run.py " + " ".join(shlex.quote(x) for x in
                                                                   (sys.argv[1:] if argv is None else argv))
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = runtime.select_device(a.device)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    check_setup(a, out)
    sets = eval_sets(a)
    for seed in a.seeds:  # random init: the very init the arms start from (run() seeds, then builds)
        if not find(read_rows(out), kind="random", seed=seed):
            runtime.seed_everything(seed)
            bb = build_model(arm_config(a, "full", seed, K, str(device))).backbone.to(device)
            acc, es = knn(bb, sets, device)
            append_row(out, {"kind": "random", "seed": seed, "knn_top1": acc, "eval_s": es})
            log(f"random init seed {seed}: kNN {acc:.1f} ({es:.0f} s)")
    steps = a.steps if a.steps > 0 else calibrate(a, out, sets, device, log)["steps"]
    steps = max(K, steps // K * K)  # whole APS batches
    for seed in a.seeds:
        full = run_arm(a, out, "full", seed, steps, sets, device, log)
        report(a, out, command)
        aps = run_arm(a, out, "aps", seed, steps, sets, device, log)
        report(a, out, command)
        if not a.no_wall_arm:
            wall_steps = max(K, round(full["train_s"] / aps["s_per_opt_step"]) // K * K)
            run_arm(a, out, "aps_wall", seed, wall_steps, sets, device, log)
            report(a, out, command)
    return report(a, out, command)


if __name__ == "__main__":
    main()
