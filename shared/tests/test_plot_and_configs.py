"""tenfold.plot (curves, grids, the tenfold-plot CLI) and configs shipped by name (--config NAME, --list-configs)."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from tenfold import cli, configs, plot
from tenfold.errors import ConfigError


def _metrics(d, n=5, acc=True):
    d.mkdir(parents=True, exist_ok=True)
    recs = [{"time": 0, "step": 10 * i, "loss": 1.0 / i, **({"test_acc": 0.1 * i} if acc else {})}
            for i in range(1, n + 1)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_curves_png_has_loss_and_main_metric(tmp_path):
    _metrics(tmp_path / "a")
    p = plot.curves(tmp_path / "a")
    assert p == tmp_path / "a" / "curves.png"
    w, h = Image.open(p).size
    assert w > 1.5 * h  # two panels side by side
    assert plot.main_metric([{"step": 1, "knn_top1": 0.5, "loss": 1.0}]) == "knn_top1"
    assert plot.curves(tmp_path / "empty") is None


def test_tenfold_plot_overlays_runs(tmp_path, capsys):
    _metrics(tmp_path / "a")
    _metrics(tmp_path / "b", acc=False)
    out = tmp_path / "cmp.png"
    assert plot.main(["--out", str(out), str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert out.is_file() and "saved" in capsys.readouterr().out
    assert plot.main([str(tmp_path / "nope")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_save_grid_maps_minus_one_one(tmp_path):
    x = torch.linspace(-1, 1, 16 * 3 * 4 * 4).reshape(16, 3, 4, 4)
    p = plot.save_grid(x, tmp_path / "g.png")
    img = Image.open(p)
    assert img.size == (4 * 5 + 1, 4 * 5 + 1)  # 4 x 4 grid, 1-pixel padding


def test_config_by_name_and_list(tmp_path, capsys, monkeypatch):
    path = configs.resolve("mgc", "demo")
    assert path.endswith("configs/demo.yaml")
    assert configs.resolve("mgc", path) == path  # a path is used as given
    with pytest.raises(ConfigError, match="shipped configs: .*demo"):
        configs.resolve("mgc", "no_such_config")
    p = cli.base_parser("x-train", "d", package="mgc")
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--list-configs"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert e.value.code == 0 and any(ln.startswith("demo ") for ln in lines)
    assert len(lines) == len(configs.shipped("mgc"))
    assert p.parse_args(["--config", "demo"]).config == path
