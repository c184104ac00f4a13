"""Device placement on a fake CUDA device (tenfold.testing.fake_cuda): attribution graphs (every attribution,
bf16/fp32 autocast factory, pooled and TAP representations), layer graphs in both forward modes, the streamed
edge/RSA computation and the transfer features create nothing on the CPU except what they move there on purpose.
The gradient is stood in for by zeros placed like the input (skip_backward); the finite-feature check that ends a
graph reads values, so it is replaced by a recorder of what reaches it."""
import pytest
import torch
from depara import graph as graph_mod
from depara.graph import GraphOptions, build_graph, conv_layer_names, layer_graphs
from depara.method import ATTRIBUTIONS, edge_rsa_streamed
from depara.pipeline import amp_for
from depara.sources import representation
from depara.zoo import create_model, features
from tenfold.testing import DeviceMismatch, fake_cuda

CUDA = torch.device("cuda")


@pytest.fixture
def finish_recorder(monkeypatch):
    seen = []

    def record(nodes, feats, opts, meta, stream_to=None):
        seen.append({"nodes": list(nodes), "feats": list(feats), "stream_to": stream_to, "meta": meta})
        return seen[-1]

    monkeypatch.setattr(graph_mod, "_finish", record)
    return seen


@pytest.mark.parametrize("attribution", ATTRIBUTIONS)
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_model_graph_on_fake_cuda(finish_recorder, attribution, precision):
    with fake_cuda(skip_backward=True):
        model = create_model("wrn16_1", 10).to(CUDA)
        probes = torch.randn(6, 3, 32, 32)  # probes are prepared on the host, moved per batch
        fn, close = representation(model)
        opts = GraphOptions(attribution=attribution, batch_size=4, node_dtype="float16")
        build_graph(fn, probes, opts, model=model, device=CUDA, amp=amp_for(CUDA, precision))
        close()
    rec = finish_recorder[-1]
    assert [n.device.type for n in rec["nodes"]] == ["cpu", "cpu"]  # nodes leave the device batch by batch
    assert rec["nodes"][0].dtype == torch.float16 and rec["nodes"][0].shape == (4, 32 * 32)
    assert all(f.device.type == "cuda" for f in rec["feats"])  # pooled features stay where the edges are made
    assert amp_for(CUDA, "fp32") is None and amp_for(torch.device("cpu"), "bf16") is None


@pytest.mark.parametrize("shared_forward", [True, False])
def test_layer_graphs_on_fake_cuda(finish_recorder, shared_forward):
    with fake_cuda(skip_backward=True):
        model = create_model("wrn16_1", 10).to(CUDA)
        names = conv_layer_names(model, (torch.nn.Conv2d,))[1:3]
        layer_graphs(model, names, torch.randn(5, 3, 32, 32), GraphOptions(batch_size=3, center_features=False),
                     device=CUDA, shared_forward=shared_forward)
    assert len(finish_recorder) == 2
    for rec in finish_recorder:
        assert rec["stream_to"] == CUDA and all(f.device.type == "cpu" for f in rec["feats"])


def test_streamed_edges_and_features_on_fake_cuda():
    with fake_cuda():
        feats = torch.randn(6, 40)  # layer features held on the host
        E, R = edge_rsa_streamed(feats, True, CUDA, chunk=16)
        assert E.device.type == "cpu" and E.shape == (15,) and R.shape == (15,)
        model = create_model("wrn16_1", 10).to(CUDA)
        f = features(model, torch.randn(7, 3, 32, 32), batch_size=4, device=CUDA, amp=amp_for(CUDA, "bf16"))
        assert f.device.type == "cpu" and f.shape[0] == 7


def test_a_model_left_on_the_cpu_is_caught(finish_recorder):
    with fake_cuda(skip_backward=True):
        model = create_model("wrn16_1", 10)  # forgot .to(device)
        fn, _ = representation(model)
        with pytest.raises((DeviceMismatch, RuntimeError)):
            build_graph(fn, torch.randn(4, 3, 32, 32), GraphOptions(batch_size=4), model=model, device=CUDA)


def test_real_pools_fit_a_reduced_gpu_pack(tmp_path):
    """The GPU pack carries a CIFAR-10 training subset: the split halves come from the pack's own size."""
    import io

    import numpy as np
    from depara.data import make_pool, split_size
    from PIL import Image

    blobs, offsets = [], [0]
    for i in range(40):
        buf = io.BytesIO()
        Image.fromarray(np.full((32, 32, 3), i * 6, np.uint8)).save(buf, format="JPEG")
        blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
        offsets.append(offsets[-1] + len(blobs[-1]))
    (tmp_path / "cifar10").mkdir()
    np.savez(tmp_path / "cifar10" / "train.npz", jpeg=np.concatenate(blobs), offsets=np.array(offsets),
             labels=np.arange(40) % 10)
    assert split_size("cifar", True, tmp_path) == 40
    assert split_size("cifar", False, tmp_path) == 10_000  # no pack: the full set's size
    a, b = make_pool("cifar", "train", 20, root=tmp_path), make_pool("cifar", "transfer", 20, root=tmp_path)
    assert a.images.shape == (20, 32, 32, 3) and not set(a.factors["index"]) & set(b.factors["index"])
