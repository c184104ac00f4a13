"""Real-data proof (spec §7.4): cifar10_vgg16_blockwise teacher, 10 unlabeled CIFAR-10 images per class
(seed-6 sampler), official vgg16-graft student; NetGraft vs plain few-shot KD at equal steps and seeds.

CPU budget deviations (configs/cifar10_vgg16_10shot_cpu.yaml, the spec's plan): the frozen prefix and the teacher
logits are cached for every image, 8 seeded random crops of it and all mirrors (a finite stand-in for random
crop + flip); half the official epochs (stage 1 50/30/30, stage 2 50/50 = 420 iterations); 2,000 random test
images. Calibrated once (seed 0, one thread of an idle 2-core CPU, 2026-11-28, 167 s for both arms): teacher
87.30 %, NetGraft 82.55 %, plain KD 81.65 % (lr 3e-4); stage-1 hybrids (the teacher with one student unit in place)
81.60 / 86.60 / 86.85 for units 0 / 1 / 2; the stage-1 units simply stacked 39.70, after stage 2 82.55.

What is asserted is what holds across seeds and settings, not the spec's +10-point estimate: in this setting
NetGraft leads KD by +0.90 / +1.05 / +1.10 (seeds 0 / 1 / 2), but with the exact official augmentation
(data.cache_crops=81: every crop offset, i.e. RandomCrop(32, 4) + flip exactly) plain KD leads by 0.40 / 0.60 /
0.55 (NetGraft 82.45 / 82.30 / 82.20, KD 82.85 / 82.90 / 82.75; full official schedule, seed 0: 83.40 vs 83.90), and
at 1 shot KD leads by 3.2 (55.95 vs 52.75). So the test pins (i) the defining mechanism — each unit trained inside
the frozen teacher restores most of the teacher's accuracy, the unit after block 3 the least; (ii) stage 2's
progressive grafting lifts the stacked stage-1 units by a wide margin; (iii) NetGraft is not worse than plain KD
by more than a point at equal steps, and within 8 points of the teacher.

Spread (issue #22): the seed is `TENFOLD_SLOW_SEED` (default 0; it also seeds the 8 cached crops). Observed on
this 2-core AVX-512 machine, threads=1, seeds 0 / 1 / 2: NetGraft 82.55 / 81.20 / 81.60 (range 1.35), KD 81.65 /
80.15 / 80.50 (range 1.50), gap +0.90 / +1.05 / +1.10 (range 0.20); teacher 87.30 (no training, identical). Each
threshold sits outside that spread by more than the spread: NetGraft − teacher −4.75 / −6.10 / −5.70 against −8
(margin ≥ 1.9); gap ≥ +0.90 against −1 (margin ≥ 1.9; with the exact augmentation the gap is −0.40..−0.60, still
inside); stacked → stage 2 +42.85 (seed 0) against +20. The stage-1 hybrids (seed 0: −5.70 / −0.70 / −0.45 vs the
teacher) were recorded for seed 0 only; their thresholds (−10 / −2 / −2) hold ≥ 1.25 points of room.
The second numerics setting (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2, seed 0,
`make test-robust`, 2026-12-07): NetGraft 82.30, KD 81.40, gap +0.90, stacked 39.35, hybrids 81.65 / 86.80 / 86.85
(-5.65 / -0.50 / -0.45 vs the teacher): inside the seed spread above; the AMD AVX2 machine of /work/shared/observed
passed it too.
"""
import os

import pytest
from netgraft.config import NetGraftConfig
from netgraft.train import run
from tenfold import config, runtime

SEED = int(os.environ.get("TENFOLD_SLOW_SEED", "0"))  # `make test-robust` varies it; calibration at 0
BASE = ["device=cpu", f"seed={SEED}"]


@pytest.mark.slow
def test_netgraft_vs_plain_kd_on_cifar10(real_data, vgg_teacher, tmp_path):
    from pathlib import Path

    cpu_cfg = Path(__file__).resolve().parents[1] / "configs" / "cifar10_vgg16_10shot_cpu.yaml"
    res = {}
    with runtime.num_threads(1):  # the calibration is single-threaded
        for method in ("netgraft", "kd"):
            cfg = config.load(NetGraftConfig, cpu_cfg, BASE + [f"method={method}", f"out={tmp_path / method}",
                                                               f"model.teacher_ckpt={vgg_teacher}"])
            res[method] = run(cfg)
    g, k = res["netgraft"], res["kd"]
    t, hybrid = g["teacher_acc"], g["stage1_grafted_acc"]
    print(f"\nteacher {t:.2f}  NetGraft {g['test_acc']:.2f}  plain KD {k['test_acc']:.2f}  "
          f"gap {g['test_acc'] - k['test_acc']:+.2f} ({g['steps']} steps each); stage-1 hybrids {hybrid}, "
          f"stacked {g['stage1_stacked_acc']:.2f}")
    assert g["steps"] == k["steps"] == 420
    assert t > 85.0
    assert hybrid["block1"] >= t - 2.0 and hybrid["block2"] >= t - 2.0  # observed -0.70, -0.45 (seed 0)
    assert hybrid["block0"] >= t - 10.0  # observed -5.70: replacing block 3 from 100 images is the bottleneck
    assert g["test_acc"] >= g["stage1_stacked_acc"] + 20.0  # observed +42.85 (39.70 -> 82.55)
    assert g["test_acc"] >= t - 8.0  # spec; observed -4.75 / -6.10 / -5.70 (seeds 0 / 1 / 2)
    assert g["test_acc"] >= k["test_acc"] - 1.0  # observed +0.90 / +1.05 / +1.10; -0.4..-0.6 with exact aug.
    assert k["test_acc"] > 60.0  # chance is 10 %
    for unit in ("block0", "block1", "block2"):  # every stage-1 unit learned (spec §7.2)
        assert g["last_loss"][unit] <= 0.5 * g["first_loss"][unit], unit
