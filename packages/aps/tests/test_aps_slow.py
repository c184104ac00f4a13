"""Real-data proof on CIFAR-10 (spec §7(d)), scaled to the CI budget (≈ 3.5 min CPU for the suite).

APS (r = 0.25, K = 4, γ = 3) vs the MoCo-v3-style full-token baseline (same ViT, heads and loss, all 64
tokens, one step per batch) at an EQUAL number of optimizer steps (600), same seeds, on a class-balanced
5,000-image CIFAR-10 subset; kNN (k=20, T=0.07, 5,000-image bank, 1,000 test images) on full-token CLS
features against random init; time per optimizer step of both arms in this process.

Scale. The spec's plan (300 steps at batch 128, ViT-Tiny) does not fit the CI budget, so the ViT is shrunk
(2 blocks, width 64) and trained for 600 steps at batch 64, lr 1e-3. Calibration runs (seed 0, random init
27.9): APS 28.2 / 30.3 / 29.4 after 300 / 600 / 1,200 steps at lr 1e-3, 30.5 after 600 at lr 5e-4, 27.9 /
27.0 after 600 at lr 2e-3 / 5e-3; the full-token arm 29.0 after 300 steps at lr 2e-3, 29.7 / 31.7 after 600
at lr 1e-3 / 5e-4. Asserted:
  * both arms above random init on kNN by ≥ 0.8 points (observed +2.4 APS, +1.8 full);
  * APS kNN ≥ baseline kNN − 2 points (spec margin; the gap is printed);
  * APS time per optimizer step ≤ 0.6 × the full-token baseline's (the efficiency claim; observed ≈ 0.3);
  * both arms learn the pretext task: loss of the last 5 batches < 0.95 × the first batch's, positive
    cosine > 0.15 at the end (≈ 0 at init).
The GPU command (bench/gpu.sh) carries the accuracy comparison at ViT-Tiny scale.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from aps.augment import eval_transform
from aps.config import DataConfig, EvalConfig, ModelConfig, OptimConfig, PretrainConfig, SamplingConfig
from aps.data import build_splits
from aps.evaluate import knn_monitor
from aps.model import build_backbone
from aps.train import run

DATA = os.environ.get("TENFOLD_DATA")
needs_cifar = pytest.mark.skipif(not DATA or not (Path(DATA) / "cifar10" / "train.npz").is_file(),
                                 reason="needs real CIFAR-10: set TENFOLD_DATA to the tenfold data folder "
                                        "(cifar10/train.npz, test.npz)")

OPT_STEPS = 600  # optimizer steps per arm
BATCH = 64
LR = 1e-3  # AdamW lr at this batch (lr_base is per 256 images)
SEED = int(os.environ.get("TENFOLD_SLOW_SEED", "0"))  # `make test-robust` varies it; calibration at 0


def _cfg(out: Path, mode: str) -> PretrainConfig:
    k = 1 if mode == "full" else 4
    return PretrainConfig(
        out=str(out / mode), seed=SEED, device="cpu", data_root=DATA, threads=1,
        model=ModelConfig(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2, hidden_dim=256,
                          out_dim=64),
        sampling=SamplingConfig(mode=mode, ratio=0.25, num_subsets=4, power=3.0, flip_aware=True),
        data=DataConfig(dataset="cifar10", train_per_class=500, test_per_class=100, subset_seed=0),
        optim=OptimConfig(batch_size=BATCH, lr_base=LR * 256 / BATCH, epochs=1000, max_steps=OPT_STEPS // k,
                          warmup_epochs=0.0, schedule_unit="step", tau=0.2),
        eval=EvalConfig(final_knn=True, linear_probe=False), ckpt_every=0, log_every=1)


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)]


@pytest.mark.slow
@needs_cifar
def test_aps_vs_full_token_baseline_on_cifar10(tmp_path):
    """Calibration (seed 0, idle 2-core CPU, 1 thread, torch 2.14.1, 2026-11-28): random init kNN 27.9;
    APS kNN 30.3 (+2.4), loss 7.884 -> 6.793, pos_cos 0.343, 0.037 s/opt-step; full kNN 29.7 (+1.8), loss
    8.618 -> 5.481, pos_cos 0.549, 0.129 s/opt-step; gap +0.6 points, time ratio 0.29; 179 s CPU, 3.0 min wall."""
    t0 = time.process_time()
    torch.manual_seed(SEED)
    base = _cfg(tmp_path, "aps")
    et = eval_transform(base.aug.mean, base.aug.std)
    splits = build_splits(base.data, DATA, et, et)
    rand = knn_monitor(build_backbone(base.model), splits.bank, splits.test, torch.device("cpu"), num_classes=10)
    aps = run(_cfg(tmp_path, "aps"))
    full = run(_cfg(tmp_path, "full"))
    gap = aps["knn_top1"] - full["knn_top1"]
    time_ratio = aps["s_per_opt_step"] / full["s_per_opt_step"]
    la, lf = _losses(tmp_path / "aps"), _losses(tmp_path / "full")
    print(f"\nrandom init: kNN {rand['knn_top1']:.1f}")
    for name, r, ls in (("APS ", aps, la), ("full", full, lf)):
        print(f"{name}: kNN {r['knn_top1']:.1f} (vs random {r['knn_top1'] - rand['knn_top1']:+.1f}) "
              f"loss {ls[0]:.3f} -> {np.mean(ls[-5:]):.3f} pos_cos {r['pos_cos']:.3f} "
              f"{r['s_per_opt_step']:.3f} s/opt-step")
    print(f"APS − full kNN gap: {gap:+.1f} points; APS/full time per optimizer step: {time_ratio:.2f}; "
          f"cpu {time.process_time() - t0:.0f} s")
    assert aps["optimizer_steps"] == full["optimizer_steps"] == OPT_STEPS
    assert time_ratio <= 0.6
    assert gap >= -2.0
    for r, ls in ((aps, la), (full, lf)):
        assert np.mean(ls[-5:]) < 0.95 * ls[0]
        assert r["pos_cos"] > 0.15
        assert r["knn_top1"] >= rand["knn_top1"] + 0.8


@pytest.mark.slow
def test_torchrun_two_processes_cpu(tmp_path):
    """DDP on CPU (gloo): keys are gathered over both ranks, each rank trains on its half of every batch.
    ≈ 9 s CPU-user (two interpreters)."""
    import subprocess
    import sys

    script = tmp_path / "entry.py"
    script.write_text("import sys\nfrom aps.cli import train\ntrain(sys.argv[1:])\n")
    out = tmp_path / "run"
    args = ["model.patch_size=8", "model.embed_dim=24", "model.depth=1", "model.num_heads=2", "model.hidden_dim=32",
            "model.out_dim=16", "data.dataset=synthetic", "data.synthetic_train=64", "data.synthetic_test=32",
            "optim.batch_size=16", "optim.epochs=1", "device=cpu", "threads=1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(script), "--out", str(out), *args], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["batches"] == 4 and summary["optimizer_steps"] == 16  # 64 images / global batch 16
    assert np.isfinite(summary["loss"])
