"""Spec §7(a): hand-computable values and invariants of the pure method pieces."""
import math

import pytest
import torch
import torch.nn.functional as F
from cmi.augment import Normalizer, random_crop_flip, random_resized_crop_flip, resized_crop_params
from cmi.generator import Generator
from cmi.hooks import TeacherTaps
from cmi.method import (
    MemoryBank,
    bn_stat_loss,
    class_balance_loss,
    contrastive_loss,
    high_t_limit,
    kldiv,
    masked_adversarial_loss,
)
from tenfold.errors import ConfigError
from torch import nn


# 1. BN-statistics loss -------------------------------------------------------------------------
def test_bn_loss_hand_case_uses_bn_input_biased_var_unsquared_norms():
    bn = nn.BatchNorm2d(1).eval()
    taps = TeacherTaps(nn.Sequential(bn), feature_layers=["0"])
    x = torch.tensor([1.0, 3.0]).view(2, 1, 1, 1)
    bn(x)
    # mu = 2, biased var = 1 (unbiased would be 2): |0-2| + |1-1| = 2
    assert taps.bn_loss().item() == pytest.approx(2.0, abs=1e-6)
    bn.running_mean.fill_(2.0)
    bn.running_var.fill_(1.0)
    bn(x)
    assert taps.bn_loss().item() == pytest.approx(0.0, abs=1e-6)
    # two channels: norms are unsquared and not divided by C: sqrt(3^2 + 4^2) = 5
    assert bn_stat_loss(torch.zeros(4, 2, 1, 1), torch.tensor([3.0, 4.0]), torch.zeros(2)).item() == pytest.approx(5)


def test_bn_hook_reads_input_not_output():
    conv = nn.Conv2d(1, 1, 1, bias=False)
    nn.init.constant_(conv.weight, 2.0)
    bn = nn.BatchNorm2d(1).eval()
    net = nn.Sequential(conv, bn)
    taps = TeacherTaps(net, feature_layers=["1"])
    x = torch.tensor([1.0, 3.0]).view(2, 1, 1, 1)
    net(x)  # BN input = {2, 6}: mu 4, var 4 -> |0-4| + |1-4| = 7 (the BN output would give ~ 0 + ...)
    assert taps.bn_loss().item() == pytest.approx(7.0, abs=1e-5)
    assert torch.allclose(taps.features(), torch.tensor([[2.0], [6.0]]))


# 3. contrastive loss ---------------------------------------------------------------------------
def test_contrastive_hand_cases():
    e = torch.eye(2)
    val = contrastive_loss(e, e, batch=2, tau=0.1)
    assert val.item() == pytest.approx(math.log(1 + math.exp(-10)), rel=1e-3)  # 4.54e-5
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert contrastive_loss(q, q, batch=2, tau=0.1).item() == pytest.approx(math.log(2), abs=1e-6)


def test_contrastive_split_rule_is_sum_of_two_means():
    torch.manual_seed(0)
    q = F.normalize(torch.randn(5, 4, dtype=torch.float64), dim=1)
    k = F.normalize(torch.randn(5, 4, dtype=torch.float64), dim=1)
    logits = (q @ k.t() / 0.5).tolist()
    ce = [-(logits[i][i] - math.log(sum(math.exp(v) for v in logits[i]))) for i in range(5)]
    expected = sum(ce[:2]) / 2 + sum(ce[2:]) / 3
    got = contrastive_loss(q, k, batch=2, tau=0.5).item()
    assert got == pytest.approx(expected, rel=1e-9)
    assert abs(got - sum(ce) / 5) > 1e-3  # not the single mean over all rows
    assert contrastive_loss(q, k, 2, 0.5, split_means=False).item() == pytest.approx(sum(ce) / 5, rel=1e-9)


def test_contrastive_permutation_invariant():
    torch.manual_seed(1)
    q = F.normalize(torch.randn(7, 8), dim=1)
    k = F.normalize(torch.randn(7, 8), dim=1)
    perm = torch.tensor([3, 0, 2, 1])  # permute the B=4 current rows together
    q2, k2 = q.clone(), k.clone()
    q2[:4], k2[:4] = q[perm], k[perm]
    assert contrastive_loss(q, k, 4, 0.1).item() == pytest.approx(contrastive_loss(q2, k2, 4, 0.1).item(), rel=1e-5)


def test_contrastive_key_side_is_stop_gradient():
    q = F.normalize(torch.randn(3, 4), dim=1).requires_grad_(True)
    k = F.normalize(torch.randn(3, 4), dim=1).requires_grad_(True)
    contrastive_loss(q, k, 3, 0.1).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None


# 5. masked adversarial -------------------------------------------------------------------------
def test_masked_adversarial():
    t = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    s_disagree = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert masked_adversarial_loss(s_disagree, t).item() == 0.0
    assert masked_adversarial_loss(t.clone(), t).item() == pytest.approx(0.0, abs=1e-7)
    # t=[2,0], s=[1,0]: -KL(softmax t || softmax s) computed in float64 by hand
    pt = [math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)]
    ps = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]
    kl = sum(a * math.log(a / b) for a, b in zip(pt, ps))
    got = masked_adversarial_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]])).item()
    assert got == pytest.approx(-kl, abs=1e-4)
    assert got == pytest.approx(-0.06713, abs=1e-4)


