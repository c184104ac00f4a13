"""Numeric ranges declared beside config fields, duplicate YAML keys, YAML errors with line and column."""
from __future__ import annotations

import dataclasses
import sys
from importlib import metadata

import pytest
from tenfold import config
from tenfold.errors import ConfigError


@dataclasses.dataclass
class Inner:
    p: float = config.probability(0.5)


@dataclasses.dataclass
class Cfg:
    lr: float = config.positive(0.1)
    steps: int = config.nonnegative(0)
    inner: Inner = dataclasses.field(default_factory=Inner)


@pytest.mark.parametrize("override, msg", [("lr=0", "lr: must be > 0, got 0"), ("lr=-1", "lr: must be > 0"),
                                           ("steps=-5", "steps: must be >= 0, got -5"),
                                           ("inner.p=1.5", "inner.p: must be >= 0 and <= 1, got 1.5")])
def test_out_of_range_values_fail_with_the_key(override, msg):
    with pytest.raises(ConfigError, match=msg.replace(".", r"\.")):
        config.load(Cfg, None, [override])


def test_in_range_values_pass():
    c = config.load(Cfg, None, ["lr=1e-4", "steps=0", "inner.p=1"])
    assert c.lr == 1e-4 and c.inner.p == 1


def test_duplicate_yaml_key_and_error_position(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 0.1\ninner:\n  p: 0.2\n  p: 0.3\n")
    with pytest.raises(ConfigError, match=r"line 4, column 3: .*duplicate key 'p'"):
        config.read_yaml(p)
    p.write_text("lr: [0.1,\nsteps: 2\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+"):
        config.read_yaml(p)


def _script(name):
    return next(ep for d in metadata.distributions() for ep in d.entry_points
                if ep.group == "console_scripts" and ep.name == name)


@pytest.mark.parametrize("script, override, key", [
    ("osgan-train", "max_steps=-5", "max_steps"), ("osgan-train", "optim.lr_g=-1", "optim.lr_g"),
    ("fedmgd-train", "fl.rounds=0", "fl.rounds"), ("mgc-train", "optim.batch_size=0", "optim.batch_size"),
    ("patchmix-train", "mix.mix_p=2", "mix.mix_p"), ("cmi-distill", "kd.lr=0", "kd.lr")])
def test_training_clis_refuse_out_of_range_values(script, override, key, tmp_path, monkeypatch, capsys):
    try:
        ep = _script(script)
    except StopIteration:
        pytest.skip(f"{script} not installed")
    monkeypatch.setattr(sys, "argv", [script, f"--out={tmp_path / 'r'}", override])
    with pytest.raises(SystemExit) as e:
        ep.load()()
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and f"{key}: must be" in err[0], err
