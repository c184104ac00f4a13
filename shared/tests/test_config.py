import dataclasses
from typing import Literal

import pytest
from tenfold import config
from tenfold.errors import ConfigError


@dataclasses.dataclass
class Optim:
    lr: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    name: Literal["sgd", "adamw"] = "sgd"


@dataclasses.dataclass
class Cfg(config.RunConfig):
    steps: int = 10
    optim: Optim = dataclasses.field(default_factory=Optim)
    layers: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    note: str | None = None


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("steps: 5\noptim:\n  lr: 1e-3\n  name: adamw\n")
    cfg = config.load(Cfg, p, ["optim.lr=0.5", "layers=[3,4,5]", "seed=7"])
    assert cfg.steps == 5 and cfg.optim.lr == 0.5 and cfg.optim.name == "adamw"
    assert cfg.layers == [3, 4, 5] and cfg.seed == 7 and cfg.optim.betas == (0.9, 0.999)


def test_yaml11_exponent_string_is_float(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lr: 1e-3\n")
    assert config.load(Cfg, p).optim.lr == pytest.approx(1e-3)


def test_unknown_key_names_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr' \(did you mean 'optim.lr'\?\)"):
        config.load(Cfg, None, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="'stepz'.*'steps'"):
        config.load(Cfg, None, ["stepz=3"])


def test_wrong_types():
    with pytest.raises(ConfigError, match="steps: expected an integer"):
        config.load(Cfg, None, ["steps=abc"])
    with pytest.raises(ConfigError, match="optim.lr: expected a number"):
        config.load(Cfg, None, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="optim.name: expected one of"):
        config.load(Cfg, None, ["optim.name=rmsprop"])
    with pytest.raises(ConfigError, match="deterministic: expected true/false"):
        config.load(Cfg, None, ["deterministic=3"])
    with pytest.raises(ConfigError, match="optim.betas: expected 2 values"):
        config.load(Cfg, None, ["optim.betas=[0.9]"])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(Cfg, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(Cfg, bad)
    with pytest.raises(ConfigError, match="key=value"):
        config.load(Cfg, None, ["steps"])


def test_save_roundtrip(tmp_path):
    cfg = config.load(Cfg, None, ["optim.lr=0.25", "note=hi"])
    config.save(cfg, tmp_path / "config.yaml")
    again = config.load(Cfg, tmp_path / "config.yaml")
    assert again == cfg


def test_validate_hook():
    @dataclasses.dataclass
    class V:
        k: int = 1

        def validate(self):
            if self.k <= 0:
                raise ConfigError("k must be positive")

    with pytest.raises(ConfigError, match="k must be positive"):
        config.from_dict(V, {"k": 0})


def test_cli_overrides_anywhere_and_after_resume():
    from tenfold import cli

    p = cli.base_parser("x", "test")
    args = cli.parse_args(p, ["steps=3", "--seed", "4", "optim.lr=0.2", "--resume", "note=hi"])
    cfg = cli.parse_config(Cfg, args)
    assert (cfg.steps, cfg.seed, cfg.optim.lr, cfg.note) == (3, 4, 0.2, "hi") and args.resume == "auto"


def test_flat_defaults_spells_keys_as_overrides_do():
    @dataclasses.dataclass
    class Inner:
        lr: float = 0.1
        betas: tuple[float, float] = (0.9, 0.99)

    @dataclasses.dataclass
    class Outer:
        name: str = "x"
        optim: Inner = dataclasses.field(default_factory=Inner)

    assert config.flat_defaults(Outer) == ["name=x", "optim.lr=0.1", "optim.betas=[0.9, 0.99]"]


def test_base_parser_lists_schema_keys_in_help():
    from tenfold import cli

    @dataclasses.dataclass
    class Cfg:
        steps: int = 3

    text = cli.base_parser("x-train", "d", schema=Cfg, defaults="the paper's").format_help()
    assert "config keys (defaults = the paper's):\n  steps: int = 3\n" in text
    assert text.rstrip().splitlines()[-2:] == ["  x-train --out runs/x-train-demo",
                                               "  x-train steps=6 --out runs/x-train-demo --print-config"]
    assert "config keys" not in cli.base_parser("x", "d").format_help()