# 6. KD loss ------------------------------------------------------------------------------------
def test_kldiv_is_t2_batchmean_kl_and_high_t_limit():
    torch.manual_seed(0)
    s, t = torch.randn(6, 10, dtype=torch.float64), torch.randn(6, 10, dtype=torch.float64)
    T = 4.0
    p = torch.softmax(t / T, 1)
    manual = (p * (p.log() - torch.log_softmax(s / T, 1))).sum() / 6 * T * T
    assert kldiv(s, t, T).item() == pytest.approx(manual.item(), rel=1e-9)
    s, t = 0.5 * torch.randn(8, 10, dtype=torch.float64), 0.5 * torch.randn(8, 10, dtype=torch.float64)
    # high-T limit: sum over the batch of ||centered Δz||^2 / (2 C N)
    d = s - t
    d = d - d.mean(1, keepdim=True)
    limit = (d ** 2).sum() / (2 * 10 * 8)
    assert kldiv(s, t, 20.0).item() == pytest.approx(limit.item(), rel=0.05)
    assert high_t_limit(s, t).item() == pytest.approx(limit.item(), rel=1e-12)


# 7. memory bank --------------------------------------------------------------------------------
def test_memory_bank_ring_and_full_fix():
    bank = MemoryBank(8)
    rows = [torch.arange(4 * i, 4 * i + 4, dtype=torch.float32)[:, None].repeat(1, 3) for i in range(3)]
    bank.add(rows[0])
    bank.add(rows[1])
    got = bank.get_data(100)  # exactly full: the fixed bank returns all 8 rows
    assert got.shape[0] == 8
    buggy = MemoryBank(8, reference_full_bug=True)
    buggy.add(rows[0])
    buggy.add(rows[1])
    assert buggy.get_data(100) is None  # the reference's zero-negatives round
    bank.add(rows[2])
    assert bank.n_updates == 12
    five = bank.get_data(5)
    assert five.shape[0] == 5 and len(set(five[:, 0].tolist())) == 5
    assert set(bank.data[:, 0].tolist()) == set(range(4, 12))  # the last 8 added rows
    assert set(five[:, 0].tolist()) <= set(range(4, 12))
    with pytest.raises(ConfigError, match="multiple"):
        MemoryBank(10).add(torch.zeros(4, 3))


def test_memory_bank_partial_and_empty():
    bank = MemoryBank(8)
    assert bank.get_data(4) is None
    bank.add(torch.ones(4, 2))
    assert bank.get_data(100).shape == (4, 2)


# 8. generator ----------------------------------------------------------------------------------
def test_generator_shape_range_and_reset():
    g = Generator(nz=256, ngf=64, img_size=32)
    x = g(torch.randn(4, 256))
    assert x.shape == (4, 3, 32, 32) and x.min() >= 0 and x.max() <= 1
    before = g.conv_blocks[2].weight.clone()
    g.reset()
    w = g.conv_blocks[2].weight
    assert not torch.equal(before, w)
    assert 0.02 * 0.7 < w.std().item() < 0.02 * 1.3
    assert g.conv_blocks[0].weight.mean().item() == pytest.approx(1.0, abs=0.01)
    assert g.l1.bias.abs().sum() == 0


# 9. augmentations ------------------------------------------------------------------------------
def test_augmentations_per_sample_zero_pad_flip_and_grad():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32).repeat(64, 1, 1, 1)
    g = random_crop_flip(x, 4)
    l = random_resized_crop_flip(x)
    assert g.shape == x.shape and l.shape == x.shape
    assert not all(torch.equal(g[0], g[i]) for i in range(1, 64))
    assert not all(torch.allclose(l[0], l[i]) for i in range(1, 64))
    ones = torch.ones(256, 3, 32, 32)
    out, p = random_crop_flip(ones, 4, return_params=True)
    shifted = (p["shift_x"] != 0) | (p["shift_y"] != 0)
    has_zero = (out == 0).flatten(1).any(1)
    assert torch.equal(has_zero, shifted)
    xg = torch.rand(8, 3, 32, 32, requires_grad=True)
    (random_crop_flip(xg, 4).sum() + random_resized_crop_flip(xg).sum()).backward()
    assert xg.grad.abs().sum() > 0
    _, p = random_crop_flip(torch.rand(1000, 1, 4, 4), 1, return_params=True)
    assert 0.4 <= p["flip"].float().mean().item() <= 0.6
    prm = resized_crop_params(2000, 32, 32)
    assert prm["scale"].min() >= 0.25 - 1e-6 and prm["scale"].max() <= 1.0 + 1e-6
    assert (prm["w"] <= 32).all() and (prm["h"] <= 32).all()


def test_crop_flip_matches_manual_pad_and_flip():
    x = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 4, 4)
    torch.manual_seed(3)
    out, p = random_crop_flip(x, 1, return_params=True)
    for b in range(2):
        xp = F.pad(x[b:b + 1], (1, 1, 1, 1))
        oy, ox = int(p["shift_y"][b]) + 1, int(p["shift_x"][b]) + 1
        ref = xp[..., oy:oy + 4, ox:ox + 4]
        if p["flip"][b]:
            ref = ref.flip(-1)
        assert torch.equal(out[b:b + 1], ref)


def test_resized_crop_full_image_is_identity():
    x = torch.rand(2, 3, 8, 8)
    out = random_resized_crop_flip(x, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
    assert torch.allclose(out, x, atol=1e-5)


def test_normalizer_roundtrip():
    n = Normalizer([0.5, 0.4, 0.3], [0.2, 0.3, 0.4])
    x = torch.rand(2, 3, 4, 4)
    assert torch.allclose(n(n(x), reverse=True), x, atol=1e-6)


# 13. balance loss ------------------------------------------------------------------------------
def test_class_balance_minimum_is_minus_log_c():
    uniform = torch.zeros(4, 10)
    assert class_balance_loss(uniform).item() == pytest.approx(-math.log(10), abs=1e-6)
    peaked = torch.zeros(4, 10)
    peaked[:, 0] = 10
    assert class_balance_loss(peaked).item() > -math.log(10) + 1
