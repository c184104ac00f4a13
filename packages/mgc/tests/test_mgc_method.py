"""Spec 7a.4, 7a.5, 7a.8-7a.10 and pitfalls 5-8, 11: pooling, loss values, schedules, EMA, clipping."""
import math

import pytest
import torch
from mgc.method import (
    clip_per_parameter,
    duplicate_mask,
    ema_update,
    gather_cells,
    info_nce,
    lr_at,
    momentum_at,
    multigrain_loss,
    pool_cells,
)
from torch import nn


@pytest.mark.parametrize("G,c", [(8, 1), (8, 2), (8, 4), (14, 7), (14, 2)])
def test_pooling_layout_is_row_major_blocks(G, c):
    B, D = 2, 3
    F = torch.arange(G * G, dtype=torch.float64)[None, :, None].expand(B, -1, D)
    P = pool_cells(F, G, c)
    L = G // c
    assert P.shape == (B, L * L, D)
    for i in range(L):
        for j in range(L):
            toks = [(c * i + a) * G + c * j + b for a in range(c) for b in range(c)]
            assert P[0, i * L + j, 0].item() == pytest.approx(sum(toks) / len(toks))


def test_gather_cells_orders_rows_image_then_pair():
    pooled = torch.arange(2 * 4, dtype=torch.float32).reshape(2, 4, 1)
    idx = torch.tensor([[3, 0], [1, 2]])
    assert gather_cells(pooled, idx).flatten().tolist() == [3, 0, 5, 6]


def test_infonce_one_hot_rows():
    N, T = 4, 0.1
    q = torch.eye(N, 8, dtype=torch.float64)
    loss = info_nce(q, q.clone(), T)
    assert loss.item() == pytest.approx(math.log(1 + (N - 1) * math.exp(-1 / T)), rel=1e-9)
    assert loss.item() == pytest.approx(1.3619e-4, rel=1e-3)


def test_infonce_identical_keys_is_log_n():
    q = torch.randn(6, 5)
    k = torch.randn(1, 5).expand(6, -1)
    assert info_nce(q, k, 0.1).item() == pytest.approx(math.log(6), rel=1e-5)


def _ce_rows_float64(q, k, T, offset=0):
    q = q.double() / q.double().norm(dim=1, keepdim=True)
    k = k.double() / k.double().norm(dim=1, keepdim=True)
    out = []
    for r in range(q.shape[0]):
        s = [float(q[r] @ k[j]) / T for j in range(k.shape[0])]
        m = max(s)
        out.append(-(s[r + offset] - m - math.log(sum(math.exp(x - m) for x in s))))
    return out


def test_pair_weighting_variants():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    ce = _ce_rows_float64(q, k, 0.1)
    w = torch.tensor([1.0, 0, 0, 0, 0])
    assert info_nce(q, k, 0.1, w, "w").item() == pytest.approx(ce[0], rel=1e-5)
    w = torch.tensor([0.5, 0.25, 0.0, 0.4, 0.0])
    assert info_nce(q, k, 0.1, w, "none").item() == pytest.approx((ce[0] + ce[1] + ce[3]) / 3, rel=1e-5)
    assert info_nce(q, k, 0.1, w, "official").item() == pytest.approx(sum(ce) / 5, rel=1e-5)  # w is a no-op
    wsum = 0.5 * ce[0] + 0.25 * ce[1] + 0.4 * ce[3]
    assert info_nce(q, k, 0.1, w, "w").item() == pytest.approx(wsum / 1.15, rel=1e-5)


def test_distributed_label_offset():
    """Pitfall 7: keys gathered from all ranks; rank r's positive for row i is column i + r*B*K."""
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(3, 4, generator=g), torch.randn(9, 4, generator=g)
    ce = _ce_rows_float64(q, k, 0.2, offset=3)
    assert info_nce(q, k, 0.2, offset=3).item() == pytest.approx(sum(ce) / 3, rel=1e-5)


def test_weighted_total_over_levels():
    a, b, c = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0)
    assert multigrain_loss([a, b, c], [10, 10, 2]).item() == pytest.approx((10 + 20 + 8) / 22)


def test_duplicate_mask_marks_same_image_shared_cells():
    """Pitfall 6: pairs of one image sharing a view-1 (or view-2) cell are false negatives."""
    idx1 = torch.tensor([[5, 5, 7], [5, 1, 2]])
    idx2 = torch.tensor([[0, 3, 4], [9, 9, 8]])
    m = duplicate_mask(idx1, idx2)
    expect = torch.zeros(6, 6, dtype=torch.bool)
    expect[0, 1] = expect[1, 0] = True  # image 0: shared view-1 cell 5
    expect[3, 4] = expect[4, 3] = True  # image 1: shared view-2 cell 9 (not image 0's cell 5)
    assert torch.equal(m, expect)
    q = torch.randn(6, 4)
    k = torch.randn(6, 4)
    masked = info_nce(q, k, 0.1, mask=m)
    # by hand: drop the masked logits from each row's denominator
    logits = nn.functional.normalize(q, dim=1) @ nn.functional.normalize(k, dim=1).T / 0.1
    rows = [-(logits[r, r] - torch.logsumexp(logits[r][~m[r]], 0)) for r in range(6)]
    assert masked.item() == pytest.approx(torch.stack(rows).mean().item(), rel=1e-5)
    assert masked.item() < info_nce(q, k, 0.1).item()


def test_lr_schedule():
    total, warm, lr, min_lr = 100, 10, 1e-3, 1e-6
    s = [lr_at(t, total, warm, lr, min_lr) for t in range(total)]
    assert len(s) == total and s[0] == 0.0
    assert s[5] == pytest.approx(lr / 2) and s[10] == pytest.approx(lr)
    assert all(x < y for x, y in zip(s[:10], s[1:11]))  # linear warm-up from 0
    assert s[-1] == pytest.approx(min_lr) and all(x >= y for x, y in zip(s[10:], s[11:]))


def test_momentum_schedule():
    assert momentum_at(0, 1000, 0.996) == pytest.approx(0.996)
    assert momentum_at(500, 1000, 0.996) == pytest.approx(0.998)
    assert momentum_at(1000, 1000, 0.996) == pytest.approx(1.0)


def test_ema_update_extremes_and_buffers():
    base, mom = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)), nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    mom[1].running_mean.fill_(7.0)
    before = [p.clone() for p in mom.parameters()]
    ema_update(mom, base, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, mom.parameters()))
    ema_update(mom, base, 0.5)
    for a, b, c in zip(before, base.parameters(), mom.parameters()):
        assert torch.allclose(c, 0.5 * a + 0.5 * b)
    ema_update(mom, base, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(base.parameters(), mom.parameters()))
    assert torch.all(mom[1].running_mean == 7.0)  # buffers are the momentum branch's own


def test_clipping_is_per_parameter():
    a, b = nn.Parameter(torch.zeros(4)), nn.Parameter(torch.zeros(3))
    a.grad = torch.full((4,), 1e6)
    b.grad = torch.tensor([0.6, 0.8, 0.0])  # norm 1
    norms = clip_per_parameter([a, b], 3.0)
    assert norms[0].item() == pytest.approx(2e6) and norms[1].item() == pytest.approx(1.0)
    assert a.grad.norm().item() == pytest.approx(3.0, rel=1e-5)
    assert torch.equal(b.grad, torch.tensor([0.6, 0.8, 0.0]))  # a global-norm clip would shrink it too
