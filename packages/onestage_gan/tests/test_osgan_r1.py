"""The optional R1 penalty (optim.r1; not in the reference): hand values, one stage == two stages with it,
off by default, and the bad combination refused."""
import pytest
import torch
from onestage_gan import get_loss
from onestage_gan.config import OSGANConfig
from onestage_gan.method import one_stage_grads, one_stage_step, r1_penalty, two_stage_grads
from onestage_gan.nets import DCDiscriminator, DCGenerator
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


def _pair(d_norm, seed=0):
    torch.manual_seed(seed)
    G = DCGenerator(zdim=8, channels=1, d=8, size=16, norm="bn").double()
    D = DCDiscriminator(channels=1, d=8, size=16, norm=d_norm).double()
    return G, D, torch.randn(8, 1, 16, 16, dtype=torch.float64).tanh(), torch.randn(8, 8, dtype=torch.float64)


@pytest.mark.parametrize("loss_name,d_norm", [("minimax", "bn"), ("minimax", "gn"), ("nonsaturating", "gn"),
                                              ("hinge", "gn")])
def test_one_stage_equals_two_stage_with_r1(loss_name, d_norm):
    G, D, x, z = _pair(d_norm)
    loss = get_loss(loss_name)
    sg, sd = ({k: v.clone() for k, v in m.state_dict().items()} for m in (G, D))
    g1, d1 = one_stage_grads(G, D, x, z, loss, r1=10.0)
    G.load_state_dict(sg)
    D.load_state_dict(sd)
    g2, d2 = two_stage_grads(G, D, x, z, loss, r1=10.0)
    G.load_state_dict(sg)
    D.load_state_dict(sd)
    _, d0 = two_stage_grads(G, D, x, z, loss)  # without the penalty
    assert max((a - b).abs().max().item() for a, b in zip(d1, d2)) < 1e-10
    assert max((a - b).abs().max().item() for a, b in zip(g1, g2)) < 1e-10  # R1 sends G nothing
    assert max((a - b).abs().max().item() for a, b in zip(d1, d0)) > 1e-6  # ...but it does change D's


def test_r1_zero_is_the_reference_step_bit_for_bit():
    outs = []
    for r1 in (None, 0.0):
        G, D, x, z = _pair("bn")
        og, od = torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam(D.parameters(), 1e-3)
        kw = {} if r1 is None else {"r1": r1}
        one_stage_step(G, D, og, od, x, z, get_loss("minimax"), **kw)
        outs.append([p.detach().clone() for p in (*G.parameters(), *D.parameters())])
    assert all(torch.equal(a, b) for a, b in zip(*outs))


def test_config_r1_checks(tmp_path):
    base = [f"out={tmp_path}"]
    assert config.load(OSGANConfig, None, base).optim.r1 == 0.0  # off by default (the reference)
    with pytest.raises(ConfigError, match="r1"):
        config.load(OSGANConfig, None, base + ["optim.r1=-1"])
    with pytest.raises(ConfigError, match="d_forward=separate"):
        config.load(OSGANConfig, None, base + ["optim.r1=10", "mode=one", "d_forward=concat"])
    assert config.load(OSGANConfig, None, base + ["optim.r1=10", "mode=two", "d_forward=concat"]).optim.r1 == 10
