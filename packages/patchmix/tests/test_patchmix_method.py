"""Spec §7(a) 1-7 and 13: the mixer, the soft targets and the loss, against hand-computed values."""
import math

import pytest
import torch
import torch.nn.functional as F
from patchmix.method import PatchMixer, patch_mix, patchify, segment_offsets, soft_info_nce, soft_targets, unpatchify


def coded_batch(n, gh, gw, p):
    """Images whose p x p block at cell t of image n is the constant 100 n + t."""
    t = torch.arange(gh * gw).view(gh, gw)
    codes = 100 * torch.arange(n).view(n, 1, 1) + t
    return codes.repeat_interleave(p, 1).repeat_interleave(p, 2)[:, None].float().expand(n, 3, -1, -1).contiguous()


def codes_of(x, p):
    return patchify(x, p)[..., 0].long()


@pytest.mark.parametrize("p", [2, 4, 8])
def test_patchify_round_trip(p):
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(unpatchify(patchify(x, p), p, 32), x)
    assert patchify(x, p).shape == (3, (32 // p) ** 2, 3 * p * p)


def test_hand_example_m2():
    x = coded_batch(4, 2, 2, 4)  # N=4, T=4
    out, _ = patch_mix(x, 2, 4, perm=torch.arange(4))
    assert codes_of(out, 4).tolist() == [[0, 1, 102, 103], [100, 101, 202, 203], [200, 201, 302, 303],
                                         [300, 301, 2, 3]]


def test_hand_example_m3_on_2x3_grid():
    x = coded_batch(4, 2, 3, 2)  # T=6 on a 2x3 grid
    out, _ = patch_mix(x, 3, 2, perm=torch.arange(6))
    c = codes_of(out, 2)
    assert c[0].tolist() == [0, 1, 102, 103, 204, 205]
    assert c[3].tolist() == [300, 301, 2, 3, 104, 105]


@pytest.mark.parametrize("m", [2, 3, 4])
def test_provenance_invariants(m):
    n, p = 8, 4  # T = 16 on 16x16 images
    x = torch.arange(n).float().view(n, 1, 1, 1).expand(n, 3, 16, 16).contiguous()
    out, meta = patch_mix(x, m, p, generator=torch.Generator().manual_seed(m))
    src = codes_of(out, p)  # [N, T]: the source image of each patch
    s = 16 // m
    offs = (src - torch.arange(n)[:, None]) % n  # position-wise offset j of the source
    assert (offs < m).all()  # every patch comes from {n..n+m-1} mod N
    assert (offs == offs[0]).all()  # identical position sets across the batch
    for j in range(m):
        count = (offs[0] == j).sum().item()
        assert count == (s + (16 - m * s) if j == 0 else s)  # own image also keeps the leftover cells
    assert torch.equal(offs[0], meta["offsets"].flatten())


def test_patch_keeps_position_random_images():
    x = torch.randn(6, 3, 16, 16)
    out, meta = patch_mix(x, 2, 4, generator=torch.Generator().manual_seed(0))
    po, px = patchify(out, 4), patchify(x, 4)
    offs = meta["offsets"].flatten()
    for n in range(6):
        for t in range(16):
            assert torch.equal(po[n, t], px[(n + offs[t]) % 6, t])


def test_identity_cases():
    x = torch.randn(8, 3, 16, 16)
    out, _ = patch_mix(x, 1, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, x)
    mixer = PatchMixer([2], 0.0, [4])
    import random

    draw = mixer.draw(random.Random(0))
    assert not draw.apply and draw.m == 1
    assert torch.equal(mixer.mix(x, draw), x)
    y_oo, y_mo, y_mm = soft_targets(8, draw.m)
    assert torch.equal(y_mo, torch.eye(8)) and torch.equal(y_mm, torch.eye(8)) and torch.equal(y_oo, torch.eye(8))


def test_batch_roll_equivariance():
    x = torch.randn(8, 3, 16, 16)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    for s in (1, 3):
        a, _ = patch_mix(torch.roll(x, s, 0), 3, 4, perm=perm)
        b, _ = patch_mix(x, 3, 4, perm=perm)
        assert torch.equal(a, torch.roll(b, s, 0))


def test_segment_offsets_leftover():
    offs = segment_offsets(torch.arange(7), 3)  # S = 2, one leftover cell keeps offset 0
    assert offs.tolist() == [0, 0, 1, 1, 2, 2, 0]


def test_targets_hand_values():
    _, y_mo, _ = soft_targets(4, 2)
    assert torch.allclose(y_mo, torch.tensor([[.5, .5, 0, 0], [0, .5, .5, 0], [0, 0, .5, .5], [.5, 0, 0, .5]]))
    _, _, y_mm = soft_targets(5, 2)
    want = torch.zeros(5, 5)
    for i in range(5):
        want[i, (i - 1) % 5], want[i, i], want[i, (i + 1) % 5] = .25, .5, .25
    assert torch.allclose(y_mm, want)
    _, _, y3 = soft_targets(9, 3)
    assert torch.allclose(y3[4, 2:7] * 9, torch.tensor([1., 2., 3., 2., 1.]))


@pytest.mark.parametrize("n,m", [(8, 2), (9, 3), (10, 4), (3, 3), (2, 2)])  # the last two: N < 2m-1
def test_targets_identity_and_rows(n, m):
    y_oo, y_mo, y_mm = soft_targets(n, m, dtype=torch.float64)
    for y in (y_oo, y_mo, y_mm):
        assert torch.allclose(y.sum(1), torch.ones(n, dtype=torch.float64))
    assert torch.allclose(y_mm, y_mo @ y_mo.T)
    assert torch.allclose(y_mm, y_mm.T)


def test_targets_small_batch_sums_not_overwrites():
    # N=2, m=2: mixed 0 = {0,1}, mixed 1 = {1,0}; they share both sources -> m2m row (.5,.5), not scattered over.
    _, y_mo, y_mm = soft_targets(2, 2, dtype=torch.float64)
    assert torch.allclose(y_mm, torch.full((2, 2), .5, dtype=torch.float64))


def test_targets_rank_offset_and_smoothing():
    n = 4
    y_oo, y_mo, y_mm = soft_targets(n, 2, rank=1, world=2)
    for y in (y_oo, y_mo, y_mm):
        assert y.shape == (n, 2 * n)
        assert (y[:, :n] == 0).all() and (y[:, 2 * n:] == 0).all()
        assert torch.allclose(y[:, n:2 * n].sum(1), torch.ones(n))
    eps = 0.1
    _, ys, _ = soft_targets(n, 2, rank=1, world=2, smoothing=eps, dtype=torch.float64)
    assert ys[0, 0].item() == pytest.approx(eps / 8)
    assert ys[0, n].item() == pytest.approx(0.9 * 0.5 + eps / 8)
    assert torch.allclose(ys.sum(1), torch.ones(n, dtype=torch.float64))


def test_targets_global_scope_slice():
    # global mixing over N_g = 8: rank 1's row 3 (global image 7) mixes with global image 0 (wrap across ranks)
    _, y_mo, _ = soft_targets(4, 2, rank=1, world=2, scope="global")
    assert y_mo[3, 7].item() == .5 and y_mo[3, 0].item() == .5


def _keys():
    return torch.eye(3), torch.tensor([[1.0, 0.0, 0.0]])


@pytest.mark.parametrize("target,want", [([1, 0, 0], 0.0133859), ([.5, .25, .25], 2.5133859),
                                         ([.5, .5, 0], 2.5133859)])
def test_loss_hand_values(target, want):
    k, q = _keys()
    loss = soft_info_nce(q, k, torch.tensor([target]), tau=0.2)
    assert loss.item() == pytest.approx(want, abs=1e-6)


def test_loss_equal_logits_ln2_and_ce_and_scale():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[0.0, 1.0], [0.0, -1.0]])  # both orthogonal to q: equal logits
    assert soft_info_nce(q, k, torch.tensor([[.5, .5]]), 0.2).item() == pytest.approx(math.log(2), abs=1e-6)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    labels = torch.tensor([2, 0, 1, 5, 4, 3])
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / 0.2
    ce = F.cross_entropy(logits, labels)
    assert soft_info_nce(q, k, F.one_hot(labels, 6).float(), 0.2).item() == pytest.approx(ce.item(), abs=1e-6)
    y = torch.softmax(torch.randn(6, 6, generator=g), 1)
    base = soft_info_nce(q, k, y, 0.2)
    assert soft_info_nce(3.0 * q, 0.5 * k, y, 0.2).item() == pytest.approx(base.item(), abs=1e-6)


