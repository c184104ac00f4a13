"""Real-data proof (spec §7d, CPU scale): teacher ../shared/models/cifar10_animals6_wrn40_2.pt (6 CIFAR-10 animal
classes), OOD transfer set = CIFAR-10 *vehicle* train images (classes 0,1,8,9; labels unused), in-domain test =
1,200 animal test images (200 per class). No animal image is used for training. MosaicKD vs plain KD on the same
OOD pool, same student, optimiser, seed and number of student steps; the gap is printed.
"""
import os
from pathlib import Path

import pytest
from mosaickd.baselines import run_kd
from mosaickd.config import KDConfig, MosaicConfig, TeacherConfig
from mosaickd.teacher import run_teacher
from mosaickd.train import run_mosaic
from tenfold.config import load

MODELS = Path(os.environ.get("TENFOLD_MODELS") or Path(__file__).resolve().parents[3].parent / "shared" / "models")
TEACHER = MODELS / "cifar10_animals6_wrn40_2.pt"
DATA = os.environ.get("TENFOLD_DATA")
CHANCE = 100 / 6
SEED = int(os.environ.get("TENFOLD_SLOW_SEED", "0"))  # `make test-robust` varies it; calibration at 0


def _skip_reason():
    if not DATA:
        return "TENFOLD_DATA is not set (point it at ../shared/data)"
    if not (Path(DATA) / "cifar10" / "train.npz").is_file():
        return f"CIFAR-10 pack not found under {DATA}/cifar10"
    if not TEACHER.is_file():
        return f"teacher {TEACHER} not found (set TENFOLD_MODELS)"
    return None


COMMON = ["data.in_domain=cifar10", "data.in_domain_classes=[2,3,4,5,6,7]", "data.test_per_class=200",
          "data.ood=[cifar10]", "data.ood_classes=[0,1,8,9]", "data.ood_per_class=250",
          # no augmentation on the KD stream in both arms, so the teacher's OOD logits are computed once
          "data.kd_ood_augment=false", "data.cache_teacher_ood=true", f"model.teacher={TEACHER}",
          "model.student=cnn32", "device=cpu", f"seed={SEED}"]
B, ITERS, KD_STEPS, LR = 16, 40, 4, 0.1  # 160 student steps of 2B = 32 images in both arms (B=32 is over budget)


@pytest.mark.slow
@pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))
def test_mosaickd_and_plain_kd_learn_from_vehicle_images(tmp_path):
    kd = run_kd(load(KDConfig, None, COMMON + [
        f"out={tmp_path / 'kd'}", "method=vanilla", "augment=none", "T=1", f"batch_size={2 * B}",
        f"steps={ITERS * KD_STEPS}", f"lr={LR}", "eval_teacher=false", f"eval_every={ITERS * KD_STEPS}"]))
    mk = run_mosaic(load(MosaicConfig, None, COMMON + [
        f"out={tmp_path / 'mosaickd'}", "generator.ngf=32", "discriminator.ndf=64", f"train.batch_size={B}",
        f"train.iters={ITERS}", f"train.kd_steps={KD_STEPS}", f"optim.lr={LR}", "train.eval_teacher=false",
        f"train.eval_every={ITERS}"]))
    assert kd["student_steps"] == mk["student_steps"] == ITERS * KD_STEPS
    gap = mk["last_top1"] - kd["last_top1"]
    print(f"\nin-domain top-1 (1,200 animal test images): MosaicKD {mk['last_top1']:.2f} | plain KD on vehicles "
          f"{kd['last_top1']:.2f} | gap {gap:+.2f} points ({ITERS * KD_STEPS} student steps each)")
    # Calibration (seed 0, 1 thread; ~68 s CPU-user for both arms):
    #   this config (B=16, lr 0.1):  MosaicKD 25.00 | KD 23.67 | gap +1.33
    #   B=16, lr 0.05:               MosaicKD 26.67 | KD 26.92 | gap -0.25
    #   B=32, lr 0.1 (spec's B):     MosaicKD 26.00 | KD 30.33 | gap -4.33  (118 s CPU: over the suite's budget)
    # Spread (issue #22, `make test-robust`, 2026-12-07, AVX-512 Intel Xeon; this config):
    #   seed 0, AVX2 stand-in        MosaicKD 26.42 | KD 24.17 | gap +2.25
    #   seed 1                       MosaicKD 21.58 | KD 24.50 | gap -2.92
    #   seed 2                       MosaicKD 24.50 | KD 23.42 | gap +1.08
    # At 160 student steps both students sit 5-10 points above chance (16.7) and the gap's sign changes with the
    # seed (-2.9 to +2.3), so what is asserted is what survives that spread: both learned something from OOD images
    # alone (lowest observed 21.58, chance + 3 = 19.67), and MosaicKD is not worse than plain KD by more than 5
    # points. "At least matches plain KD" (the old -2 bound) failed at seed 1. The paper's gap needs thousands of
    # steps: bench/gpu.py --long; the MNIST test below is the CPU-scale comparison. The longer CPU run
    # (bench/ood_kd_long.py: all 20,000 vehicle images, 2,000 student steps, 6,000 test images, seeds 0-2) has both
    # students at 2.7x chance and parity: MosaicKD 45.61 +- 1.29 vs plain KD 45.74 +- 1.41 (gap -2.4 / +2.7 / -0.7),
    # so no gain is asserted at any CPU scale on this pair; this test stays the CI-budget check that both learn.
    assert kd["last_top1"] > CHANCE + 3 and mk["last_top1"] > CHANCE + 3
    assert mk["last_top1"] >= kd["last_top1"] - 5.0


