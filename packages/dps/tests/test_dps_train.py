"""Training loop: exact resume, CLIs, bad input -> one clear error line (brief: every CLI)."""
import json
import subprocess
import sys

import pytest
import torch
from dps.config import DPSConfig
from dps.train import train_link
from tenfold import config as config_mod

TINY = ["data.format=synthetic", "data.synthetic.num_events=600", "data.synthetic.num_users=30",
        "data.synthetic.num_items=30", "model.node_dim=16", "model.n_layer=1", "model.n_degree=6",
        "train.epochs=2", "train.batch_size=80", "train.lr=1e-3", "gas.epochs=1", "gas.finetune=true",
        "gas.batch_size=80", "seed=3", "device=cpu"]


def tiny_cfg(out, *extra):
    return config_mod.load(DPSConfig, None, TINY + [f"out={out}", *extra])


def quiet(*a, **k):
    pass


def model_state(run):
    return torch.load(run / "last.pt", weights_only=False)["state"]["model"]


@pytest.mark.parametrize("model", ["dps", "tgat"])
def test_resume_is_bitwise_exact(tmp_path, model):
    a, b = tmp_path / "straight", tmp_path / "resumed"
    sa = train_link(tiny_cfg(a, f"model.name={model}"), log=quiet)
    part = train_link(tiny_cfg(b, f"model.name={model}"), stop_at=7, log=quiet)  # 5 steps/epoch: mid-epoch 2
    assert part == {"stopped_at": 7}
    sb = train_link(tiny_cfg(b, f"model.name={model}"), resume="auto", log=quiet)
    ma, mb = model_state(a), model_state(b)
    assert ma.keys() == mb.keys()
    for k in ma:
        assert torch.equal(ma[k], mb[k]), k
    assert sa["test_auc"] == sb["test_auc"] and sa["val_auc_curve"] == sb["val_auc_curve"]
    assert (a / "summary.json").is_file() and (a / "config.yaml").is_file() and (a / "model.pt").is_file()


def run_cli(entry, *args):
    """A real process: proves the console behaviour (exit code, stderr) including import-time warnings."""
    code = f"import sys; from dps.cli import {entry}; sys.argv[0] = '{entry}'; {entry}()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "TENFOLD_QUIET": "1"})


class Proc:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def call(capsys, entry, *args):
    """The entry point in-process (cheap): SystemExit code + captured stdout/stderr."""
    from dps import cli

    capsys.readouterr()
    code = 0
    try:
        getattr(cli, entry)(list(args))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0
    out = capsys.readouterr()
    return Proc(code, out.out, out.err)


def one_error_line(proc):
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_cli_unknown_key_and_wrong_type(tmp_path, capsys):
    line = one_error_line(run_cli("train_main", "--out", str(tmp_path), "model.node_dm=32"))
    assert "model.node_dm" in line and "model.node_dim" in line
    line = one_error_line(call(capsys, "train_main", "--out", str(tmp_path), "train.lr=fast"))
    assert "train.lr" in line


def test_cli_missing_data(tmp_path, capsys):
    line = one_error_line(call(capsys, "train_main", "--out", str(tmp_path / "o"), "--data-root", str(tmp_path),
                                  "data.name=nowhere"))
    assert "nowhere/events.csv not found" in line and "TENFOLD_DATA" in line


def test_cli_unsorted_data(tmp_path, capsys):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "events.csv").write_text("src,dst,t\n0,1,5\n1,2,3\n")
    line = one_error_line(call(capsys, "train_main", "--out", str(tmp_path / "o"), "--data-root", str(tmp_path),
                                  "data.name=g"))
    assert "not sorted by time" in line


def test_cli_corrupt_checkpoints(tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint at all")
    line = one_error_line(call(capsys, "eval_main", "--run", str(bad)))
    assert "corrupt" in line
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"\x00" * 64)
    line = one_error_line(call(capsys, "train_main", "--out", str(run), *TINY, "--resume"))
    assert "corrupt" in line