def test_mixer_draws_one_m_per_step_for_all_calls():
    import random

    mixer = PatchMixer([2, 3, 4], 1.0, [4, 8])
    seen = {mixer.draw(random.Random(s)).m for s in range(40)}
    assert seen == {2, 3, 4}
    d = mixer.draw(random.Random(5))
    x = torch.randn(8, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    a, b = mixer.mix(x, d, g), mixer.mix(x, d, g)
    assert not torch.equal(a, b)  # each call has its own permutation ...
    assert d.m in (2, 3, 4)  # ... but the same m, used by every target of the step


def test_mix_determinism():
    x = torch.randn(8, 3, 16, 16)
    a, _ = patch_mix(x, 2, 4, torch.Generator().manual_seed(11))
    b, _ = patch_mix(x, 2, 4, torch.Generator().manual_seed(11))
    assert torch.equal(a, b)


def test_bad_patch_size_raises():
    with pytest.raises(ValueError, match="divide"):
        patch_mix(torch.randn(4, 3, 30, 30), 2, 4)


def test_mixer_and_targets_share_the_cyclic_convention():
    # pitfall 3: the sources the mixer used for image i are exactly the non-zero columns of Y_mo[i]
    for m in (2, 3):
        x = coded_batch(6, 4, 4, 2)
        out, _ = patch_mix(x, m, 2, generator=torch.Generator().manual_seed(m))
        sources = [set((codes_of(out, 2)[i] // 100).tolist()) for i in range(6)]
        _, y_mo, _ = soft_targets(6, m)
        for i in range(6):
            assert sources[i] == set(torch.nonzero(y_mo[i]).flatten().tolist())
