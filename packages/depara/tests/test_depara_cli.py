"""CLIs end to end on tiny synthetic data, exact resume of zoo training, bad input -> one clear error."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from depara.cli import score_main, select_main, zoo_main
from depara.data import TASKS, make_pool, synthetic_factors, task_view, transform_pool
from depara.zoo import train_task_model

TINY = ["data.n_train=256", "data.n_transfer=96", "data.n_test=96", "data.n_probe=16", "zoo.epochs=1",
        "zoo.batch_size=64", "zoo.tasks=[T1,T3,T8]", "transfer.iters=10", "score.random_draws=20", "zoo.width=4"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    assert zoo_main(["--out", str(out), *TINY]) == 0
    return out


def test_zoo_writes_models_and_transfer(zoo):
    tr = json.loads((zoo / "transfer.json").read_text())
    assert tr["targets"] == ["T1", "T3"]  # the random-label control is a source only
    assert tr["acc"]["T1"]["T1"] is None and 0 <= tr["acc"]["T1"]["T3"] <= 100
    assert set(tr["random_init_floor"]) == {"T1", "T3"}
    assert (zoo / "models" / "T8.pt").is_file() and (zoo / "transfer.png").stat().st_size > 1000
    assert (zoo / "config.yaml").is_file() and (zoo / "summary.json").is_file()


def test_score_and_select_outputs(zoo, capsys):
    assert score_main(["--out", str(zoo), *TINY]) == 0
    s = json.loads((zoo / "scores.json").read_text())
    node = np.array(s["node"])
    assert node.shape == (3, 3) and np.allclose(np.diag(node), 1.0, atol=1e-5) and np.allclose(node, node.T)
    assert np.allclose(np.diag(np.array(s["edge"])), 1.0)
    assert (zoo / "depara.png").stat().st_size > 1000 and len(list((zoo / "graphs").glob("*.pt"))) == 3
    assert select_main(["--out", str(zoo / "sel"), f"zoo_dir={zoo}", *TINY]) == 0
    res = json.loads((zoo / "sel" / "selection.json").read_text())
    assert set(res["metrics"]) >= {"depara_lam1", "node", "edge", "rsa", "random"}
    assert res["rankings"]["T1"] and "T1" not in res["rankings"]["T1"]
    assert set(res["random_label_rank"]["T8"]) == {"T1", "T3"}
    assert all(1 <= r <= 2 for r in res["random_label_rank"]["T8"].values())  # 2 candidate sources per target
    assert "spearman" in capsys.readouterr().out


def test_layer_selection_reports_reference(zoo):
    out = zoo / "layers"
    assert select_main(["--out", str(out), f"zoo_dir={zoo}", "select.mode=layer", "select.layer_source=T3",
                        "select.layer_target=T1", *TINY]) == 0
    res = json.loads((out / "layers.json").read_text())
    assert res["layers"] == ["conv1", "conv2", "conv3"] and len(res["probe_acc"]) == 3
    assert res["reference"] == "T1" and "zoo model" in res["reference_note"]
    assert (out / "layers.png").is_file()


def test_zoo_resume_skips_finished_models(zoo, tmp_path):
    before = (zoo / "models" / "T1.pt").stat().st_mtime_ns
    assert zoo_main(["--out", str(zoo), "--resume", "--no-transfer", *TINY]) == 0
    assert (zoo / "models" / "T1.pt").stat().st_mtime_ns == before


def test_training_resume_is_bitwise_exact(tmp_path):
    pool = synthetic_factors(200, seed=1)
    x, y, _ = task_view("T2", pool)
    kw = dict(arch="tiny_cnn", width=4, epochs=2, batch_size=32, lr=3e-3, seed=5, device=torch.device("cpu"))
    straight = train_task_model(tmp_path / "a", x, y, 12, **kw)
    train_task_model(tmp_path / "b", x, y, 12, stop_at=7, **kw)  # interrupted mid-epoch 2 (6 steps/epoch)
    resumed = train_task_model(tmp_path / "b", x, y, 12, resume="auto", **kw)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


ENTRY = {"zoo_main": zoo_main, "score_main": score_main, "select_main": select_main}


class _Result:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr


def _cli(args, env_extra=None, capsys=None, monkeypatch=None):
    """In-process call of an entry point (as the console script does); one subprocess run checks the real path."""
    if capsys is None:
        env = dict(os.environ, TENFOLD_QUIET="1", **(env_extra or {}))
        code = "import sys; from depara.cli import {0}; sys.exit({0}(sys.argv[1:]))".format(args[0])
        r = subprocess.run([sys.executable, "-c", code, *args[1:]], capture_output=True, text=True, env=env)
        return _Result(r.returncode, r.stderr)
    monkeypatch.setenv("TENFOLD_QUIET", "1")  # as in the subprocess: no progress lines among the errors
    for k, v in (env_extra or {}).items():
        monkeypatch.setenv(k, v)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        ENTRY[args[0]](args[1:])
    return _Result(e.value.code, capsys.readouterr().err)


@pytest.mark.parametrize("args,needle", [
    (["zoo_main", "zoo.epoch=2"], "did you mean 'zoo.epochs'"),
    (["zoo_main", "zoo.lr=fast"], "zoo.lr: expected a number"),
    (["zoo_main", "graph.channel_reduce=max"], "graph.channel_reduce"),
    (["zoo_main", "zoo.tasks=[T1,Z9]"], "unknown task 'Z9'"),
    (["zoo_main", "data.kind=real", "zoo.tasks=[T1]"], "is a synth task"),
])
def test_bad_config_one_line_error(tmp_path, args, needle, capsys, monkeypatch):
    r = _cli([*args, "--out", str(tmp_path)], capsys=capsys, monkeypatch=monkeypatch)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr


def test_missing_data_one_line_error(tmp_path):  # a real subprocess: the console-script path
    r = _cli(["zoo_main", "--out", str(tmp_path), "data.kind=real", "zoo.tasks=[C1,C4]"],
             {"TENFOLD_DATA": str(tmp_path / "nothing")})
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "CIFAR-10 not found" in r.stderr and "cifar10/train.npz" in r.stderr


def test_missing_zoo_and_corrupt_checkpoint(tmp_path, capsys, monkeypatch):
    r = _cli(["score_main", "--out", str(tmp_path), "zoo.tasks=[T1,T3]"], capsys=capsys, monkeypatch=monkeypatch)
    assert r.returncode == 2 and "run depara-zoo" in r.stderr and r.stderr.count("\n") == 1
    (tmp_path / "models").mkdir()
    for t in ("T1", "T3"):
        (tmp_path / "models" / f"{t}.pt").write_bytes(b"not a checkpoint")
    r = _cli(["score_main", "--out", str(tmp_path), "zoo.tasks=[T1,T3]"], capsys=capsys, monkeypatch=monkeypatch)
    assert r.returncode == 2 and "corrupt or truncated" in r.stderr and r.stderr.count("\n") == 1


def test_task_labels_follow_factors():
    pool = synthetic_factors(64, seed=3)
    f = pool.factors
    _, y2, _ = task_view("T2", pool)
    assert np.array_equal(y2, f["shape"] * 3 + f["colour"]) and y2.max() < TASKS["T2"].num_classes
    _, y7, _ = task_view("T7", pool)
    assert np.array_equal(y7, f["texture"] * 4 + f["quadrant"])
    _, y8a, _ = task_view("T8", pool)
    _, y8b, _ = task_view("T8", pool)
    assert np.array_equal(y8a, y8b) and len(set(y8a.tolist())) > 1  # random but fixed labels
    # the colour factor is visible: the shape pixels' dominant channel is the colour label
    img = pool.images.astype(float)
    assert (img.reshape(64, -1, 3).max(1).argmax(1) == f["colour"]).mean() > 0.9


def test_real_task_views_on_a_fake_pool():
    from depara.data import Pool

    imgs = np.random.default_rng(0).integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
    pool = Pool(imgs, {"class": np.arange(40) % 10, "index": np.arange(40)})
    x3, y3, rows = task_view("C3", pool)
    assert np.array_equal(np.unique(y3), [0, 1, 2, 3]) and np.all(np.isin(rows % 10, [0, 1, 8, 9]))
    _, y2, _ = task_view("C2", pool)
    assert y2.min() == 0 and y2.max() == 5
    x5, y5, _ = task_view("C5", pool)
    assert np.array_equal(x5[0], np.rot90(imgs[0], int(y5[0])))
    x6, y6, _ = task_view("C6", pool)
    g = x6[y6 == 1]
    assert (g[..., 0] == g[..., 1]).all() and not (x6[y6 == 0][..., 0] == x6[y6 == 0][..., 1]).all()
    assert np.array_equal(transform_pool(pool, "rot", 0).factors["rotation"], y5)


def test_probe_folder_and_probe_order(tmp_path):
    from depara.config import DeparaConfig
    from depara.pipeline import probe_tensor
    from PIL import Image

    for i in range(4):
        Image.fromarray(np.full((40, 30, 3), 60 * i, dtype=np.uint8)).save(tmp_path / f"{i:02d}.png")
    cfg = DeparaConfig(data=dict_to(tmp_path))
    x, raw = probe_tensor(cfg)
    assert raw.shape == (4, 24, 24, 3) and list(raw[:, 0, 0, 0]) == [0, 60, 120, 180]  # sorted by name
    a, _ = probe_tensor(DeparaConfig())
    b, _ = probe_tensor(DeparaConfig())
    assert torch.equal(a, b)  # the same ordered probes in every call (node i = image i)


def dict_to(folder):
    from depara.config import DataConfig

    return DataConfig(probe_folder=str(folder))


def test_real_pools_disjoint_splits():
    if not os.environ.get("TENFOLD_DATA"):
        pytest.skip("TENFOLD_DATA not set (point it at the shared data with cifar10/ and mnist/)")
    a = make_pool("mnist", "train", 50)
    b = make_pool("mnist", "transfer", 50)
    assert a.images.shape == (50, 32, 32, 3) and not set(a.factors["index"]) & set(b.factors["index"])


@pytest.mark.parametrize("name", ["demo", "synthetic_zoo", "real_zoo", "real_zoo_gpu", "vgg_layer_selection",
                                  "taskonomy_model_selection", "syn2real_layer_selection"])
def test_every_shipped_config_loads(name):
    from pathlib import Path

    from depara.config import DeparaConfig
    from tenfold.config import load

    cfg = load(DeparaConfig, Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    assert cfg.graph.attribution == "grad_input"


def test_each_model_gets_its_own_normalisation_of_the_same_raw_probes():
    from depara.config import DeparaConfig
    from depara.graph import GraphOptions, build_graph
    from depara.pipeline import model_graphs
    from depara.zoo import TinyCNN, preprocess

    torch.manual_seed(0)
    raw = synthetic_factors(8, seed=2).images
    m = TinyCNN(4, width=4).eval()
    own = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    g = model_graphs(DeparaConfig(), {"m": (m, own)}, preprocess(raw), "cpu", raw=raw)["m"]
    ref = build_graph(lambda x: m(x, return_features=True)[1], preprocess(raw, (0.5,) * 3, (0.25,) * 3),
                      GraphOptions(), model=m)
    assert torch.allclose(g.V, ref.V) and torch.allclose(g.E, ref.E)
    default = build_graph(lambda x: m(x, return_features=True)[1], preprocess(raw), GraphOptions(), model=m)
    assert not torch.allclose(g.V, default.V)
