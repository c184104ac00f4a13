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


def _spread_logits(G, D, z, lo, hi):
    """Rescale D's last (linear) layer so the fake logits span [lo, hi] exactly: puts samples into γ's special
    regimes (hinge's dead zone f ≤ −1, the non-saturating clamp |γ| = 1e4 for f < −9.2) on purpose."""
    last = D.net[-1]
    with torch.no_grad():  # train mode: outputs use batch statistics, so running-stat updates here are harmless
        h = D(G(z)) - last.bias
        a = (hi - lo) / (h.max() - h.min())
        last.weight.mul_(a)
        last.bias.fill_(lo - a * h.min().item())
        return D(G(z))


def _grads_at_same_state(G, D, fn):
    sg = {k: v.clone() for k, v in G.state_dict().items()}
    sd = {k: v.clone() for k, v in D.state_dict().items()}
    out = fn()
    G.load_state_dict(sg)
    D.load_state_dict(sd)
    return out


def _norm_for(loss_name):
    return "bn" if get_loss(loss_name).symmetric else "gn"  # BN in D is exact only for symmetric losses


@pytest.mark.parametrize("form", ["simple", "packed"])
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_every_loss_both_forms_give_two_stage_d_gradient_in_all_regimes(loss_name, form):
    """D's gradient must be exact for every sample, also where γ is substituted (ℓ_f' = 0 → γ = 0, or clamped):
    the packed form used to send hinge's dead samples (f ≤ −1) a D gradient of +1 instead of 0."""
    G, D, x, z = _pair(_norm_for(loss_name), seed=1)
    f = _spread_logits(G, D, z, -12.0, 3.0)
    assert (f <= -9.3).any() and (f <= -1).any() and (f > -1).any()  # the special regimes are hit
    loss = get_loss(loss_name)
    _, d1 = _grads_at_same_state(G, D, lambda: one_stage_grads(G, D, x, z, loss, form=form))
    _, d2 = _grads_at_same_state(G, D, lambda: two_stage_grads(G, D, x, z, loss))
    assert _rel(d1, d2) < 1e-10
    assert max((a - b).abs().max().item() for a, b in zip(d1, d2)) < 1e-9


@pytest.mark.parametrize("form", ["simple", "packed"])
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_every_loss_both_forms_give_two_stage_g_gradient(loss_name, form):
    """Where γ is the true ratio (logits in [−0.9, 2.5]) G's gradient equals the two-stage ∇_G L_G (float64)."""
    G, D, x, z = _pair(_norm_for(loss_name), seed=2)
    _spread_logits(G, D, z, -0.9, 2.5)
    loss = get_loss(loss_name)
    g1, _ = _grads_at_same_state(G, D, lambda: one_stage_grads(G, D, x, z, loss, form=form))
    g2, _ = _grads_at_same_state(G, D, lambda: two_stage_grads(G, D, x, z, loss))
    assert _rel(g1, g2) < 1e-10 and any(t.abs().sum() > 0 for t in g1)


@pytest.mark.parametrize("loss_name,d_norm", [("minimax", "bn"), ("minimax", "gn"), ("nonsaturating", "gn"),
                                              ("hinge", "gn")])
def test_one_stage_equals_two_stage_with_r1(loss_name, d_norm):
    G, D, x, z = _pair(d_norm)
    loss = get_loss(loss_name)
    g1, d1 = _grads_at_same_state(G, D, lambda: one_stage_grads(G, D, x, z, loss, r1=10.0))
    g2, d2 = _grads_at_same_state(G, D, lambda: two_stage_grads(G, D, x, z, loss, r1=10.0))
    _, d0 = _grads_at_same_state(G, D, lambda: two_stage_grads(G, D, x, z, loss))  # without the penalty
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


def test_hinge_dead_samples_send_generator_no_gradient():
    """Documented behaviour where ℓ_f' = 0 (hinge, f ≤ −1): the one backward carries nothing into those fakes, so
    G's gradient is the two-stage gradient of the live samples only, mean_i 1[f_i > −1]·ℓ_g(f_i)."""
    G, D, x, z = _pair("gn", seed=1)
    f = _spread_logits(G, D, z, -3.0, 1.0)
    live = (f > -1).double()
    assert 0 < live.sum() < len(live)
    loss = get_loss("hinge")
    for form in ("simple", "packed"):
        g1, _ = _grads_at_same_state(G, D, lambda form=form: one_stage_grads(G, D, x, z, loss, form=form))

        def live_only():
            G.zero_grad(set_to_none=True)
            (loss.l_g(D(G(z))) * live).mean().backward()
            return [p.grad.clone() for p in G.parameters()]

        g2 = _grads_at_same_state(G, D, live_only)
        assert _rel(g1, g2) < 1e-10


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_packed_term_has_d_loss_derivative_at_special_logits(loss_name):
    """By hand at the logit level (float64): d/df of the packed fake term == ℓ_f'(f) at every special point —
    hinge's kink and dead zone, LSGAN's f = 0 (γ singular), the non-saturating clamp (f = −20, −120)."""
    loss = get_loss(loss_name)
    f = torch.tensor([-120.0, -20.0, -2.0, -1.0, -0.5, 0.0, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    gamma = loss.gamma(f)
    (got,) = torch.autograd.grad(loss.packed_fake(f, gamma).sum(), f)
    (want,) = torch.autograd.grad(loss.l_f(f).sum(), f)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-300), (got, want)


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
