"""Real-data proof (slow): teacher ../shared/models/cifar10_wrn40_2.pt -> student WRN-16-1, no real training
image used. Arms at equal synthesis and KD budget, same seed and student optimiser:
  CMI (bn 1, oh 1, adv 0.5, cr 0.8, tau 0.1, bank 256, n_neg 128, head 64, generator reset per round),
  the same pipeline without the contrastive (and adversarial) term (DeepInversion-style losses), and noise-KD.
Asserted: CMI's synthetic set is more diverse (mean pairwise cosine of teacher instance-mean features) and its
head discriminates instances far above chance; the students' accuracies and the CMI - no-contrast gap are logged
(not assertable at this budget, spec §7(d)). The budget is cut from the spec's (3 x 32 x 20 iterations,
3 x 30 x 64 KD) to 3 x 16 x 12 iterations and 3 x 30 x 16 KD steps to fit the monorepo's 150 s CPU limit.
"""
import os
from pathlib import Path

import pytest
import torch
from cmi.cli import distill_parser, load_distill_config
from cmi.metrics import instance_discrimination_accuracy, mean_pairwise_cosine, teacher_features
from cmi.train import Distiller

DATA = os.environ.get("TENFOLD_DATA")
TEACHER = Path(DATA or "/nonexistent").parent / "models" / "cifar10_wrn40_2.pt"


def _arm(tmp_path, name, *extra):
    argv = ["--device", "cpu", "--seed", "0", "--data-root", DATA, f"teacher.path={TEACHER}",
            "student.arch=wrn16_1", "data.test_subset=2000", "eval_teacher=false",
            "synth.batch_size=16", "synth.g_steps=12", "synth.lr_g=0.05", "synth.bank_size=256", "synth.n_neg=128",
            "synth.head_dim=64", "kd.epochs=1", "kd.ep_steps=90", "kd.kd_steps=30", "kd.batch_size=16",
            "kd.lr=0.05", "kd.T=4", "--out", str(tmp_path / name), *extra]
    d = Distiller(load_distill_config(distill_parser().parse_intermixed_args(argv)), quiet=True)
    summary = d.run()
    return d, summary


@pytest.mark.slow
@pytest.mark.skipif(not DATA or not (Path(DATA) / "cifar10" / "test.npz").is_file() or not TEACHER.is_file(),
                    reason="needs TENFOLD_DATA with cifar10/test.npz and ../shared/models/cifar10_wrn40_2.pt")
def test_cmi_diverse_and_beats_noise_kd_on_cifar10(tmp_path):
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    cmi, s_cmi = _arm(tmp_path, "cmi", "--method=cmi")
    base, s_base = _arm(tmp_path, "no_contrast", "--method=cmi", "synth.cr=0", "synth.adv=0")
    _, s_noise = _arm(tmp_path, "noise", "--method=noise", "kd.noise_pool=48")
    cos_cmi = mean_pairwise_cosine(teacher_features(cmi.teacher, cmi.pool.tensor(), cmi.norm))
    cos_base = mean_pairwise_cosine(teacher_features(base.teacher, base.pool.tensor(), base.norm))
    ida = instance_discrimination_accuracy(cmi.teacher, cmi.synth.head, cmi.synth.taps, cmi.pool.tensor(), cmi.norm)
    acc = {k: s["last_top1"] for k, s in (("cmi", s_cmi), ("no_contrast", s_base), ("noise", s_noise))}
    print(f"\n[cmi slow] diversity (mean pairwise cosine, lower = more diverse): CMI {cos_cmi:.4f} vs "
          f"no-contrast {cos_base:.4f}; CMI instance-discrimination acc {ida:.3f} (chance {1 / 48:.3f})")
    print(f"[cmi slow] student top-1 on 2000 real test images: {acc}; CMI - no-contrast gap "
          f"{acc['cmi'] - acc['no_contrast']:+.2f} points (logged, not asserted)")
    # Calibrated once (seed 0, 2-core shared CPU, 118 s CPU-user, 7.5 min wall under load): cosine CMI 0.7993 vs
    # no-contrast 0.8527, instance discrimination 0.167 (chance 0.021); top-1 CMI 10.4, no-contrast 8.8,
    # noise-KD 10.1 -- at this budget the students do not separate from noise-KD (the images are 12 iterations
    # old), so accuracy is logged only; the toy test asserts students >> noise-KD, bench/gpu.sh the paper's gap.
    assert len(cmi.pool) == len(base.pool) == 48
    assert cos_cmi <= cos_base - 0.02
    assert ida > 3 / 48
