"""Issue #18: users score their own models (torchvision:<arch>@weights, module:callable, #TAP, own input size,
normalisation and probe folder), the graph cache is keyed on everything that changes a graph, layer graphs
stream their features in fp32."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from depara import pipeline
from depara.cli import score_main, select_main
from depara.config import DeparaConfig
from depara.data import synthetic_factors
from depara.graph import GraphOptions, layer_graphs
from depara.method import edge_rsa_streamed, edge_vector, rsa_vector
from depara.pipeline import graph_key, model_graphs, resize_center_crop
from depara.ranking import candidate_layers
from depara.sources import load_source, parse_model_spec, weights_digest
from depara.zoo import TinyCNN, save_zoo_model
from PIL import Image
from tenfold.errors import ConfigError

torchvision = pytest.importorskip("torchvision")

IMAGENET = ["data.mean=[0.485,0.456,0.406]", "data.std=[0.229,0.224,0.225]"]


def small_factory():
    """A `module:callable` factory (this test module is on sys.path under pytest)."""
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten())


def test_parse_model_spec():
    s = parse_model_spec("mine=torchvision:resnet18@/w/r18.pt#avgpool")
    assert (s.name, s.source, s.weights, s.tap, s.kind) == ("mine", "torchvision:resnet18", "/w/r18.pt", "avgpool",
                                                            "torchvision")
    assert parse_model_spec("torchvision.models:squeezenet1_1").kind == "factory"
    assert parse_model_spec("zoo/models/T1.pt").name == "T1"
    with pytest.raises(ConfigError):
        parse_model_spec("zoo/models/T1.pt@w.pt")


def _probe_folder(tmp_path, n=6):
    rng = np.random.default_rng(0)
    d = tmp_path / "probes"
    d.mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(d / f"{i:02d}.png")
    return d


def test_score_torchvision_architectures_and_a_factory(tmp_path, capsys):
    torch.manual_seed(0)
    w = tmp_path / "mnv3.pt"
    ref = torchvision.models.mobilenet_v3_small()
    torch.save({"state_dict": ref.state_dict()}, w)
    models = f"[torchvision:resnet18#avgpool,mnv3=torchvision:mobilenet_v3_small@{w}#avgpool," \
             "sq=torchvision.models:squeezenet1_1,tiny=test_depara_sources:small_factory#1]"
    out = tmp_path / "score"
    assert score_main(["--out", str(out), f"score.models={models}", f"data.probe_folder={_probe_folder(tmp_path)}",
                       "data.image_size=32", "data.resize=40", "data.n_probe=6", *IMAGENET]) == 0
    s = json.loads((out / "scores.json").read_text())
    assert s["models"] == ["resnet18", "mnv3", "sq", "tiny"]
    node = np.array(s["node"])
    assert np.isfinite(node).all() and np.allclose(np.diag(node), 1.0, atol=1e-5)
    model, meta = load_source(parse_model_spec(f"torchvision:mobilenet_v3_small@{w}"))
    assert weights_digest(model) == weights_digest(ref.eval())  # the weights file was loaded, strictly
    tiny, _ = load_source(parse_model_spec("test_depara_sources:small_factory"))
    x = torch.randn(3, 3, 32, 32)
    g = model_graphs(DeparaConfig(), {"t": (tiny, {"tap": "1"})}, x, "cpu")["t"]
    assert g.meta["dim"] == 4 * 30 * 30  # the tapped ReLU's output, not the pooled 4-d output
    with pytest.raises(ConfigError, match="no module named"):
        model_graphs(DeparaConfig(), {"t": (tiny, {"tap": "head"})}, x, "cpu")


def test_graph_cache_recomputes_on_any_change(tmp_path, monkeypatch):
    built = []
    real = pipeline.build_graph
    monkeypatch.setattr(pipeline, "build_graph", lambda *a, **k: built.append(1) or real(*a, **k))
    raw = synthetic_factors(6, seed=1, size=12).images
    torch.manual_seed(0)
    m = TinyCNN(3, width=2).eval()
    cache = tmp_path / "graphs"

    def run(cfg=None, model=m, raw=raw, meta=None):
        built.clear()
        g = model_graphs(cfg or DeparaConfig(), {"m": (model, meta or {})}, None, "cpu", cache, raw=raw)["m"]
        return g, len(built)

    g0, n = run()
    assert n == 1
    g1, n = run()
    assert n == 0 and torch.equal(g0.V, g1.V)  # same weights, probes, options: the cache is used
    m2 = TinyCNN(3, width=2).eval()
    m2.load_state_dict(m.state_dict())
    with torch.no_grad():
        m2.conv3.bias.add_(0.5)
    assert run(model=m2)[1] == 1  # new weights
    assert run(raw=raw[::-1].copy())[1] == 1  # new probes (the same images reordered)
    assert run(meta={"mean": [0.5] * 3, "std": [0.2] * 3})[1] == 1  # another normalisation
    assert run(meta={"tap": "conv2"})[1] == 1  # another representation
    changed = {"attribution": "saliency", "channel_reduce": "mean", "center_features": False, "objective": "mean",
               "batch_size": 2, "node_dtype": "float16", "node_pool": 2, "elrp_eps": 1e-3,
               "reference_accumulation": True}
    assert set(changed) == {f.name for f in dataclasses.fields(GraphOptions)}  # a new option must be listed here
    for k, v in changed.items():
        cfg = DeparaConfig()
        setattr(cfg.graph, k, v)
        assert run(cfg)[1] == 1, k
    assert run()[1] == 0  # and the first graph is still there, untouched


def test_select_does_not_reuse_a_zoos_stale_graphs(tmp_path):
    zoo = tmp_path / "zoo"
    args = ["zoo.tasks=[T1,T3]", "data.n_probe=8", f"zoo_dir={zoo}", "zoo.width=2"]
    for i, t in enumerate(["T1", "T3"]):
        torch.manual_seed(i)
        save_zoo_model(zoo / "models" / f"{t}.pt", TinyCNN(4, 2), {"task": t, "arch": "tiny_cnn", "width": 2,
                                                                    "num_classes": 4})
    assert score_main(["--out", str(zoo), *args]) == 0
    stale = json.loads((zoo / "scores.json").read_text())["node"][0][1]
    torch.manual_seed(7)  # T1 retrained: same file name, new weights
    save_zoo_model(zoo / "models" / "T1.pt", TinyCNN(4, 2), {"task": "T1", "arch": "tiny_cnn", "width": 2,
                                                              "num_classes": 4})
    assert select_main(["--out", str(tmp_path / "sel"), "select.target=T1", *args]) == 0
    res = json.loads((tmp_path / "sel" / "selection.json").read_text())
    assert len(list((zoo / "graphs").glob("T1-*.pt"))) == 2  # the new T1 graph was built next to the stale one
    assert score_main(["--out", str(tmp_path / "fresh"), *args]) == 0
    fresh = json.loads((tmp_path / "fresh" / "scores.json").read_text())["node"][0][1]
    assert res["parts"]["T1"]["T3"]["node"] == pytest.approx(fresh, abs=1e-5) and fresh != pytest.approx(stale)


@pytest.mark.parametrize("center", [True, False])
def test_streamed_edges_match_fp64(center):
    torch.manual_seed(0)
    f = torch.rand(9, 3, 5, 7) + 2.0  # positive, with a large common component (ReLU-like)
    E, R = edge_rsa_streamed(f, center, chunk=11)
    assert E.dtype == torch.float32
    torch.testing.assert_close(E, edge_vector(f, center), atol=2e-6, rtol=0)
    # uncentred RSA subtracts D m_i m_j from the fp32 Gram matrix: a few fp32 ulps of cancellation
    torch.testing.assert_close(R, rsa_vector(f, center), atol=1e-5, rtol=0)


def test_layer_graphs_keep_features_on_the_host_in_fp32(monkeypatch):
    """Each batch's layer outputs leave the device at once, and the edges are computed in fp32 slices."""
    seen = []
    from depara import graph as graph_mod

    real = graph_mod.edge_rsa_streamed
    monkeypatch.setattr(graph_mod, "edge_rsa_streamed", lambda f, *a: seen.append((f.dtype, f.device)) or real(f, *a))
    net = TinyCNN(3, width=2).eval()
    gs = layer_graphs(net, ["conv1", "conv3"], torch.randn(5, 3, 12, 12), GraphOptions(batch_size=2))
    assert seen == [(torch.float32, torch.device("cpu"))] * 2 and gs["conv1"].E.numel() == 10


