"""Progress pictures (issue #16): a sample grid / ring scatter after every `sample_every` iterations and at the
end, written between steps, with no effect on what the run learns."""
from pathlib import Path

import torch
from onestage_gan.config import OSGANConfig
from onestage_gan.train import run_gan
from PIL import Image
from tenfold import config

SHAPES = ["data.name=shapes", "data.num_samples=64", "model.size=16", "model.g_width=8", "model.d_width=8",
          "model.d_norm=gn", "model.g_norm=bn", "loss=nonsaturating", "batch_size=16", "eval_samples=0",
          "log_every=1", "device=cpu"]


def _pngs(run: Path) -> list[str]:
    names = sorted(p.name for p in (run / "samples").glob("*.png"))
    for n in names:  # a real PNG, not a truncated write
        with Image.open(run / "samples" / n) as im:
            assert im.format == "PNG"
            im.verify()
    return names


def test_ring_scatter_at_each_evaluation_and_the_end(tmp_path):
    cfg = config.load(OSGANConfig, None, ["model.arch=mlp", "model.zdim=8", "data.name=ring", "data.num_samples=512",
                                          "batch_size=64", "max_steps=25", "sample_every=10", "eval_samples=0",
                                          "device=cpu", f"out={tmp_path}"])
    run_gan(cfg)
    # every 10 iterations, and the last one (25 is not a multiple)
    assert _pngs(tmp_path) == ["step_0000010.png", "step_0000020.png", "step_0000025.png"]
    with Image.open(tmp_path / "samples.png") as im:
        assert im.format == "PNG" and im.size[0] > 100


def test_default_is_once_per_epoch(tmp_path):
    run_gan(config.load(OSGANConfig, None, SHAPES + ["max_steps=9", f"out={tmp_path}"]))  # 4 iterations / epoch
    assert _pngs(tmp_path) == ["step_0000004.png", "step_0000008.png", "step_0000009.png"]
    with Image.open(tmp_path / "samples" / "step_0000004.png") as im:
        assert im.size == (8 * 16 + 9, 8 * 16 + 9)  # 64 images of 16x16 in an 8x8 grid, 1-pixel padding


def test_pictures_leave_training_unchanged(tmp_path):
    """Drawing after every step (train-mode BN in G) must not move G's running statistics or any RNG stream."""
    a = run_gan(config.load(OSGANConfig, None, SHAPES + ["max_steps=5", "sample_every=1", f"out={tmp_path / 'a'}"]))
    b = run_gan(config.load(OSGANConfig, None, SHAPES + ["max_steps=5", "sample_every=1000", f"out={tmp_path / 'b'}"]))
    assert len(_pngs(tmp_path / "a")) == 5 and len(_pngs(tmp_path / "b")) == 1
    for net in ("G", "D"):
        sa, sb = a[net].state_dict(), b[net].state_dict()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (net, k)
    assert any("running_mean" in k for k in a["G"].state_dict())  # the BN case was really exercised


def test_kd_generator_grids(tmp_path, monkeypatch):
    from onestage_gan import kd
    from tenfold.nets import create

    monkeypatch.setattr(kd, "_teacher_path", lambda cfg: None)
    monkeypatch.setattr(kd.nets, "load_teacher", lambda p: create("wrn16_1", 10).eval().requires_grad_(False))
    cfg = config.load(OSGANConfig, None, ["task=kd", "device=cpu", "batch_size=2", "kd.g_width=8", "kd.zdim=8",
                                          "kd.iters_per_epoch=2", "max_steps=4", f"out={tmp_path}"])
    kd.run_kd(cfg, stop_at=3)  # interrupted: skips the CIFAR-10 test accuracy, still draws samples.png
    assert _pngs(tmp_path) == ["step_0000002.png"]
    with Image.open(tmp_path / "samples.png") as im:
        assert im.size == (8 * 32 + 9, 8 * 32 + 9)
