"""PatchMix long run (issue #20): PatchMix vs the no-mix baseline with a kNN curve over training, per seed.

    python packages/patchmix/bench/long_run.py --out runs/patchmix-long [--minutes-per-arm 45 | --steps S]
        [--seeds 0 1] [--threads 2] [--device auto|cpu|cuda] [--data-root D] [--evals 8]

Arms, in this order for each seed, both through `patchmix.train.pretrain` (the patchmix-train code path), same
init, seed, data order, schedule and number of optimizer steps S:
  * ``nomix``    the MoCo-v3-style no-mix baseline of the same momentum framework (loss.objective=src_only:
                 L_src only), the spec's baseline;
  * ``patchmix`` PatchMix (m 2, mix patch = ViT patch, L_src + L_m2o/2 + L_m2m/2).
Schedule: linear warm-up over 10 % of S, cosine to the end; EMA μ0 0.99 -> 1 (cosine). S comes from ``--steps`` or
from ``--minutes-per-arm``: a short calibration run of the dearer arm (PatchMix: 2 online forward/backward + 3
momentum forward passes per step, against 1 + 1 for no-mix) measures its seconds per step and the random-init kNN
its evaluation cost, and S is what fits in the minutes (evaluations included); the calibration is stored, so
every seed and every resume uses the same S.

kNN (k 20, T 0.07, CLS features of the evaluated encoder = the momentum backbone, `patchmix.evaluate.extract` +
`knn_eval`, the package's monitor) at ``--evals`` evenly spaced points per arm, against a bank of
``--bank-per-class`` train images per class (class-balanced) and the test split (``--test-per-class`` 0 = all
10,000). Training time is the training loop's wall clock (augmentation included, evaluations excluded),
cumulative over resumes (tenfold's Trainer).

Writes OUT/results.jsonl as it goes (one row per evaluation, per finished arm, the random init and the
calibration); a rerun with the same OUT skips finished arm x seed rows and resumes an unfinished arm from its
checkpoint (OUT/<arm>-s<seed>/last.pt, saved at every evaluation point). OUT/table.md, OUT/table.json and
OUT/curves.png (kNN vs optimizer step and vs training seconds; random init as horizontal lines) are rewritten
after every arm.

Default model: the package's calibrated CPU model (configs/cifar10_tiny_cpu.yaml, the slow test's): ViT D 64,
depth 2, 2 heads, MLP ratio 2, patch 4 (64 tokens; mixing 2 images x 32 patches), projector/predictor 256 -> 64,
momentum encoder; batch 128, lr_eff 1e-3, τ 0.2; the full CIFAR-10 train set (50,000 images) for pre-training.
A documented deviation from the issue's ViT-Tiny: a PatchMix step of ViT-Tiny/4 costs seconds on this CPU, so 45 min
buy about one epoch (README, "Long run"); `--embed-dim 192 --depth 12 --heads 3 --mlp-ratio 4 --hidden-dim 512
--out-dim 128` selects it.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch
from patchmix.config import DataConfig, PretrainConfig
from patchmix.data import load_split
from patchmix.evaluate import extract, knn_eval
from patchmix.models import build_models
from patchmix.train import KIND, eval_backbone, pretrain
from tenfold import benchrows, checkpoint, runtime
from tenfold import config as config_mod
from tenfold.benchrows import append_row, arms_table, eval_points, find, plot_knn_curves, read_rows, write_summary

ARMS = ("nomix", "patchmix")
COLOURS = {"nomix": "tab:blue", "patchmix": "tab:red"}  # curves.png
OBJECTIVE = {"nomix": "src_only", "patchmix": "patchmix"}
CFG = Path(__file__).resolve().parents[1] / "configs" / "cifar10_tiny_cpu.yaml"


def parse(argv=None) -> argparse.Namespace:
    p = benchrows.long_run_parser(__doc__.splitlines()[0], "runs/patchmix-long", ["cifar10", "shapes"],
                                  "optimizer steps per arm (overrides minutes)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW lr_eff at --batch")
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--mlp-ratio", type=float, default=2.0)
    p.add_argument("--patch", type=int, default=4)
    p.add_argument("--hidden-dim", type=int, default=256, help="projector / predictor hidden width")
    p.add_argument("--out-dim", type=int, default=64)
    p.add_argument("--calib-steps", type=int, default=4, help="timed PatchMix steps for --minutes-per-arm")
    return p.parse_args(argv)


# ---- setup (rows of results.jsonl: tenfold.benchrows) ----------------------------------------------------
SETUP_KEYS = ("dataset", "train_per_class", "bank_per_class", "test_per_class", "batch", "lr", "embed_dim", "depth",
            "heads", "mlp_ratio", "patch", "hidden_dim", "out_dim", "evals", "steps")


def check_setup(a, out: Path) -> None:
    """The options that define the arms are stored once; a rerun into the same OUT with other ones is refused
    (seeds, threads, device and minutes may change: finished rows are kept, new seeds are added)."""
    benchrows.check_setup(out, {k: getattr(a, k) for k in SETUP_KEYS})


# ---- configs ---------------------------------------------------------------------------------------------
def train_len(a) -> int:
    if a.train_per_class:
        return 10 * a.train_per_class
    return 50000 if a.dataset == "cifar10" else 2000


def arm_config(a, arm: str, seed: int, steps: int, device: str, out: str | None = None) -> PretrainConfig:
    ipe = train_len(a) // a.batch
    over = [f"out={out or Path(a.out) / f'{arm}-s{seed}'}", f"seed={seed}", f"device={device}",
            f"loss.objective={OBJECTIVE[arm]}", f"model.embed_dim={a.embed_dim}", f"model.depth={a.depth}",
            f"model.num_heads={a.heads}", f"model.mlp_ratio={a.mlp_ratio}", f"model.patch_size={a.patch}",
            f"model.proj_hidden={a.hidden_dim}", f"model.pred_hidden={a.hidden_dim}", f"model.proj_dim={a.out_dim}",
            f"mix.patch_size=[{a.patch}]", f"data.dataset={a.dataset}", f"data.train_per_class={a.train_per_class}",
            "data.test_per_class=0", f"data.shapes_train={train_len(a)}", f"optim.steps={steps}",
            f"optim.batch_size={a.batch}", f"optim.base_lr={a.lr * 256 / a.batch}",
            f"optim.warmup_epochs={0.1 * steps / max(ipe, 1)}", "monitor.knn_final=false", "monitor.knn_every=0",
            "ckpt_every=0", "log_every=25"]
    if a.data_root:
        over.append(f"data_root={a.data_root}")
    return config_mod.load(PretrainConfig, CFG, over)


def eval_sets(a):
    """(bank, test): class-balanced train images and the test split (uint8; the eval view is made on extract)."""
    dcfg = DataConfig(dataset=a.dataset, train_per_class=a.bank_per_class, test_per_class=a.test_per_class,
                      shapes_train=max(10 * a.bank_per_class, 100), shapes_test=max(10 * a.test_per_class, 100))
    return load_split(dcfg, True, a.data_root), load_split(dcfg, False, a.data_root)


def knn(cfg: PretrainConfig, backbone, sets, device) -> tuple[float, float]:
    bank, test = sets
    t0 = time.perf_counter()
    kw = dict(size=cfg.model.img_size, mean=tuple(cfg.aug.mean), std=tuple(cfg.aug.std), amp=cfg.amp,
              precision=cfg.precision)
    tf, ty = extract(backbone, bank, device, **kw)
    vf, vy = extract(backbone, test, device, **kw)
    r = knn_eval(tf, ty, vf, vy, ks=(20,), t=0.07)
    return r["knn20_top1"], time.perf_counter() - t0


def load_backbone(cfg: PretrainConfig, device):
    ck = checkpoint.load(Path(cfg.out) / "last.pt", kind=KIND)
    online, momentum = build_models(cfg.model, cfg.model.framework)
    online.load_state_dict(ck["state"]["online"])
    if momentum is not None:
        momentum.load_state_dict(ck["state"]["momentum"])
    return eval_backbone(online, momentum).to(device), ck["loop"]


# ---- one arm ---------------------------------------------------------------------------------------------
def run_arm(a, out: Path, arm: str, seed: int, steps: int, sets, device, log=print) -> dict:
    """Train one arm to `steps` optimizer steps with kNN at the evaluation points (resumable)."""
    rows = read_rows(out)
    done = find(rows, kind="arm", arm=arm, seed=seed)
    if done:
        log(f"skip {arm} seed {seed}: finished ({done['final_knn']:.1f} kNN)")
        return done
    cfg = arm_config(a, arm, seed, steps, str(device))
    curve = {r["step"]: r for r in rows if r.get("kind") == "eval" and r["arm"] == arm and r["seed"] == seed}
    ckpt = Path(cfg.out) / "last.pt"
    at = checkpoint.load(ckpt, kind=KIND)["loop"]["step"] if ckpt.is_file() else 0
    for s in eval_points(steps, a.evals):
        if s <= at and s in curve:
            continue
        if s > at:
            pretrain(cfg, resume="auto", stop_at=s)  # trains from the checkpoint to step s, saves last.pt
        backbone, loop = load_backbone(cfg, device)
        acc, es = knn(cfg, backbone, sets, device)
        at = loop["step"]
        curve[at] = append_row(out, {"kind": "eval", "arm": arm, "seed": seed, "step": at,
                                     "train_s": loop["elapsed_s"], "knn_top1": acc, "eval_s": es})
        log(f"{arm} seed {seed}: step {at}/{steps} kNN {acc:.1f} train {loop['elapsed_s']:.0f} s (eval {es:.0f} s)")
    pts = [curve[s] for s in sorted(curve)]
    train_s = pts[-1]["train_s"]
    row = {"kind": "arm", "arm": arm, "seed": seed, "steps": pts[-1]["step"],
           "epochs": pts[-1]["step"] * a.batch / train_len(a), "train_s": train_s,
           "s_per_step": train_s / pts[-1]["step"], "final_knn": pts[-1]["knn_top1"],
           "best_knn": max(p["knn_top1"] for p in pts), "eval_s": sum(p["eval_s"] for p in pts)}
    return append_row(out, row)


# ---- calibration -----------------------------------------------------------------------------------------
def calibrate(a, out: Path, sets, device, log=print) -> dict:
    """Seconds per PatchMix step (the dearer arm; training loop, augmentation included) from a throw-away run:
    1 warm-up step, then `calib_steps` timed; the kNN cost from the random init; S = what fits in the minutes."""
    rows = read_rows(out)
    have = find(rows, kind="calibration")
    if have:
        return have
    cfg = arm_config(a, "patchmix", a.seeds[0], 1 + a.calib_steps, str(device), out=str(out / "_calibration"))
    pretrain(cfg, stop_at=1)
    e1 = checkpoint.load(Path(cfg.out) / "last.pt", kind=KIND)["loop"]["elapsed_s"]
    pretrain(cfg, resume="auto", stop_at=1 + a.calib_steps)
    e2 = checkpoint.load(Path(cfg.out) / "last.pt", kind=KIND)["loop"]["elapsed_s"]
    s_step = (e2 - e1) / a.calib_steps
    rand = find(rows, kind="random", seed=a.seeds[0])
    eval_s = rand["eval_s"] if rand else knn(cfg, build_models(cfg.model, "momentum")[0].backbone, sets, device)[1]
    steps = max(1, int((a.minutes_per_arm * 60 - a.evals * eval_s) / s_step))
    log(f"calibration: PatchMix {s_step:.3f} s/step, kNN {eval_s:.0f} s -> {steps} steps per arm")
    return append_row(out, {"kind": "calibration", "s_per_patchmix_step": s_step, "eval_s": eval_s,
                            "minutes_per_arm": a.minutes_per_arm, "evals": a.evals, "steps": steps})


# ---- report ----------------------------------------------------------------------------------------------
def report(a, out: Path, command: str) -> dict:
    rows = read_rows(out)
    table = write_summary(out, rows, command, a.threads, a.device, a.seeds)
    rand, arms = table["random_init"], table["arms"]
    lines = ["# PatchMix long run (issue #20)", "", f"Command: `{command}`", "",
             f"Machine: {table['machine']}; threads {a.threads or 'default'}; device {a.device}; "
             f"{table['date']}.", "",
             f"Model: ViT D {a.embed_dim}, depth {a.depth}, {a.heads} heads, MLP {a.mlp_ratio}, patch {a.patch}; "
             f"batch {a.batch}, lr_eff {a.lr}; kNN k 20, T 0.07 on the momentum backbone, bank "
             f"{a.bank_per_class or 'all'} train images per class, test {a.test_per_class or 'all'} per class. "
             f"Best kNN is the maximum over the curve on the test split (for reference only; final is the number "
             f"to read).", ""]
    lines += arms_table(arms, rand, ARMS, "s_per_step", "s / step")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    plot_knn_curves(out / "curves.png", rows, ARMS, COLOURS,
                    "PatchMix vs no-mix baseline (equal steps): kNN over training")
    return table


# ---- main ------------------------------------------------------------------------------------------------
def main(argv=None, log=print) -> dict:
    a = parse(argv)
    command = "python packages/patchmix/bench/long_run.py " + " ".join(
        shlex.quote(x) for x in (sys.argv[1:] if argv is None else argv))
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = runtime.select_device(a.device)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    check_setup(a, out)
    sets = eval_sets(a)
    for seed in a.seeds:  # random init: the very init the arms start from (pretrain seeds, then builds)
        if not find(read_rows(out), kind="random", seed=seed):
            cfg = arm_config(a, "nomix", seed, 1, str(device))
            runtime.seed_everything(seed)
            online, momentum = build_models(cfg.model, cfg.model.framework)
            acc, es = knn(cfg, eval_backbone(online, momentum).to(device), sets, device)
            append_row(out, {"kind": "random", "seed": seed, "knn_top1": acc, "eval_s": es})
            log(f"random init seed {seed}: kNN {acc:.1f} ({es:.0f} s)")
    steps = a.steps if a.steps > 0 else calibrate(a, out, sets, device, log)["steps"]
    for seed in a.seeds:
        for arm in ARMS:
            run_arm(a, out, arm, seed, steps, sets, device, log)
            report(a, out, command)
    return report(a, out, command)


if __name__ == "__main__":
    main()
