"""Spec §7a: GradScale, γ closed forms, one-stage == two-stage gradients, BN guard, work count, clipping,
optimizer isolation, numerics."""
import math

import pytest
import torch
from onestage_gan import LOSSES, ScaleSlot, gamma_autograd, get_loss, grad_scale
from onestage_gan.method import check_exactness, one_stage_grads, one_stage_step, two_stage_grads, two_stage_step
from onestage_gan.nets import DCDiscriminator, DCGenerator


def test_gradscale_identity_forward_scaled_backward():
    x = torch.randn(3, 2, 4, 4, requires_grad=True)
    slot = ScaleSlot()
    y = grad_scale(x, slot)
    assert torch.equal(y, x) and y is not x
    slot.value = torch.tensor([1.0, -2.0, 0.5])  # written AFTER the forward
    g = torch.randn_like(x)
    y.backward(g)
    assert torch.allclose(x.grad, g * torch.tensor([1.0, -2.0, 0.5]).view(3, 1, 1, 1))
    with pytest.raises(RuntimeError, match="never set"):
        grad_scale(x, ScaleSlot()).sum().backward()


def test_gamma_closed_forms():
    f = torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64)
    ns = get_loss("nonsaturating").gamma(f)
    assert torch.allclose(ns, torch.tensor([-1.0, -0.135335283, -2.718281828], dtype=torch.float64), atol=1e-8)
    assert torch.allclose(ns, gamma_autograd(LOSSES["nonsaturating"], f), atol=1e-10)
    f2 = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    assert torch.allclose(get_loss("lsgan").gamma(f2), torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64))
    assert torch.allclose(get_loss("lsgan").gamma(f2), gamma_autograd(LOSSES["lsgan"], f2))
    for name in ("minimax", "wgan"):
        assert torch.equal(get_loss(name).gamma(f), -torch.ones(3, dtype=torch.float64))
        assert get_loss(name).symmetric
    h = get_loss("hinge").gamma(torch.tensor([-2.0, 0.5]))
    assert torch.isfinite(h).all() and h.tolist() == [0.0, -1.0]  # ℓ_f' = 0 at f ≤ −1: no G gradient
    assert get_loss("lsgan").gamma(torch.tensor([0.0])).item() == 0.0
    with pytest.raises(KeyError, match="unknown GAN loss"):
        get_loss("wasserstein")


