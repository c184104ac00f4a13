"""The optional R1 penalty (optim.r1; not in the reference): hand values, off by default, and the bad
combination refused. One stage == two stages with it, and r1 = 0 == the reference step: test_osgan_method.py."""
import pytest
import torch
from onestage_gan.config import OSGANConfig
from onestage_gan.method import r1_penalty
from tenfold import config
from tenfold.errors import ConfigError


def test_r1_penalty_hand_values_for_a_linear_discriminator():
    # D(x) = w·x + b: ∇_x D = w for every sample, so R1 = γ/2 ‖w‖² and its w-gradient is γ w
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    pen = r1_penalty(x @ w + 0.3, x, 10.0)
    assert pen.item() == pytest.approx(0.5 * 10.0 * (1 + 4 + 0.25))
    pen.backward()
    assert torch.allclose(w.grad, 10.0 * w.detach())


def test_r1_penalty_is_the_per_sample_squared_input_gradient_norm():
    # D(x) = Σ x² per sample: ∇ = 2x, R1 = γ/2 · mean_j 4‖x_j‖²
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    f = x.pow(2).flatten(1).sum(1)
    want = 0.5 * 2.0 * (4 * x.detach().pow(2).flatten(1).sum(1)).mean()
    assert r1_penalty(f, x, 2.0).item() == pytest.approx(want.item())


def test_config_r1_checks(tmp_path):
    base = [f"out={tmp_path}"]
    assert config.load(OSGANConfig, None, base).optim.r1 == 0.0  # off by default (the reference)
    with pytest.raises(ConfigError, match="r1"):
        config.load(OSGANConfig, None, base + ["optim.r1=-1"])
    with pytest.raises(ConfigError, match="d_forward=separate"):
        config.load(OSGANConfig, None, base + ["optim.r1=10", "mode=one", "d_forward=concat"])
    assert config.load(OSGANConfig, None, base + ["optim.r1=10", "mode=two", "d_forward=concat"]).optim.r1 == 10
