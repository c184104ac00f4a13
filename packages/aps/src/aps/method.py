"""APS objective and schedule (spec §2.4–2.6), device-agnostic (pitfall 16).

    L = ctr(p1, sg(z2)) + ctr(p2, sg(z1)),   z_v = Projector(ViT(x_v, I_v)),  p_v = Predictor(z_v)
    ctr(q, k) = CE(q̂ k̂ᵀ / τ, labels_i = i + N·rank)

No momentum encoder and no 2τ factor (pitfall 7): keys are the online network's outputs, detached.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tenfold import distributed

from .sampling import (
    asymmetric_patch_sampling,
    non_overlap_ratio,
    overlap_fraction,
    selection_weights,
    sparse_patch_sampling,
)

__all__ = ["contrastive_loss", "aps_loss", "lr_factor", "asymmetric_patch_sampling", "sparse_patch_sampling",
           "non_overlap_ratio", "selection_weights", "overlap_fraction"]


def contrastive_loss(q: torch.Tensor, k: torch.Tensor, tau: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE of queries q [N, d] against keys k [N, d] gathered over ranks (no gradient).

    Returns (loss, mean positive cosine). Keys are expected to be detached already (stop-gradient).
    """
    # fp32 logits even under autocast (which would run the matmul in bf16/fp16): at tau = 0.1 a bf16 cosine's
    # rounding (~4e-3) moves a logit by ~0.04
    with torch.autocast(q.device.type, enabled=False):
        q = F.normalize(q.float(), dim=1)
        k = F.normalize(k.float(), dim=1)
        k_all = distributed.all_gather_nograd(k)
        logits = q @ k_all.T / tau
        labels = torch.arange(q.shape[0], device=q.device) + q.shape[0] * distributed.rank()
        pos = logits.gather(1, labels[:, None]).mean() * tau
        return F.cross_entropy(logits, labels), pos.detach()


def aps_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.1,
             stop_gradient: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric sum of two CE terms (not averaged); returns (loss, mean positive cosine of both directions)."""
    k2, k1 = (z2.detach(), z1.detach()) if stop_gradient else (z2, z1)
    l12, s12 = contrastive_loss(p1, k2, tau)
    l21, s21 = contrastive_loss(p2, k1, tau)
    return l12 + l21, (s12 + s21) / 2


def lr_factor(t: float, warmup: float, total: float) -> float:
    """min((t+1)/W, ½(1 + cos(π t / T))): the official per-epoch factor (t, W, T in epochs); the same
    formula in optimizer steps gives the per-step variant."""
    warm = (t + 1) / warmup if warmup > 0 else 1.0
    return min(warm, 0.5 * (1.0 + math.cos(math.pi * t / total)))