def _pair(d_norm, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    G = DCGenerator(zdim=8, channels=1, d=8, size=16, norm="bn").to(dtype)
    D = DCDiscriminator(channels=1, d=8, size=16, norm=d_norm).to(dtype)
    x = torch.randn(8, 1, 16, 16, dtype=dtype).tanh()
    z = torch.randn(8, 8, dtype=dtype)
    return G, D, x, z


def _rel(a, b):
    num = sum((x - y).pow(2).sum() for x, y in zip(a, b)).sqrt()
    den = sum(y.pow(2).sum() for y in b).sqrt()
    return (num / den).item()


CASES = [("minimax", "bn"), ("wgan", "bn"), ("minimax", "gn"), ("nonsaturating", "gn"), ("lsgan", "gn"),
         ("hinge", "gn"), ("nonsaturating", "none"), ("lsgan", "ln")]


@pytest.mark.parametrize("loss_name,d_norm", CASES)
def test_one_stage_equals_two_stage_gradients(loss_name, d_norm):
    G, D, x, z = _pair(d_norm)
    loss = get_loss(loss_name)
    state_g = {k: v.clone() for k, v in G.state_dict().items()}
    state_d = {k: v.clone() for k, v in D.state_dict().items()}
    g1, d1 = one_stage_grads(G, D, x, z, loss)
    G.load_state_dict(state_g)
    D.load_state_dict(state_d)  # same parameters AND BN buffers
    g2, d2 = two_stage_grads(G, D, x, z, loss)
    assert max((a - b).abs().max().item() for a, b in zip(d1, d2)) < 1e-6
    assert _rel(g1, g2) < 1e-5
    assert _rel(g1, g2) < 1e-10  # float64: exact up to rounding
    assert any(t.abs().sum() > 0 for t in g1)


@pytest.mark.parametrize("loss_name", ["minimax", "wgan", "nonsaturating", "lsgan"])
def test_packed_form_equals_simple(loss_name):
    G, D, x, z = _pair("gn")
    loss = get_loss(loss_name)
    sg, sd = {k: v.clone() for k, v in G.state_dict().items()}, {k: v.clone() for k, v in D.state_dict().items()}
    g1, d1 = one_stage_grads(G, D, x, z, loss, form="simple")
    G.load_state_dict(sg)
    D.load_state_dict(sd)
    g2, d2 = one_stage_grads(G, D, x, z, loss, form="packed")
    assert _rel(g1, g2) < 1e-10 and _rel(d1, d2) < 1e-10


def test_batchnorm_breaks_asymmetric_and_is_guarded():
    G, D, x, z = _pair("bn")
    loss = get_loss("nonsaturating")
    sg, sd = {k: v.clone() for k, v in G.state_dict().items()}, {k: v.clone() for k, v in D.state_dict().items()}
    g1, _ = one_stage_grads(G, D, x, z, loss)
    G.load_state_dict(sg)
    D.load_state_dict(sd)
    g2, _ = two_stage_grads(G, D, x, z, loss)
    assert _rel(g1, g2) > 1e-3  # cross-sample coupling: only approximate
    with pytest.raises(ValueError, match="BatchNorm"):
        check_exactness(D, loss, "refuse")
    with pytest.warns(UserWarning, match="BatchNorm"):
        check_exactness(D, loss, "warn")
    check_exactness(D, get_loss("minimax"), "refuse")  # symmetric: exact even with BN


def _count(module, counter, key):
    module.register_forward_hook(lambda *_: counter.__setitem__(key, counter[key] + 1))


@pytest.mark.parametrize("d_forward,d_calls", [("separate", 2), ("concat", 1)])
def test_work_count(d_forward, d_calls, monkeypatch):
    G, D, x, z = _pair("gn", torch.float32)
    calls = {"G": 0, "D": 0, "backward": 0}
    _count(G, calls, "G")
    _count(D, calls, "D")
    orig = torch.Tensor.backward

    def counting_backward(self, *a, **k):
        calls["backward"] += 1
        return orig(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "backward", counting_backward)
    og, od = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    one_stage_step(G, D, og, od, x, z, get_loss("nonsaturating"), d_forward=d_forward)
    assert calls == {"G": 1, "D": d_calls, "backward": 1}
    calls.update(G=0, D=0, backward=0)
    two_stage_step(G, D, og, od, x, z, torch.randn_like(z), get_loss("nonsaturating"))
    assert calls == {"G": 2, "D": 3, "backward": 2}


def test_wgan_clipping():
    G, D, x, z = _pair("bn", torch.float32)
    og, od = torch.optim.Adam(G.parameters(), 1e-2), torch.optim.Adam(D.parameters(), 1e-1)
    one_stage_step(G, D, og, od, x, z, get_loss("wgan"), clip=0.01)
    assert all(p.abs().max() <= 0.01 for p in D.parameters())
    two_stage_step(G, D, og, od, x, z, z, get_loss("wgan"), clip=0.01)
    assert all(p.abs().max() <= 0.01 for p in D.parameters())


@pytest.mark.parametrize("loss_name", ["minimax", "nonsaturating"])
def test_optimizer_isolation_descends_both_losses(loss_name):
    G, D, x, z = _pair("gn", torch.float64)
    loss = get_loss(loss_name)
    G.eval()  # fixed BN statistics so L_G at fixed z is a function of the parameters only
    with torch.no_grad():
        lg0, ld0 = loss.g_loss(D(G(z))).item(), loss.d_loss(D(x), D(G(z))).item()
    og, od = torch.optim.SGD(G.parameters(), lr=1e-3), torch.optim.SGD(D.parameters(), lr=1e-3)
    # step G only: L_G must fall; step D only: L_D must fall
    one_stage_step(G, D, og, torch.optim.SGD(D.parameters(), lr=0.0), x, z, loss)
    with torch.no_grad():
        assert loss.g_loss(D(G(z))).item() < lg0
        ld1 = loss.d_loss(D(x), D(G(z))).item()
    one_stage_step(G, D, torch.optim.SGD(G.parameters(), lr=0.0), od, x, z, loss)
    with torch.no_grad():
        assert loss.d_loss(D(x), D(G(z))).item() < ld1
    assert math.isfinite(ld0)


def test_nonsaturating_numerics_at_extreme_logits():
    G, D, x, z = _pair("gn", torch.float32)
    with torch.no_grad():
        D.net[-1].bias.fill_(-120.0)  # σ(f) underflows
    g, d = one_stage_grads(G, D, x, z, get_loss("nonsaturating"))
    assert all(torch.isfinite(t).all() for t in g + d)
    assert get_loss("nonsaturating").gamma(torch.tensor([-120.0])).abs().item() <= 1e4


def test_discriminator_batch_of_one_keeps_shape():
    D = DCDiscriminator(1, 8, 16, "gn")
    assert D(torch.randn(1, 1, 16, 16)).shape == (1,)
    assert DCGenerator(8, 3, 8, 32)(torch.randn(2, 8)).shape == (2, 3, 32, 32)
    assert DCGenerator(8, 3, 8, 64)(torch.randn(2, 8, 1, 1)).shape == (2, 3, 64, 64)


def test_dfad_one_stage_gradients():
    """KD game: the student gets ∇L, the generator −∇L, from one backward (float64)."""
    from onestage_gan.kd import dfad_loss
    from onestage_gan.proxy import _cifar_input
    from tenfold import nets

    torch.manual_seed(0)
    T = nets.create("wrn16_1", 10).double().eval().requires_grad_(False)
    S = nets.create("wrn16_1", 10).double()
    G = DCGenerator(16, 3, 8, 32).double()
    z = torch.randn(4, 16, dtype=torch.float64)
    x = _cifar_input(grad_scale(G(z), ScaleSlot(-1.0)))
    dfad_loss(T(x), S(x)).backward()
    gs1, gg1 = [p.grad.clone() for p in S.parameters()], [p.grad.clone() for p in G.parameters()]
    S.zero_grad()
    G.zero_grad()
    x = _cifar_input(G(z))
    dfad_loss(T(x), S(x)).backward()
    assert _rel(gs1, [p.grad for p in S.parameters()]) < 1e-12
    assert _rel(gg1, [-p.grad for p in G.parameters()]) < 1e-12