def _mnist_reason():
    if not DATA:
        return "TENFOLD_DATA is not set (point it at ../shared/data)"
    if not (Path(DATA) / "mnist" / "train.npz").is_file():
        return f"MNIST pack not found under {DATA}/mnist"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_mnist_reason() is not None, reason=str(_mnist_reason()))
def test_mosaickd_vs_plain_kd_when_ood_shares_only_local_patterns(tmp_path):
    """Spec §7b on real digits (MNIST at 16x16 instead of sklearn's 8x8 digits, which are not available): in-domain
    = digits 0-4, OOD = digits 5-9 with their 4x4 patches shuffled (global shape destroyed, strokes kept: the
    spec's harder variant -- on un-shuffled 5-9 plain KD already reaches 98.0 % vs the teacher's 98.7 %, no room).
    Teacher CNN-32 trained here; student CNN-8; 150 outer iterations x 5 student steps = 750 steps in both arms."""
    teacher = run_teacher(load(TeacherConfig, None, [
        f"out={tmp_path / 'teacher'}", "teacher.dataset=mnist", "teacher.classes=[0,1,2,3,4]", "teacher.per_class=120",
        "teacher.test_per_class=60", "teacher.arch=cnn32", "teacher.img_size=16", "teacher.channels=1",
        "teacher.batch_size=64", "teacher.epochs=15", "teacher.lr=0.05", "teacher.augment=false", "device=cpu",
        f"seed={SEED}"]))
    data = ["data.in_domain=mnist", "data.in_domain_classes=[0,1,2,3,4]", "data.test_per_class=60",
            "data.ood=[mnist]", "data.ood_classes=[5,6,7,8,9]", "data.ood_per_class=200", "data.ood_patch_shuffle=4",
            "data.img_size=16", "data.channels=1", "data.kd_ood_augment=false", "data.cache_teacher_ood=true",
            f"model.teacher={tmp_path / 'teacher' / 'teacher.pt'}", "model.student=cnn8", "device=cpu", f"seed={SEED}"]
    kd = run_kd(load(KDConfig, None, data + [
        f"out={tmp_path / 'kd'}", "method=vanilla", "augment=none", "T=1", "batch_size=128", "steps=750", "lr=0.05",
        "eval_teacher=false", "eval_every=750"]))
    mk = run_mosaic(load(MosaicConfig, None, data + [
        f"out={tmp_path / 'mosaickd'}", "generator.nz=32", "generator.ngf=16", "discriminator.ndf=32",
        "train.batch_size=64", "train.iters=150", "train.kd_steps=5", "optim.lr=0.05", "train.eval_teacher=false",
        "train.eval_every=150"]))
    gap = mk["last_top1"] - kd["last_top1"]
    print(f"\ndigits 0-4 test top-1: teacher {teacher['test_top1']:.2f} | MosaicKD {mk['last_top1']:.2f} | plain KD on "
          f"patch-shuffled 5-9 {kd['last_top1']:.2f} | gap {gap:+.2f} points (750 student steps each)")
    # Calibration (1 thread; ~40 s CPU-user in all), teacher | MosaicKD | plain KD | gap:
    #   seed 0 (2026-11-28 machine):        98.67 | 91.67 | 83.33 | +8.33
    #   seed 1 (2026-11-28 machine):        98.67 | 95.00 | 92.33 | +2.67
    #   un-shuffled OOD 5-9, seed 0: MosaicKD 97.67 | plain KD 98.00 (both at the teacher's ceiling)
    # Spread (issue #22, `make test-robust`, 2026-12-07, AVX-512 Intel Xeon):
    #   seed 0, AVX2 stand-in:              98.67 | 88.67 | 88.67 |  0.00
    #   seed 1:                             99.00 | 93.67 | 82.33 | +11.33
    #   seed 2:                             99.00 | 92.00 | 76.00 | +16.00
    # MosaicKD is ahead in 4 draws of 5 (mean gap +7.7) but level in one, so "MosaicKD beats plain KD by >= 2" (the
    # old assertion) does not survive the spread. Asserted: the teacher learned, both students learned (lowest
    # observed: MosaicKD 88.67, KD 76.00), and MosaicKD is not behind plain KD by more than 3 points.
    assert teacher["test_top1"] >= 95.0
    assert kd["last_top1"] >= 60.0
    assert mk["last_top1"] >= 85.0 and gap >= -3.0
