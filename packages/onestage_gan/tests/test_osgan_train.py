"""Training loop: exact resume, configs, CLIs and bad input."""
import json
from pathlib import Path

import pytest
import torch
from onestage_gan.config import OSGANConfig
from onestage_gan.train import run_gan
from tenfold import config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RING = ["model.arch=mlp", "model.zdim=8", "data.name=ring", "data.num_samples=2048", "batch_size=64",
        "optim.lr_d=1e-3", "optim.lr_g=1e-3", "ckpt_every=5", "log_every=5", "eval_samples=500", "device=cpu"]


@pytest.mark.parametrize("mode,loss", [("one", "nonsaturating"), ("two", "minimax")])
def test_resume_is_bitwise_equal(tmp_path, mode, loss):
    base = RING + [f"mode={mode}", f"loss={loss}", "max_steps=40", "optim.milestones=[1]"]  # 32 steps/epoch
    a = run_gan(config.load(OSGANConfig, None, base + [f"out={tmp_path / 'a'}"]))
    cfg_b = config.load(OSGANConfig, None, base + [f"out={tmp_path / 'b'}"])
    run_gan(cfg_b, stop_at=23)  # interrupted mid-epoch, before the lr milestone at step 32
    b = run_gan(cfg_b, resume="auto")
    for k, v in a["G"].state_dict().items():
        assert torch.equal(v, b["G"].state_dict()[k]), k
    for k, v in a["D"].state_dict().items():
        assert torch.equal(v, b["D"].state_dict()[k]), k
    assert a["high_quality"] == b["high_quality"]


def test_all_shipped_configs_parse():
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    assert len(names) >= 15
    for n in names:
        cfg = config.load(OSGANConfig, CONFIGS / f"{n}.yaml")
        if "asymmetric_one_stage" in n:
            assert cfg.model.d_norm == "gn" and cfg.loss == "nonsaturating"
        if n.startswith("wgan"):
            assert cfg.clip == 0.01


def test_one_stage_refuses_bn_for_asymmetric(tmp_path):
    cfg = config.load(OSGANConfig, None, ["data.name=shapes", "data.num_samples=64", "model.size=16",
                                           "model.g_width=8", "model.d_width=8", "model.d_norm=bn", "max_steps=1",
                                           "loss=nonsaturating", "batch_size=16", f"out={tmp_path}"])
    with pytest.raises(ValueError, match="BatchNorm"):
        run_gan(cfg)


class _Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _cli(module, fn, *args):
    """Run a console-script entry point in-process (no torch re-import per call), like the shell would."""
    import contextlib
    import io

    from onestage_gan import cli

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            getattr(cli, fn)(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return _Result(code, out.getvalue(), err.getvalue())


def test_cli_errors(tmp_path):
    r = _cli("cli", "train", "optim.lr_dd=1")
    assert r.returncode == 2 and "did you mean 'optim.lr_d'" in r.stderr and r.stderr.count("\n") == 1
    r = _cli("cli", "train", "--loss", "wasserstein")
    assert r.returncode == 2 and "unknown 'wasserstein'" in r.stderr
    r = _cli("cli", "train", "batch_size=many")
    assert r.returncode == 2 and "expected an integer" in r.stderr
    r = _cli("cli", "train", "--data-root", str(tmp_path), "max_steps=1", f"--out={tmp_path / 'o'}")
    assert r.returncode == 2 and "MNIST not found" in r.stderr
    (tmp_path / "bad.pt").write_bytes(b"\x00" * 10)
    r = _cli("cli", "train", *RING, "max_steps=2", f"--out={tmp_path / 'r'}", "--resume", str(tmp_path / "bad.pt"))
    assert r.returncode == 2 and "corrupt or truncated" in r.stderr
    r = _cli("cli", "sample", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "no generator" in r.stderr
    r = _cli("cli", "train", "--task", "kd", "kd.teacher=" + str(tmp_path / "t.pt"), "max_steps=1",
             f"--out={tmp_path / 'k'}")
    assert r.returncode == 2 and "teacher weights not found" in r.stderr


def test_nan_loss_stops_and_keeps_checkpoint(tmp_path):
    cfg = config.load(OSGANConfig, None, RING + ["max_steps=30", "optim.lr_d=1e30", "optim.lr_g=1e30",
                                                  "loss=wgan", f"out={tmp_path}"])
    from tenfold.errors import NonFiniteLossError

    with pytest.raises(NonFiniteLossError):
        run_gan(cfg)


def test_sample_grid(tmp_path):
    r = _cli("cli", "train", "data.name=shapes", "data.num_samples=64", "model.size=16", "model.g_width=8",
             "model.d_width=8", "model.d_norm=gn", "max_steps=2", "batch_size=16", "eval_samples=0",
             f"--out={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["steps"] == 2
    r = _cli("cli", "sample", str(tmp_path), "-n", "16", "--nrow", "4")
    assert r.returncode == 0, r.stderr
    from PIL import Image

    assert Image.open(tmp_path / "samples.png").size == (4 * 16 + 5 * 2, 4 * 16 + 5 * 2)
