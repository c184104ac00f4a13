"""GAN losses as per-sample scalar functions of D's logit f (spec §2.1), with γ = ℓ_g'(f) / ℓ_f'(f).

    L_D = mean_j ℓ_r(D(x_j)) + mean_i ℓ_f(D(G(z_i)))      L_G = mean_i ℓ_g(D(G(z_i)))

Symmetric losses (ℓ_g = −ℓ_f) have γ ≡ −1; asymmetric ones get a closed form, made safe where ℓ_f' = 0
or overflows (spec pitfall 4): |γ| is clamped to `gamma_max`, and a sample whose ℓ_f' is 0 (hinge with
f ≤ −1, LSGAN at f = 0) sends G no gradient from the one backward (γ = 0), which is documented.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["GanLoss", "LOSSES", "get_loss", "gamma_autograd"]

GAMMA_MAX = 1e4


@dataclass(frozen=True)
class GanLoss:
    name: str
    l_r: Callable[[torch.Tensor], torch.Tensor]  # D's loss on real logits (per sample)
    l_f: Callable[[torch.Tensor], torch.Tensor]  # D's loss on fake logits (per sample)
    l_g: Callable[[torch.Tensor], torch.Tensor]  # G's loss on fake logits (per sample)
    gamma_fn: Callable[[torch.Tensor], torch.Tensor]  # ℓ_g'/ℓ_f', or 0 where ℓ_f' = 0 (packed_fake relies on it)
    symmetric: bool

    def gamma(self, f: torch.Tensor, gamma_max: float = GAMMA_MAX) -> torch.Tensor:
        """Per-sample γ (shape (B,)), detached, finite, |γ| ≤ gamma_max."""
        with torch.no_grad():
            f = f.detach()
            g = self.gamma_fn(f.float() if f.dtype in (torch.float16, torch.bfloat16) else f)
            g = torch.nan_to_num(g, nan=0.0, posinf=gamma_max, neginf=-gamma_max)
            return g.clamp(-gamma_max, gamma_max).to(f.dtype)

    def d_loss(self, f_real: torch.Tensor, f_fake: torch.Tensor) -> torch.Tensor:
        return self.l_r(f_real).mean() + self.l_f(f_fake).mean()

    def g_loss(self, f_fake: torch.Tensor) -> torch.Tensor:
        return self.l_g(f_fake).mean()

    def packed_fake(self, f_fake: torch.Tensor, gamma: torch.Tensor, gamma_max: float = GAMMA_MAX) -> torch.Tensor:
        """The paper's packed fake term per sample, (ℓ_f − ℓ_g)/(1 − γ) with γ detached: its f-derivative is
        (ℓ_f' − ℓ_g')/(1 − γ) = ℓ_f' only where γ is the true ratio ℓ_g'/ℓ_f'. Where γ was substituted — 0 where
        ℓ_f' = 0 (hinge at f ≤ −1, LSGAN at f = 0), ±gamma_max where clamped — that identity fails and D would get
        a wrong gradient (hinge: +1 instead of 0), so those samples use ℓ_f itself (also exact where γ is truly 0:
        then ℓ_g' = 0). D's gradient is exact for every sample; G's comes from the scaler as in the simple form.
        The mask needs no extra autograd pass (so it also runs where backward cannot, e.g. on fake CUDA)."""
        lim = torch.full_like(gamma, gamma_max)  # the clamp value as rounded in γ's dtype (bf16 under autocast)
        ok = (gamma != 0) & (gamma.abs() < lim) & ((1 - gamma).abs() > 1e-6)
        denom = torch.where(ok, 1 - gamma, torch.ones_like(gamma))
        return torch.where(ok, (self.l_f(f_fake) - self.l_g(f_fake)) / denom, self.l_f(f_fake))


def _ns_gamma(f):
    # −(1−σ(f))/σ(f) = −exp(−f); f clamped so exp stays finite in float32 (σ underflows for f ≲ −88)
    return -torch.exp(-f.clamp(min=-80.0))


def _ls_gamma(f):
    # ℓ_g' = f − 1, ℓ_f' = f: γ = (f − 1)/f, 0 where ℓ_f' = 0 (no G gradient from that sample)
    safe = torch.where(f == 0, torch.ones_like(f), f)
    return torch.where(f == 0, torch.zeros_like(f), (f - 1) / safe)


def _hinge_gamma(f):
    # ℓ_f = relu(1+f): ℓ_f' = 1[f > −1]; ℓ_g = −f: ℓ_g' = −1 → γ = −1 where f > −1, else 0 (ℓ_f' = 0)
    return torch.where(f > -1, -torch.ones_like(f), torch.zeros_like(f))


LOSSES: dict[str, GanLoss] = {
    "minimax": GanLoss("minimax", lambda f: F.softplus(-f), lambda f: F.softplus(f), lambda f: -F.softplus(f),
                       lambda f: -torch.ones_like(f), True),
    "wgan": GanLoss("wgan", lambda f: -f, lambda f: f, lambda f: -f, lambda f: -torch.ones_like(f), True),
    "nonsaturating": GanLoss("nonsaturating", lambda f: F.softplus(-f), lambda f: F.softplus(f),
                             lambda f: F.softplus(-f), _ns_gamma, False),
    "lsgan": GanLoss("lsgan", lambda f: 0.5 * (f - 1) ** 2, lambda f: 0.5 * f ** 2, lambda f: 0.5 * (f - 1) ** 2,
                     _ls_gamma, False),
    "hinge": GanLoss("hinge", lambda f: F.relu(1 - f), lambda f: F.relu(1 + f), lambda f: -f, _hinge_gamma, False),
}


def get_loss(name: str) -> GanLoss:
    if name not in LOSSES:
        raise KeyError(f"unknown GAN loss '{name}'; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]


def gamma_autograd(loss: GanLoss, f: torch.Tensor) -> torch.Tensor:
    """γ by autograd (the reference's way, for checking the closed forms): dℓ_g/df ÷ dℓ_f/df per sample."""
    f = f.detach().clone().requires_grad_(True)
    (gg,) = torch.autograd.grad(loss.l_g(f).sum(), f)
    (gf,) = torch.autograd.grad(loss.l_f(f).sum(), f)
    return gg / gf
