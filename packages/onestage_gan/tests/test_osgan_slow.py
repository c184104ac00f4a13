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
                                  same, later that day (feature CNN retrained):  1403.5 / 1138.0  [1112.8]
    non-saturating (GN D), 2,500 it.  this machine:                              74.8 / 55.8      [1081.9]
                                      AMD EPYC, AVX2:                            72.4 / 78.3      [1075.7]
The AVX2 flags change every number here (so the ISA matters) but do not reproduce the AMD figures: a different CPU
is one more draw. Today's default run on this machine retrained the feature CNN and moved the floor too:
untrained seeds 0 / 1 / 2 = 1112.8 / 1229.0 / 1134.3; minimax seed 1: 1361.7 / 1181.1; seed 2: 1436.0 / 1190.7.
Minimax does NOT learn here (both arms at or above the untrained FD; one/two-stage ratio 0.81-0.87 over the draws,
two-stage 1.11-1.27x untrained). Tried, seed 0: two-stage with the CelebA config's lr_D 2e-5, 1,500 it. -> 1017.5
(0.91x untrained, 1 class); GroupNorm D, two-stage, 400 / 700 it. -> 1346.2 / 1348.0; 16 px, two-stage, 1,000 /
1,500 it. -> 991.6 / 1026.0 (untrained 1189.3). So the minimax arm asserts only what holds over the draws: no
divergence (both <= 1.4x untrained) and one stage ahead of two (one <= 0.95x two) — not learning.
Issue #20 asked for a minimax setting that learns; bench/minimax_sweep.py (two-stage, seed 0, untrained 1112.8,
FD every 500 iterations, 2026-12-07) found none within 2,500 iterations:
    spec (BN D, lr_D 2e-4): 1406.3 at 500 (D saturates: G loss -1e-4 by iteration 700)
    BN D, lr_D 1.35e-5 (the one-stage rate):  1124.4 / 1031.0 / 1068.1 / 1002.2 / 949.0  (0.85x; the grid is one blob)
    GN D, lr_D 1.35e-5:                       1169.6 / 1074.7 / 1131.2 / 1001.9 / 971.8  (0.87x)
    BN D, lr_D 1.35e-5, lr_G 1e-3:            1148.4 / 1130.0 / 1155.0 / 992.3 / 1008.8  (0.91x)
    BN D, lr_D 5e-6:                          1216.1 / 1209.6 / 1100.2 / 1158.2 / 1087.8  (0.98x)
    GN D, lr_D 5e-5; BN D with Adam beta2 0.9: D saturated within 200-900 iterations (stopped; 1101.0 at 1,000)
    instance noise on D's inputs (an exploration patch, not in the package): sigma 0.3 BN D 1692.0 at 500;
    sigma 0.5 GN D 1384.5 at 500, D saturated by 900.
The saturating G loss -softplus(f) vanishes once D separates (sigma(f_fake) -> 0), and Adam's long second-moment
memory (beta2 0.999) then shrinks G's steps; a slow D keeps G's gradient alive but G collapses to one mode. The
best setting reaches 0.85x untrained, not "a clear factor", so the assertions stay as they are.

Non-saturating, 2,500 iterations, FD two-stage / one-stage [untrained] and as multiples of untrained:
    calibration (this machine, 2026-11-28), seed 0:   74.8 / 55.8   [1081.9]   0.07x / 0.05x
    AMD EPYC, AVX2, seed 0:                           72.4 / 78.3   [1075.7]   0.07x / 0.07x
    this Xeon 2026-12-07, seed 0:                     92.4 / 170.6  [1112.8]   0.08x / 0.15x
    same, AVX2 stand-in, seed 0:                      80.6 / 63.9   [1112.8]   0.07x / 0.06x
    same, seed 1:                                     84.8 / 130.7  [1229.0]   0.07x / 0.11x
    same, seed 2:                                     71.3 / 394.2  [1134.3]   0.06x / 0.35x
