"""Run-directory safety over every registered training console script, and the rundir rules themselves."""
from __future__ import annotations

import sys
from importlib import metadata

import pytest
from tenfold import rundir
from tenfold.errors import ConfigError

# Console scripts that read runs rather than train them; every other tenfold script is a training CLI.
NOT_TRAINING = {"aps-eval", "mgc-eval", "mgc-export", "patchmix-eval", "netgraft-eval", "dps-eval", "dps-fit-decay",
                "osgan-sample", "fedmgd-partition", "depara-score", "depara-select", "tenfold-plot"}


def tenfold_scripts() -> list[metadata.EntryPoint]:
    eps = []
    for dist in metadata.distributions():
        if (dist.metadata["Name"] or "").startswith("tenfold-"):
            eps += [ep for ep in dist.entry_points if ep.group == "console_scripts"]
    return sorted({ep.name: ep for ep in eps}.values(), key=lambda ep: ep.name)


TRAINING = [ep for ep in tenfold_scripts() if ep.name not in NOT_TRAINING]


def _fake_run(d):
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text("seed: 0\n")
    (d / "metrics.jsonl").write_text('{"step": 10, "loss": 1.0}\n')
    (d / "summary.json").write_text('{"steps": 10}\n')
    return {p.name: p.read_bytes() for p in d.iterdir()}


def _call(ep, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [ep.name, *argv])
    with pytest.raises(SystemExit) as e:
        ep.load()()
    return e.value.code


def test_training_scripts_are_found():
    names = {ep.name for ep in TRAINING}
    assert {"mgc-train", "osgan-train", "fedmgd-train", "dps-train", "cmi-distill", "netgraft-train"} <= names


@pytest.mark.parametrize("ep", TRAINING, ids=lambda ep: ep.name)
def test_training_cli_refuses_an_out_that_holds_a_run(ep, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    before = _fake_run(out)
    code = _call(ep, ["--out", str(out)], monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and "already holds a run" in err[0] and "--resume" in err[0] and "--out" in err[0], err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched


@pytest.mark.parametrize("ep", TRAINING, ids=lambda ep: ep.name)
def test_training_cli_bare_resume_with_nothing_to_resume_is_an_error(ep, tmp_path, monkeypatch, capsys):
    code = _call(ep, ["--out", str(tmp_path / "empty"), "--resume"], monkeypatch)
    err = capsys.readouterr().err
    assert code == 2 and "nothing to resume" in err, err
    assert not (tmp_path / "empty").exists()


def test_a_failed_start_is_not_a_run(tmp_path):
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    assert not rundir.holds_run(tmp_path)
    (tmp_path / "teacher.pt").write_bytes(b"x")  # an input kept beside the run
    assert not rundir.holds_run(tmp_path)
    (tmp_path / "seed1").mkdir()
    (tmp_path / "seed1" / "last.pt").write_bytes(b"x")
    assert rundir.holds_run(tmp_path)


def test_overwrite_moves_the_old_run_aside(tmp_path):
    out = tmp_path / "run"
    before = _fake_run(out)
    assert rundir.prepare(None, None, overwrite=True, out=out) is None
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(moved) == 1 and {p.name: p.read_bytes() for p in moved[0].iterdir()} == before
    assert not out.exists()


def test_resume_if_exists(tmp_path):
    out = tmp_path / "run"
    assert rundir.prepare(None, None, if_exists=True, out=out) is None  # nothing there: fresh start
    out.mkdir()
    (out / "last.pt").write_bytes(b"x")
    assert rundir.prepare(None, None, if_exists=True, out=out) == "auto"
    with pytest.raises(ConfigError):
        rundir.prepare(None, "auto", if_exists=True, out=out)


def test_config_changes_split_safe_and_unsafe():
    old = {"max_steps": 10, "log_every": 5, "optim": {"lr": 0.1, "steps": 3}, "eval": {"k": 20}}
    new = {"max_steps": 20, "log_every": 5, "optim": {"lr": 0.05, "steps": 4}, "eval": {"k": 10}}
    safe, unsafe = rundir.config_changes(old, new)
    assert unsafe == ["optim.lr: 0.1 -> 0.05"]
    assert safe == ["eval.k: 20 -> 10", "max_steps: 10 -> 20", "optim.steps: 3 -> 4"]
    assert rundir.config_changes(old, new, extra_safe=("lr",))[1] == []
