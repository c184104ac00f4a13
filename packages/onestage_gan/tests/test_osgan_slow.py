"""Real-data proof (MNIST, 32 px DCGAN, d=16, batch 64): one stage and two stages each learn, for a symmetric
(minimax) and an asymmetric (non-saturating) loss; the one/two-stage FD ratio is printed, not asserted.

FD = Fréchet distance of 2,000 samples vs 2,000 real test digits in the 64-d feature space of a small MNIST CNN
trained by the package (the CNN itself is trained on this machine's numerics, so the untrained floor moves too).
Seed: env TENFOLD_SLOW_SEED (default 0). Speed is reported (printed), never asserted: the CPU-time ratio moved from
1.21 to 1.59 for the same code on a busy second machine; bench/gpu.py and bench/cpu.py measure it.

Minimax (symmetric) arm: BN D as the reference, plus an R1 penalty (optim.r1=10, Mescheder et al. 2018; NOT in
the reference) and the two-stage D learning rate 2e-4 in both schemes, 2,000 iterations. Why the deviation
(issue #20): with the spec's settings minimax does not learn at this scale. Seed 0, two-stage, untrained 1112.8
(bench/minimax_sweep.py, FD every 500 iterations, 2026-12-07):
    spec (lr_D 2e-4):                 1406.3 at 500 (D saturates: G loss -1e-4 by iteration 700)
    BN D, lr_D 1.35e-5 (the reference's one-stage rate):  1124.4 / 1031.0 / 1068.1 / 1002.2 / 949.0 (0.85x,
                                      one repeated blob: mode collapse); GN D: 0.87x; + lr_G 1e-3: 0.91x;
                                      lr_D 5e-6: 0.98x; Adam beta2 0.9 and instance noise (unshipped patch): saturate
The earlier 400-iteration spec arms sat at 1.1-1.3x untrained (two-stage) and 0.9-1.0x (one-stage) on every draw.
Seeds 0 / 1 / 2, lr_D 2e-4, R1 = 10, FD at 1,000 / 1,500 / 2,000 / 2,500 iterations [untrained] (2026-12-08):
    two-stage:  244.0 / 63.4 / 27.5 / 18.5  [1112.8]    120.3 / 50.1 / 33.9 / 22.5  [1229.0]
                359.1 / 83.5 / 37.5 / 20.1  [1134.3]    -> 0.025x / 0.028x / 0.033x at 2,000
    one-stage:  1204.0 / 91.2 / 48.2 / 20.5             357.3 / 76.2 / 49.2 / 34.1
                1076.5 / 198.7 / 78.5 / 47.4            -> 0.043x / 0.040x / 0.069x at 2,000
    AVX2 stand-in (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2), seed 0, this
    test: two-stage 31.0, one-stage 46.1 (0.03x / 0.04x; ratio 1.49), 2026-12-08.
(bench/minimax_sweep.py ... optim.r1=10, this Xeon; the samples show diverse digits.) One stage takes off later
(seeds 0 and 2 still at the untrained level at 1,000), so its bound leaves room for a draw 500 iterations behind
(0.08x / 0.06x / 0.18x at 1,500). One stage at the reference's lr_D 1.35e-5 with R1, seed 0: 1131.0 / 1090.6 /
1077.2 at 500 / 1,000 / 1,500 (stopped): R1 removes the saturation that the small rate guarded against.
Asserted: two-stage <= 0.15x untrained, one-stage <= 0.5x untrained at 2,000 iterations (an untrained
generator is 1.0x); 2,000 rather than 2,500 keeps each test under 5 minutes on the slower AMD machine (the
non-saturating arm alone took 270 s per scheme there, and R1's double backward adds about a third).

Non-saturating (asymmetric) arm: GN D (the reference's one-stage D), lr_D 2e-4 / 5e-5 (two / one stage),
2,500 iterations, no R1. FD two-stage / one-stage [untrained] and as multiples of untrained:
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
0.5x untrained; the ratio is printed, not asserted. The earlier "both <= 0.25x" failed on seed 2.
One scheme per test, so each stays within the 5-minute budget.
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
ARMS = {  # D norm, D learning rates two / one stage, iterations, extra overrides
    "minimax": ("bn", "2e-4", "2e-4", 2000, ["optim.r1=10"]),  # R1: a documented deviation (docstring)
    "nonsaturating": ("gn", "2e-4", "5e-5", 2500, []),  # one stage: the reference's smaller D rate (spec §2.7)
}
LEARNED = {  # FD at most this multiple of the untrained generator's (observed values in the docstring)
    "minimax": {"two": 0.15, "one": 0.5},  # observed <= 0.033x / <= 0.069x (R1, 2,000 it.)
    "nonsaturating": {"two": 0.15, "one": 0.5},  # observed <= 0.08x / <= 0.35x
}


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


def _run(loss: str, mode: str, tmp_path) -> tuple[dict, float]:
    d_norm, lr_two, lr_one, steps, extra = ARMS[loss]
    lr_d = lr_two if mode == "two" else lr_one
    # one thread: float reductions (hence the FDs) do not depend on the machine's core count
    with runtime.num_threads(1):
        cfg = config.load(OSGANConfig, None, BASE + [f"max_steps={steps}", f"mode={mode}", f"loss={loss}",
                                                     f"model.d_norm={d_norm}", f"optim.lr_d={lr_d}",
                                                     f"out={tmp_path / mode}", *extra])
        res = run_gan(cfg)
        untrained = _untrained_fd(cfg)
    assert res["steps"] == steps
    print(f"\n{loss} {mode}-stage (seed {SEED}): FD {res['fd']:.1f}, untrained {untrained:.1f} "
          f"({res['fd'] / untrained:.2f}x); CPU per iteration {res['step_cpu_s'] * 1e3:.1f} ms (reported only)")
    return res, untrained


_FD: dict[tuple[str, str], float] = {}  # each arm's FD, for the ratio printed by whichever scheme runs second


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["two", "one"])
@pytest.mark.parametrize("loss", ["minimax", "nonsaturating"])
def test_arm_learns(loss, mode, mnist_root, tmp_path):
    """Each scheme of each loss beats the untrained generator by a clear factor. What holds over the draws is
    that each arm learns; "one stage better" does not (docstring), so the one/two ratio is only printed."""
    res, untrained = _run(loss, mode, tmp_path)
    _FD[loss, mode] = res["fd"]
    if (loss, "one") in _FD and (loss, "two") in _FD:
        print(f"{loss}: one/two-stage FD ratio {_FD[loss, 'one'] / _FD[loss, 'two']:.2f} (reported only)")
    assert res["fd"] <= LEARNED[loss][mode] * untrained  # this generator learned
