"""Real-data proof (spec §7.4): cifar10_vgg16_blockwise teacher, 10 unlabeled CIFAR-10 images per class
(seed-6 sampler), official vgg16-graft student; NetGraft vs plain few-shot KD at equal steps and seeds.

CPU budget deviations (configs/cifar10_vgg16_10shot_cpu.yaml, the spec's plan): the frozen prefix and the teacher
logits are cached for every image, 8 seeded random crops of it and all mirrors (a finite stand-in for random
crop + flip); half the official epochs (stage 1 50/30/30, stage 2 50/50 = 420 iterations); 2,000 random test
images. Calibrated once (seed 0, one thread of an idle 2-core CPU, 2026-11-28): teacher 87.30 %, NetGraft
82.55 %, plain KD 81.65 % (lr 3e-4). Other settings, same seed (NetGraft / KD): flips only, quarter schedule
77.00 / 76.45 (KD 75.15 at lr 1e-3); flips only, half 77.85 / 76.80 (75.70 at 1e-3); 8 crops, quarter 80.90 /
79.90. NetGraft leads in every setting, by 0.5-1.0 points: a consistent but small margin at this budget, so the
test pins "ahead by ≥ 0.5"; the spec's +10-point estimate is not borne out here (bench/gpu.sh runs the official
schedule over seeds and shots).
"""
import pytest
from netgraft.config import NetGraftConfig
from netgraft.train import run
from tenfold import config, runtime

BASE = ["device=cpu", "seed=0"]


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
    print(f"\nteacher {g['teacher_acc']:.2f}  NetGraft {g['test_acc']:.2f}  plain KD {k['test_acc']:.2f}  "
          f"gap {g['test_acc'] - k['test_acc']:+.2f} ({g['steps']} steps each)")
    assert g["steps"] == k["steps"] == 420
    assert g["teacher_acc"] > 85.0
    assert g["test_acc"] >= g["teacher_acc"] - 8.0  # spec; observed -4.75
    assert g["test_acc"] >= k["test_acc"] + 0.5  # observed +0.90
    assert g["test_acc"] > 60.0 and k["test_acc"] > 60.0  # chance is 10 %
    for unit in ("block0", "block1", "block2"):  # every stage-1 unit learned (spec §7.2)
        assert g["last_loss"][unit] <= 0.5 * g["first_loss"][unit], unit
