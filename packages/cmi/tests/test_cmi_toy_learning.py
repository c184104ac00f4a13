"""Spec §7(b), reduced to the fast suite: on the 16x16 toy teacher, CMI's trained head discriminates the
synthesized instances above chance, and a student distilled on CMI's pool beats noise-KD by a wide margin on
the real toy test images (same KD budget, optimiser and seed)."""
import torch
from cmi.config import SynthConfig
from cmi.data import evaluate
from cmi.method import kldiv
from cmi.metrics import instance_discrimination_accuracy, mean_pairwise_cosine, teacher_features
from cmi.models import ToyNet
from cmi.pool import ImagePool
from cmi.synthesis import CMISynthesizer


def _synthesize(teacher, norm, cr, rounds=3):
    torch.manual_seed(0)
    cfg = SynthConfig(batch_size=32, g_steps=15, lr_g=1e-2, nz=64, ngf=32, bn=1.0, oh=1.0, adv=0.0, cr=cr,
                      cr_T=0.1, bank_size=256, n_neg=128, head_dim=64)
    syn = CMISynthesizer(teacher, None, 4, cfg, norm, "cpu", img_size=16)
    pool = ImagePool()
    for _ in range(rounds):
        pool.add(syn.synthesize()["images"])
    return syn, pool.tensor()


def _kd(teacher, pool, norm, seed=0):
    torch.manual_seed(seed)
    student = ToyNet(8, 4)
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    for x in pool.batches(90, 64, norm, "cpu"):
        with torch.no_grad():
            t = teacher(x)
        loss = kldiv(student(x), t, 4.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return student


def test_cmi_student_beats_noise_kd_on_toy(toy_teacher, toy_norm, toy_data):
    cmi, x_cmi = _synthesize(toy_teacher, toy_norm, cr=0.8)
    ida = instance_discrimination_accuracy(toy_teacher, cmi.head, cmi.taps, x_cmi, toy_norm)
    cos = mean_pairwise_cosine(teacher_features(toy_teacher, x_cmi, toy_norm))
    print(f"toy CMI set: instance discrimination {ida:.3f} (chance {1 / 96:.3f}), mean pairwise cosine {cos:.4f}")
    # Calibrated once (seed 0): instance discrimination 0.042, teacher 100.0, CMI student 99.8, noise-KD 40.5.
    # (On this toy teacher the no-contrast set came out *less* similar, 0.486 vs CMI 0.597, so the diversity
    # claim is asserted on the real CIFAR-10 teacher in the slow test instead.)
    assert ida > 2 / 96
    cmi_pool, noise_pool = ImagePool(), ImagePool()
    cmi_pool.add(x_cmi)
    noise_pool.add(torch.rand(96, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    x_te, y_te = toy_data[1].tensors()
    acc_t = evaluate(toy_teacher, x_te, y_te, toy_norm, "cpu")["top1"]
    acc_c = evaluate(_kd(toy_teacher, cmi_pool, toy_norm), x_te, y_te, toy_norm, "cpu")["top1"]
    acc_n = evaluate(_kd(toy_teacher, noise_pool, toy_norm), x_te, y_te, toy_norm, "cpu")["top1"]
    print(f"toy top-1: teacher {acc_t:.1f}, CMI student {acc_c:.1f}, noise-KD student {acc_n:.1f}")
    assert acc_t >= 90
    assert acc_c >= 60 and acc_c >= acc_n + 20