def test_resize_then_center_crop_is_torchvisions():
    from torchvision import transforms as T

    im = Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 457, 3), dtype=np.uint8))
    ours = np.asarray(resize_center_crop(im, 224, 256))
    theirs = np.asarray(T.CenterCrop(224)(T.Resize(256, interpolation=T.InterpolationMode.BILINEAR)(im)))
    assert ours.shape == (224, 224, 3) and np.array_equal(ours, theirs)


def test_syn2real_candidates_are_16_convs_and_2_fcs():
    from pathlib import Path

    from tenfold.config import load

    cfg = load(DeparaConfig, Path(__file__).resolve().parents[1] / "configs" / "syn2real_layer_selection.yaml")
    assert (cfg.data.resize, cfg.data.image_size, cfg.select.fc_layers) == (256, 224, 2)
    assert cfg.data.mean == [0.485, 0.456, 0.406]
    with torch.device("meta"):
        vgg = torchvision.models.vgg19_bn()
    names = candidate_layers(vgg, cfg.select.fc_layers)
    assert len(names) == 18 and names[-2:] == ["classifier.0", "classifier.3"]


def test_graph_key_depends_on_probe_bytes():
    x = torch.zeros(3, 3, 4, 4)
    k = graph_key("w", x, GraphOptions(), {})
    assert k == graph_key("w", x.clone(), GraphOptions(), {})
    x[0, 0, 0, 0] = 1e-7
    assert k != graph_key("w", x, GraphOptions(), {})
