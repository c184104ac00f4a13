"""Temporal neighbour index and samplers (spec §7a.1, 5, 7; pitfalls 1, 4, 11)."""
import numpy as np
import pytest
import torch
from dps.gas import build_gas_model, gas_logits, precompute_topk
from dps.samplers import RecentSampler, TableSampler, TimeDecaySampler, UniformSampler
from dps.tcsr import TemporalCSR
from tenfold.errors import DataError


def random_stream(n_events=300, n_nodes=20, seed=0, ties=True):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(1, n_nodes + 1, (n_events,), generator=g)
    dst = torch.randint(1, n_nodes + 1, (n_events,), generator=g)
    t = torch.sort(torch.randint(0, n_events // 3 if ties else 10**6, (n_events,), generator=g).double()).values
    return src, dst, t


def star(n=20, center=1):
    """Node `center` talks to nodes 2..n+1 at times 1..n."""
    src = torch.full((n,), center)
    dst = torch.arange(2, n + 2)
    t = torch.arange(1, n + 1).double()
    return src, dst, t


@pytest.mark.parametrize("kind", ["uniform", "recent", "tds"])
def test_strictly_before_shapes_padding(kind):
    src, dst, t = random_stream()
    csr = TemporalCSR(src, dst, t, 20)
    k = 5
    s = {"uniform": lambda: UniformSampler(csr, k), "recent": lambda: RecentSampler(csr, k),
         "tds": lambda: TimeDecaySampler(csr, k, torch.full((21,), 3.0), 0.0, float(t.max()))}[kind]()
    g = torch.Generator().manual_seed(1)
    nodes = torch.randint(1, 21, (400,), generator=g)
    qt = t[torch.randint(0, t.numel(), (400,), generator=g)]  # query times equal to event times: ties
    nb, e, ts = s(nodes, qt)
    assert nb.shape == e.shape == ts.shape == (400, k)
    valid = nb != 0
    assert (ts[valid] < qt[:, None].expand(-1, k)[valid]).all()  # strict: same-time events excluded
    assert (e[~valid] == 0).all() and (ts[~valid] == 0).all()
    # every returned event really is an event of that node with that neighbour and time
    for i in range(0, 400, 37):
        for j in range(k):
            if nb[i, j]:
                ev = int(e[i, j]) - 1
                assert {int(src[ev]), int(dst[ev])} == {int(nodes[i]), int(nb[i, j])} and t[ev] == ts[i, j]
    # r matches a brute-force count (prefix strictly before t)
    r = csr.prefix_len(nodes, qt)
    brute = torch.tensor([int((((src == u) | (dst == u)) & (t < tq)).sum() + ((src == u) & (dst == u) & (t < tq))
                               .sum()) for u, tq in zip(nodes.tolist(), qt.tolist())])
    assert torch.equal(r, brute)


def test_future_events_change_nothing():
    src, dst, t = random_stream(ties=False)
    cut = 200
    a = TemporalCSR(src[:cut], dst[:cut], t[:cut], 20)
    b = TemporalCSR(src, dst, t, 20)
    nodes = torch.arange(1, 21).repeat(5)
    qt = torch.full((100,), float(t[cut]))  # everything from index cut on is at time >= t[cut]
    for cls in (RecentSampler, UniformSampler):
        oa = cls(a, 6)(nodes, qt, torch.Generator().manual_seed(0))
        ob = cls(b, 6)(nodes, qt, torch.Generator().manual_seed(0))
        for x, y in zip(oa, ob):
            assert torch.equal(x, y)


def test_unknown_node_is_a_clear_error():
    src, dst, t = star(5)
    csr = TemporalCSR(src, dst, t, 6)
    with pytest.raises(DataError, match="unknown node id 99"):
        RecentSampler(csr, 3)(torch.tensor([99]), torch.tensor([3.0]))


def test_recent_and_short_history_padding_at_end():
    src, dst, t = star(20)
    csr = TemporalCSR(src, dst, t, 21)
    nb, _, ts = RecentSampler(csr, 5)(torch.tensor([1, 1]), torch.tensor([4.0, 20.5]))
    assert nb[0].tolist() == [2, 3, 4, 0, 0]  # r = 3 < K: all, chronological, padded at the end
    assert ts[1].tolist() == [16.0, 17.0, 18.0, 19.0, 20.0]


def tds_draws(alpha, n=20000, k=5, mode="resample", scale=19.0):
    src, dst, t = star(20)
    t = t - 1  # times 0..19
    csr = TemporalCSR(src, dst, t, 21)
    s = TimeDecaySampler(csr, k, torch.full((22,), float(alpha)), 0.0, scale, mode)
    nb, _, ts = s(torch.ones(n, dtype=torch.long), torch.full((n,), 100.0), torch.Generator().manual_seed(0))
    return s, nb, ts


def test_tds_alpha_zero_is_uniform_without_replacement():
    _, nb, ts = tds_draws(0.0)
    freq = torch.bincount(nb.flatten(), minlength=22)[2:].double() / nb.shape[0]
    assert torch.allclose(freq, torch.full((20,), 5 / 20, dtype=torch.float64), atol=0.02)
    assert (torch.sort(nb, 1).values[:, 1:] != torch.sort(nb, 1).values[:, :-1]).all()  # no duplicates
    assert (ts[:, 1:] > ts[:, :-1]).all()  # sorted by time


def test_tds_alpha_100_takes_the_most_recent():
    _, nb, _ = tds_draws(100.0, n=5000)
    top = torch.tensor([17, 18, 19, 20, 21])
    frac = (nb == top).all(1).double().mean()
    assert frac > 0.99, float(frac)


def test_tds_short_history_and_cache_modes():
    src, dst, t = star(20)
    csr = TemporalCSR(src, dst, t, 21)
    a = torch.full((22,), 1.0)
    fr = TimeDecaySampler(csr, 5, a, 0.0, 20.0, "frozen")
    nb, _, _ = fr(torch.tensor([1]), torch.tensor([3.5]))
    assert nb[0].tolist() == [2, 3, 4, 0, 0]
    q = (torch.ones(50, dtype=torch.long), torch.full((50,), 21.0))
    first = fr(*q)[0]
    assert (first == first[0]).all()  # one frozen draw per (u, r), also within a batch
    assert torch.equal(fr(*q)[0], first)  # and on a repeated call
    rs = TimeDecaySampler(csr, 5, a, 0.0, 20.0, "resample")
    d1, d2 = rs(*q)[0], rs(*q)[0]
    assert not torch.equal(d1, d2)
    sd = fr.state_dict()
    fr2 = TimeDecaySampler(csr, 5, a, 0.0, 20.0, "frozen")
    fr2.load_state_dict(sd)
    assert torch.equal(fr2(*q)[0], first)


def hand_gas(weights, k=3):
    """GAS model with W_Q = W_K = I, Φ ≡ 1 (zero frequencies) and x_v = (w_v, 0, ...), x_u = e_1:
    logit(v) = (w_v + D_t) / sqrt(d_k), so the top-K are the K largest w_v."""
    n = len(weights)
    src, dst, t = star(n)
    csr = TemporalCSR(src, dst, t, n + 1)
    model = build_gas_model(n + 1, 4, n)
    enc = model.encoder
    with torch.no_grad():
        a = enc.attn[0][0]
        a.w_q.weight.copy_(torch.eye(a.d_model))
        a.w_k.weight.copy_(torch.eye(a.d_model))
        enc.time_enc.basis_freq.zero_()
        enc.node_emb.weight.zero_()
        enc.node_emb.weight[1, 0] = 1.0
        enc.node_emb.weight[2:n + 2, 0] = torch.tensor(weights)
    return csr, model


def test_gas_topk_selection_by_hand():
    w = [0.5, 3.0, -1.0, 2.0, 0.1, 4.0, -2.0, 1.0, 2.5, 0.0, 5.0, -0.5]
    k = 3
    csr, model = hand_gas(w, k)
    table = precompute_topk(model, csr, k)
    s = TableSampler(csr, k, table)
    for r in range(0, len(w) + 1):
        nb, _, ts = s(torch.tensor([1]), torch.tensor([r + 0.5]))
        if r < k:
            assert nb[0].tolist() == list(range(2, 2 + r)) + [0] * (k - r)
            continue
        expect = sorted(np.argsort(-np.array(w[:r]), kind="stable")[:k].tolist())  # positions, by time
        assert nb[0].tolist() == [p + 2 for p in expect], (r, nb)
        assert (nb[0] != 0).all() and (ts[0, 1:] > ts[0, :-1]).all()
    # the cache key is (u, r): any query time with the same r gives the same row
    a = s(torch.tensor([1, 1]), torch.tensor([7.2, 7.9]))[0]
    assert torch.equal(a[0], a[1])


def test_gas_logits_match_the_attention_module():
    src, dst, t = random_stream(ties=False)
    csr = TemporalCSR(src, dst, t, 20)
    model = build_gas_model(20, 8, src.numel())
    nodes = torch.tensor([3, 5, 7])
    r = csr.prefix_len(nodes, torch.full((3,), float(t[-1]) + 1))
    pos, valid = csr.window(nodes, r)
    t_star = torch.full((3,), float(t[-1]) + 1, dtype=torch.float64)
    fast = gas_logits(model, csr, nodes, pos, valid, t_star)
    enc, a = model.encoder, model.encoder.attn[0][0]
    nb, e, ts = csr.gather(pos, valid)
    phi0 = enc.time_enc(torch.zeros(1, dtype=torch.float64))
    with torch.no_grad():
        k_in = torch.cat([enc.node_emb(nb), enc.edge_rows(e), enc.time_enc(t_star[:, None] - ts)], -1)
        ref = a.logits(a.query(enc.node_emb(nodes), phi0), k_in, ~valid)[:, 0]
    assert torch.allclose(fast[valid], ref[valid], atol=1e-4)


def test_pyg_subgraph_feeds_a_pyg_layer():
    from dps.samplers import pyg_subgraph
    from torch_geometric.nn import SAGEConv

    src, dst, t = random_stream(ties=False)
    csr = TemporalCSR(src, dst, t, 20)
    roots, qt = torch.tensor([3, 5, 3]), torch.full((3,), float(t[150]), dtype=torch.float64)
    n_id, edge_index, e_id, te = pyg_subgraph(RecentSampler(csr, 4), roots, qt)
    assert torch.equal(n_id[:2], torch.tensor([3, 5]))  # roots first, deduplicated
    nb, e, ts = RecentSampler(csr, 4)(roots, qt)
    assert edge_index.shape[1] == int((nb != 0).sum()) == e_id.numel()
    assert torch.equal(n_id[edge_index[0]], nb[nb != 0]) and (te < float(t[150])).all()
    assert torch.equal(n_id[edge_index[1]], roots[:, None].expand_as(nb)[nb != 0])
    out = SAGEConv(8, 4)(torch.randn(n_id.numel(), 8), edge_index)
    assert out.shape == (n_id.numel(), 4)
