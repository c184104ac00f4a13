"""No neighbourhood may see the future (issue #19): for every sampler, the embeddings of queries at time T are
unchanged when every event with t >= T is deleted from the graph. The official GAS t* (time of the node's next
interaction) is the only switch that fails it."""
import pytest
import torch
from dps.config import GASConfig
from dps.data import preference_stream
from dps.gas import build_gas_model, gas_sampler
from dps.model import TemporalEncoder
from dps.samplers import RecentSampler, TimeDecaySampler, UniformSampler
from dps.tcsr import TemporalCSR

K = 3


def graphs(cut_frac=0.6):
    stream, _ = preference_stream(num_users=15, num_items=15, num_events=600, seed=1)
    d = stream.data
    big_t = float(d.t[int(cut_frac * d.t.numel())])
    keep = d.t < big_t
    full = TemporalCSR(d.src, d.dst, d.t, stream.num_nodes)
    past = TemporalCSR(d.src[keep], d.dst[keep], d.t[keep], stream.num_nodes,
                       eid=torch.nonzero(keep).squeeze(1) + 1)
    return stream, full, past, big_t


def make(kind, csr, gas_model, alpha, scale):
    tds = lambda mode: TimeDecaySampler(csr, K, alpha, 0.0, scale, mode)  # noqa: E731
    return {"uniform": lambda: [UniformSampler(csr, K)], "recent": lambda: [RecentSampler(csr, K)],
            "tds-frozen": lambda: [tds("frozen")], "tds-resample": lambda: [tds("resample")],
            "gas": lambda: [gas_sampler(gas_model, csr, K)],
            "gas+tds": lambda: [gas_sampler(gas_model, csr, K), tds("frozen")],
            "gas-official": lambda: [gas_sampler(gas_model, csr, K, mode="official")],
            "gas-official+tds": lambda: [gas_sampler(gas_model, csr, K, mode="official"), tds("frozen")]}[kind]()


def max_change(kind):
    torch.manual_seed(0)
    stream, full, past, big_t = graphs()
    n = stream.num_nodes
    gas_model = build_gas_model(n, 8, stream.num_events)
    alpha = torch.rand(n + 1) * 20
    scale = float(stream.data.t.max())
    nodes = torch.arange(1, n + 1)
    qt = torch.full((n,), big_t, dtype=torch.float64)
    outs = []
    for csr in (full, past):
        samplers = make(kind, csr, gas_model, alpha, scale)
        torch.manual_seed(1)
        enc = TemporalEncoder(n, 8, n_layer=2, n_head=2, n_samplers=len(samplers), num_edges=stream.num_events)
        enc.eval()
        with torch.no_grad():
            outs.append(enc.embed(nodes, qt, samplers, generator=torch.Generator().manual_seed(5)))
    return float((outs[0] - outs[1]).abs().max())


@pytest.mark.parametrize("kind", ["uniform", "recent", "tds-frozen", "tds-resample", "gas", "gas+tds"])
def test_deleting_the_future_changes_no_embedding(kind):
    assert max_change(kind) == 0.0


@pytest.mark.parametrize("kind", ["gas-official", "gas-official+tds"])
def test_only_the_official_gas_t_star_sees_the_future(kind):
    assert max_change(kind) > 1e-3


def test_leak_free_gas_is_the_default():
    assert GASConfig().mode == "lazy"
