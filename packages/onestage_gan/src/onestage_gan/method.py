"""One-stage GAN training (spec §2.2–2.4, §2.8) and the two-stage baseline it is compared with.

One stage: fake = G(z); x̃ = GradScale(fake, γ); L_D on (x_real, x̃); ONE backward gives D its exact
gradient and G the gradient of L_G — γ ≡ −1 for symmetric losses (gradient reversal), per-sample
γ_i = ℓ_g'(f_i)/ℓ_f'(f_i) for asymmetric ones (exact only if D has no cross-sample coupling).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .gradscale import ScaleSlot, grad_scale
from .losses import GanLoss
from .nets import CROSS_SAMPLE_LAYERS

__all__ = ["cross_sample_layers", "check_exactness", "one_stage_step", "two_stage_step", "one_stage_grads",
           "two_stage_grads", "clip_", "r1_penalty", "StepResult"]


def cross_sample_layers(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, CROSS_SAMPLE_LAYERS)]


def check_exactness(D: nn.Module, loss: GanLoss, policy: str = "refuse") -> None:
    """Asymmetric one-stage needs f_i to depend on x_i only; BatchNorm in D breaks that (9 % G-gradient error)."""
    if loss.symmetric or policy == "ignore":
        return
    bad = cross_sample_layers(D)
    if not bad:
        return
    msg = (f"asymmetric loss '{loss.name}' in one stage needs a discriminator without cross-sample coupling, "
           f"but D has BatchNorm at {bad[:3]}: use model.d_norm=gn (or ln/none), or bn_policy=warn to accept "
           f"an approximate generator gradient")
    if policy == "refuse":
        raise ValueError(msg)
    warnings.warn(msg, stacklevel=2)


@dataclass
class StepResult:
    loss_d: torch.Tensor
    loss_g: torch.Tensor


def r1_penalty(f_real: torch.Tensor, x_real: torch.Tensor, weight: float) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): weight/2 · mean_j ‖∇_x D(x_j)‖² on real images, graph kept so that D's
    backward includes it. x_real must require grad and f_real = D(x_real). Not in the reference: it is what lets
    the saturating minimax loss learn at CPU scale (D no longer separates real from fake with exploding logits)."""
    (g,) = torch.autograd.grad(f_real.sum(), x_real, create_graph=True)
    return 0.5 * weight * g.pow(2).flatten(1).sum(1).mean()


def _real_input(x_real, r1: float):
    return x_real.detach().requires_grad_(True) if r1 > 0 else x_real


def _with_r1(l_d: torch.Tensor, f_real: torch.Tensor, x_real: torch.Tensor, r1: float) -> torch.Tensor:
    """D's objective: its loss plus the R1 penalty when r1 > 0 (x_real from _real_input, f_real = D(x_real))."""
    return l_d + r1_penalty(f_real, x_real, r1) if r1 > 0 else l_d


def _d_logits(D, x_real, fake, d_forward):
    if d_forward == "concat":  # the reference's WGAN script: one D pass, BN statistics mix real and fake
        f = D(torch.cat([x_real, fake], 0))
        return f[: x_real.shape[0]], f[x_real.shape[0]:]
    return D(x_real), D(fake)


def _backward(loss_value, scaler):
    # fp16 on CUDA needs loss scaling (runtime.grad_scaler); γ scales the scaled gradient linearly, so it composes
    (scaler.scale(loss_value) if scaler is not None else loss_value).backward()


def _step(opt, scaler):
    scaler.step(opt) if scaler is not None else opt.step()