def test_cli_train_eval_fit_decay(tmp_path, capsys):
    out = tmp_path / "run"
    p = call(capsys, "train_main", "--model", "tgat-recent", "--out", str(out), *TINY, "train.epochs=1")
    assert p.returncode == 0, p.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["model"] == "tgat" and 0 <= s["test_auc"] <= 1
    assert config_mod.load(DPSConfig, out / "config.yaml").model.tgat_sampler == "recent"
    p = call(capsys, "eval_main", "--run", str(out), "--negatives", "historical", "--out", str(tmp_path / "ev"))
    assert p.returncode == 0, p.stderr
    ev = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert ev["negatives"] == "historical" and 0 <= ev["auc"] <= 1
    p = call(capsys, "eval_main", "--run", str(out), "--out", str(tmp_path / "ev2"))
    ev2 = json.loads((tmp_path / "ev2" / "summary.json").read_text())
    assert abs(ev2["auc"] - s["test_auc"]) < 1e-12  # dps-eval reproduces the training run's test metrics
    p = call(capsys, "fit_decay_main", "--out", str(tmp_path / "a"), *TINY)
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["fitted"] > 0
    for entry in ("train_main", "eval_main", "fit_decay_main"):
        h = call(capsys, entry, "--help")
        assert h.returncode == 0 and "--config" in h.stdout and "--out" in h.stdout


def test_multi_seed_mean_std(tmp_path):
    from dps.train import train_seeds

    agg = train_seeds(tiny_cfg(tmp_path, "model.name=tgat", "train.epochs=1", "train.seeds=[1,2]"), log=quiet)
    assert len(agg["runs"]) == 2 and agg["test_auc_std"] >= 0
    assert (tmp_path / "seed1" / "summary.json").is_file() and (tmp_path / "summary.json").is_file()


def test_node_task_on_frozen_encoder(tmp_path, capsys):
    """Node classification head (spec §2.8) via dps-eval --task node, on labelled synthetic events whose label
    is the source's user type (learnable from the node embedding): the MLP must beat chance clearly."""
    from dps.data import preference_stream

    stream, is_rec = preference_stream(num_users=30, num_items=30, num_events=600, seed=0)
    d = stream.data
    lines = ["src,dst,t,label"] + [f"{s - 1},{v - 1},{t:.6f},{int(is_rec[s])}"
                                   for s, v, t in zip(d.src.tolist(), d.dst.tolist(), d.t.tolist())]
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "events.csv").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    base = [x for x in TINY if not x.startswith("data.")] + ["train.epochs=1", "model.name=tgat"]
    p = call(capsys, "train_main", "--out", str(run), "--data-root", str(tmp_path), "data.name=lab", *base)
    assert p.returncode == 0, p.stderr
    p = call(capsys, "eval_main", "--run", str(run), "--task", "node", "--out", str(tmp_path / "node"),
             "node.lr=1e-2", "node.epochs=20", "node.balance=true")
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "node" / "summary.json").read_text())
    assert s["test_auc"] > 0.7, s


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    from dps import pipeline as pipeline_mod

    run = tmp_path / "run"
    assert call(capsys, "train_main", "--out", str(run), *TINY, "model.name=tgat", "train.epochs=1").returncode == 0
    good = (run / "last.pt").read_bytes()
    monkeypatch.setattr(pipeline_mod, "bce_loss", lambda p, n: (p.sum() + n.sum()) * float("nan"))
    line = one_error_line(call(capsys, "train_main", "--out", str(run), *TINY, "model.name=tgat",
                               "train.epochs=2", "--resume"))
    assert "loss became nan" in line and "last good checkpoint" in line
    assert (run / "last.pt").read_bytes() == good


def test_inductive_setting_and_quantile_split(tmp_path):
    s = train_link(tiny_cfg(tmp_path, "model.name=tgat", "train.epochs=1", "data.setting=inductive",
                            "data.split=quantile", "data.new_node_frac=0.3"), log=quiet)
    assert 0 <= s["inductive_test_auc"] <= 1 and s["counts"]["train"] > 0
