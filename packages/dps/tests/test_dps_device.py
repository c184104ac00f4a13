"""Device placement on a fake CUDA device (tenfold.testing.fake_cuda): one training step's forward (DPS with
fusion, the concat ablation, TGAT; featureless and featured graphs; bf16 and fp32), the evaluation scoring path
and the GAS selection scorer create nothing on the CPU. Backward is skipped (no GPU here). The neighbour index
itself is data-dependent (unique, nonzero, searchsorted-driven widths) and cannot run on fake tensors: a
static-shape stub sampler stands in for it, on the query's device as every real sampler is."""
import types

import pytest
import torch
from dps.gas import GASScorer
from dps.method import TimeEncode
from dps.model import LinkModel, NodeMLP, TemporalEncoder
from dps.pipeline import score_batch, train_step
from tenfold.testing import fake_cuda, is_fake

CUDA = torch.device("cuda")
N, E = 30, 40


class StubSampler:
    def __init__(self, k):
        self.k = k

    def __call__(self, nodes, t, generator=None):
        ar = torch.arange(1, self.k + 1, device=nodes.device)
        nb = (nodes[:, None] + ar) % N + 1
        eid = (nodes[:, None] * self.k + ar) % E + 1
        return nb, eid, t[:, None] - ar.double()


def batch():
    src = torch.randint(1, N + 1, (6,), device=CUDA)
    dst = torch.randint(1, N + 1, (6,), device=CUDA)
    t = torch.rand(6, dtype=torch.float64, device=CUDA) * 100 + 50
    return src, dst, t


@pytest.mark.parametrize("arm,edge_dim,precision", [("dps", None, "bf16"), ("dps", 6, "fp32"),
                                                    ("concat", None, "bf16"), ("tgat", 6, "fp32")])
def test_training_step_and_scoring_on_fake_cuda(arm, edge_dim, precision):
    with fake_cuda(skip_backward=True):
        edge = torch.randn(E, edge_dim) if edge_dim else None  # edge features arrive on the CPU (Stream.msg)
        n_s = 1 if arm == "tgat" else 2
        enc = TemporalEncoder(N, 8, n_layer=2, n_head=2, n_samplers=n_s,
                              fusion="concat" if arm == "concat" else "attention", edge_feat=edge, num_edges=E)
        model = LinkModel(enc).to(CUDA)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        samplers = [StubSampler(3) for _ in range(n_s)]
        src, dst, t = batch()
        loss = train_step(model, samplers, opt, (src, dst, t), torch.arange(1, N + 1, device=CUDA), CUDA, precision)
        assert is_fake(loss) and loss.device.type == "cuda"
        p, q = score_batch(model.eval(), samplers, (src, dst, dst.flip(0), t), CUDA, precision)
        assert p.device.type == q.device.type == "cuda" and p.shape == (6,)
        h = enc.embed(src, t, samplers)
        assert NodeMLP(8).to(CUDA)(h).device.type == "cuda"  # node-task head on the frozen encoder


def test_gas_selection_scorer_on_fake_cuda():
    with fake_cuda():
        scorer = GASScorer.__new__(GASScorer)  # the per-query hot path; __init__ walks the data-dependent index
        m = 50
        scorer.csr = types.SimpleNamespace(_ts=torch.rand(m + 1, dtype=torch.float64, device=CUDA) * 100,
                                           device=CUDA)
        scorer.static = torch.randn(m + 1, device=CUDA)
        scorer.a_time = torch.randn(N + 1, 8, device=CUDA)
        scorer.time_enc = TimeEncode(8).to(CUDA)
        scorer.scale, scorer.time_dim = 0.5, 8
        nodes = torch.randint(1, N + 1, (4,), device=CUDA)
        pos = torch.randint(0, m, (4, 7), device=CUDA)
        valid = torch.ones(4, 7, dtype=torch.bool, device=CUDA)
        lg = scorer.logits(nodes, pos, valid, torch.full((4,), 120.0, dtype=torch.float64, device=CUDA))
        assert lg.device.type == "cuda" and lg.shape == (4, 7)