(bench/ns_spread.py: the same runs stopped at 1,500 / 2,000 iterations gave one-stage 517 / 327, 224 / 126, 742 / 365,
782 / 530 for the four 2026-12-07 draws, so 2,000 iterations would not do.) The two-stage arm learns tightly
(0.06-0.08x); the one-stage arm (the reference's 4x smaller D learning rate) learns more slowly and its spread is
wide (0.05-0.35x), and the one/two ratio goes 0.75 to 5.5. Asserted: two-stage <= 0.15x untrained, one-stage <=
0.5x untrained (both learned; an untrained generator is 1.0x); the ratio is printed, not asserted. The earlier
"both <= 0.25x" failed on seed 2.
Runtime: the two arms took 540 s together on the AMD machine, so they are separate tests (one scheme each); the
two-stage arm is the longer (57-70 ms per iteration here vs 40-56 one-stage, 2,500 iterations, plus the FD).
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
LIMITS = {  # minimax: (both FDs at most this multiple of the untrained FD, one-stage at most this multiple of two's)
    "minimax": (1.4, 0.95),  # NOT a learning claim: no divergence, and one stage ahead of two (see docstring)
}
NS_LEARNED = {"two": 0.15, "one": 0.5}  # FD at most this multiple of untrained (observed <= 0.08x / <= 0.35x)


@pytest.fixture
def mnist_root():
    root = os.environ.get("TENFOLD_DATA")
    if not root or not (Path(root) / "mnist" / "train.npz").is_file():
        pytest.skip("real data absent: set TENFOLD_DATA to a folder with mnist/ (e.g. ../shared/data)")
    return root


def _untrained_fd(cfg) -> float:
    """The untrained generator (the runs' initial weights) as the floor every arm must clear."""
    torch.manual_seed(SEED)
    return image_quality(cfg, sample(DCGenerator(100, 1, 16, 32), 2000, 100, torch.device("cpu")))["fd"]


def _run(loss: str, mode: str, tmp_path, floor: bool = True) -> tuple[dict, float | None]:
    d_norm, lr_two, lr_one, steps = ARMS[loss]
    lr_d = lr_two if mode == "two" else lr_one
    # one thread: float reductions (hence the FDs) do not depend on the machine's core count
    with runtime.num_threads(1):
        cfg = config.load(OSGANConfig, None, BASE + [f"max_steps={steps}", f"mode={mode}", f"loss={loss}",
                                                     f"model.d_norm={d_norm}", f"optim.lr_d={lr_d}",
                                                     f"out={tmp_path / mode}"])
        res = run_gan(cfg)
        untrained = _untrained_fd(cfg) if floor else None  # the same for both schemes of one seed
    assert res["steps"] == steps
    rel = f", untrained {untrained:.1f} ({res['fd'] / untrained:.2f}x)" if floor else ""
    print(f"\n{loss} {mode}-stage (seed {SEED}): FD {res['fd']:.1f}{rel}; CPU per iteration "
          f"{res['step_cpu_s'] * 1e3:.1f} ms (reported only)")
    return res, untrained


@pytest.mark.slow
def test_minimax_one_stage_ahead_of_two_stage_without_diverging(mnist_root, tmp_path):
    """Equal iterations, both schemes in one test (the assertion compares them): 400 iterations each."""
    two, untrained = _run("minimax", "two", tmp_path)
    one, _ = _run("minimax", "one", tmp_path, floor=False)
    bound, within = LIMITS["minimax"]
    print(f"one/two-stage FD ratio {one['fd'] / two['fd']:.2f}")
    assert max(one["fd"], two["fd"]) <= bound * untrained  # no divergence (NOT a learning claim, see docstring)
    assert one["fd"] <= within * two["fd"]


_NS_FD: dict[str, float] = {}  # the two non-saturating arms' FDs, for the ratio printed by whichever runs second


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["two", "one"])
def test_nonsaturating_arm_learns(mode, mnist_root, tmp_path):
    """One scheme per test (each well under the 5-minute budget; together they took 540 s on the AMD machine).
    What holds over the draws is that each arm learns; the one/two ratio is printed when both ran."""
    res, untrained = _run("nonsaturating", mode, tmp_path)
    _NS_FD[mode] = res["fd"]
    if len(_NS_FD) == 2:
        print(f"one/two-stage FD ratio {_NS_FD['one'] / _NS_FD['two']:.2f} (reported only)")
    assert res["fd"] <= NS_LEARNED[mode] * untrained  # this generator learned