def _one_stage_backward(G, D, x_real, z, loss: GanLoss, d_forward: str, form: str, gamma_max: float, scaler=None,
                        r1: float = 0.0):
    if r1 > 0 and d_forward == "concat":  # R1's double backward would reach the fake half through BN statistics
        raise ValueError("an R1 penalty (optim.r1 > 0) in one stage needs d_forward=separate: with concat its "
                         "gradient would reach G through D's batch statistics")
    slot = ScaleSlot()
    fake = G(z)
    x_real = _real_input(x_real, r1)
    f_real, f_fake = _d_logits(D, x_real, grad_scale(fake, slot), d_forward)
    gamma = loss.gamma(f_fake, gamma_max)
    slot.value = gamma
    if form == "packed":  # the paper's presentation: same gradients as L_D (tested for every loss)
        l_total = loss.l_r(f_real).mean() + loss.packed_fake(f_fake, gamma, gamma_max).mean()
    else:
        l_total = loss.d_loss(f_real, f_fake)
    # R1 is a D-only term: x_real does not come from G, so G's gradient is untouched
    _backward(_with_r1(l_total, f_real, x_real, r1), scaler)
    with torch.no_grad():
        return StepResult(loss.d_loss(f_real, f_fake).detach(), loss.g_loss(f_fake).detach())


def clip_(D: nn.Module, c: float) -> None:
    with torch.no_grad():
        for p in D.parameters():
            p.clamp_(-c, c)


def one_stage_step(G, D, opt_G, opt_D, x_real, z, loss: GanLoss, d_forward: str = "separate",
                   form: str = "simple", clip: float | None = None, gamma_max: float = 1e4,
                   scaler=None, r1: float = 0.0) -> StepResult:
    """One forward of G, D on real and (scaled) fake, one backward, both optimizers step. scaler: a
    torch.amp.GradScaler (fp16) or None; r1: the R1 penalty's weight (0 = off, the reference)."""
    opt_D.zero_grad(set_to_none=True)
    opt_G.zero_grad(set_to_none=True)  # both zeroed BEFORE the single backward (pitfall 6)
    res = _one_stage_backward(G, D, x_real, z, loss, d_forward, form, gamma_max, scaler, r1)
    _step(opt_D, scaler)
    _step(opt_G, scaler)
    if scaler is not None:
        scaler.update()
    if clip:
        clip_(D, clip)
    return res


def two_stage_step(G, D, opt_G, opt_D, x_real, z_d, z_g, loss: GanLoss, clip: float | None = None,
                   scaler=None, r1: float = 0.0) -> StepResult:
    """The alternating baseline: D step on a detached fake, then a G step with fresh z through the updated D."""
    with torch.no_grad():
        fake = G(z_d)
    x_real = _real_input(x_real, r1)
    f_real = D(x_real)
    loss_d = loss.d_loss(f_real, D(fake))
    opt_D.zero_grad(set_to_none=True)
    _backward(_with_r1(loss_d, f_real, x_real, r1), scaler)
    _step(opt_D, scaler)
    if clip:
        clip_(D, clip)
    loss_g = loss.g_loss(D(G(z_g)))
    opt_G.zero_grad(set_to_none=True)
    _backward(loss_g, scaler)
    _step(opt_G, scaler)
    if scaler is not None:
        scaler.update()
    return StepResult(loss_d.detach(), loss_g.detach())


def _grads(module):
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in module.parameters()]


def one_stage_grads(G, D, x_real, z, loss: GanLoss, d_forward="separate", form="simple", gamma_max=1e4,
                    r1: float = 0.0):
    """(grads of G, grads of D) from one one-stage backward, without stepping."""
    G.zero_grad(set_to_none=True)
    D.zero_grad(set_to_none=True)
    _one_stage_backward(G, D, x_real, z, loss, d_forward, form, gamma_max, r1=r1)
    return _grads(G), _grads(D)


def two_stage_grads(G, D, x_real, z, loss: GanLoss, d_forward="separate", r1: float = 0.0):
    """The two stages' gradients at the SAME parameters and the SAME z (spec §2.4): ∇_D (L_D + R1), ∇_G L_G."""
    G.zero_grad(set_to_none=True)
    D.zero_grad(set_to_none=True)
    xr = _real_input(x_real, r1)
    f_real, f_fake = _d_logits(D, xr, G(z).detach(), d_forward)
    _with_r1(loss.d_loss(f_real, f_fake), f_real, xr, r1).backward()
    gd = _grads(D)
    G.zero_grad(set_to_none=True)
    D.zero_grad(set_to_none=True)
    _, f_fake = _d_logits(D, x_real, G(z), d_forward)
    loss.g_loss(f_fake).backward()
    gg = _grads(G)
    D.zero_grad(set_to_none=True)
    return gg, gd
