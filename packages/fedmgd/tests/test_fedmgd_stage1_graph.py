"""Issue #18: Stage 1 scores every client without a graph and rebuilds the generator's graph only through
the clients that were routed samples (activation memory independent of K). The gradient must equal the
earlier implementation, which kept every client's D/C graph until routing (gan.g_graph=all)."""
import pytest
import torch
from fedmgd.config import FedMGDConfig
from fedmgd.data import build_federated_data
from fedmgd.engine import Comm, Streams
from fedmgd.nets import build_models
from fedmgd.stage1 import Stage1
from tenfold.config import load
from test_fedmgd_train import TINY

RESNET = ["model.arch=resnet", "model.ngf=4", "model.ndf=4", "model.g_nf_max=8", "model.d_nf_max=8"]


def _stage1(mode, *over):
    cfg = load(FedMGDConfig, None, TINY + ["out=unused", "partition.num_clients=4", f"gan.g_graph={mode}"]
               + list(over))
    fed = build_federated_data(cfg)
    dev = torch.device("cpu")
    mg, md, mc = build_models(cfg.model, fed.num_classes, fed.channels, 16)
    with Streams(1, dev).use("S"):
        S = mc()
    return Stage1(cfg, fed, Comm(4), Streams(0, dev), dev, mg, md, mc, S)


@pytest.mark.parametrize("over", [[], RESNET, ["gan.scores_in_eval_mode=true"]], ids=["dcgan", "resnet", "eval"])
def test_selected_graph_gives_the_same_generator_gradient(over):
    a, b = _stage1("all", *over), _stage1("selected", *over)
    for t in range(3):
        a.iteration(t)
        b.iteration(t)
        assert torch.equal(a.route_counts, b.route_counts)  # the same routing (scores are identical)
        for pa, pb in zip(a.G.parameters(), b.G.parameters()):
            assert torch.allclose(pa.grad, pb.grad, rtol=1e-5, atol=1e-7)
            assert torch.allclose(pa, pb, rtol=1e-5, atol=1e-6)
    assert len(torch.nonzero(a.route_counts.sum(1))) >= 2  # several clients were routed samples
    for k in a.C:  # the clients' RNG streams (dropout) stay in step: their classifiers match too
        for pa, pb in zip(a.C[k].parameters(), b.C[k].parameters()):
            assert torch.allclose(pa, pb, rtol=1e-5, atol=1e-6)
