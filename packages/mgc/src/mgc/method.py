"""MGC's loss and update rules as pure functions on tensors (spec 2.3-2.5).

* `pool_cells`: multi-grained token pooling, cell index i*L + j (2.3);
* `gather_cells`: rows idx of a pooled map, flattened to [B*K, D] ordered (image, pair) (2.4);
* `info_nce`: MoCo-v3 InfoNCE with cross-view keys, positives at r + rank*B*K (2.4);
* `multigrain_loss`: sum of both directions per level, levels weighted K_c / sum K (2.4);
* `momentum_at`, `lr_at`: per-iteration cosine schedules (2.4, 2.5);
* `ema_update`: theta_m <- m theta_m + (1 - m) theta over parameters only (2.4);
* `clip_per_parameter`: each gradient tensor clipped to its own L2 norm (2.5, pitfall 11).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["pool_cells", "gather_cells", "duplicate_mask", "info_nce", "multigrain_loss", "momentum_at", "lr_at",
           "ema_update", "clip_per_parameter"]


def pool_cells(tokens: torch.Tensor, grid: int, cell: int) -> torch.Tensor:
    """Patch tokens [B, G*G, D] (row-major, no CLS) -> cell means [B, (G/c)^2, D]; cell (i, j) averages
    token rows c*i..c*i+c-1 and columns c*j..c*j+c-1 and sits at index i*(G/c) + j."""
    b, n, d = tokens.shape
    if n != grid * grid or grid % cell:
        raise ValueError(f"{n} tokens do not form a {grid}x{grid} grid divisible into {cell}x{cell} cells")
    if cell == 1:
        return tokens
    L = grid // cell
    return tokens.reshape(b, L, cell, L, cell, d).mean(dim=(2, 4)).reshape(b, L * L, d)


def gather_cells(pooled: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """pooled [B, L^2, D], idx [B, K] -> [B*K, D] (row b*K + k is pair k of image b)."""
    d = pooled.shape[-1]
    return pooled.gather(1, idx.unsqueeze(-1).expand(-1, -1, d)).reshape(-1, d)


def duplicate_mask(idx1: torch.Tensor, idx2: torch.Tensor) -> torch.Tensor:
    """Bool [B*K, B*K]: r' != r of the same image sharing a view-1 or a view-2 cell with r.

    Such keys overlap the query's region (false negatives, pitfall 6); the reference keeps them."""
    b, k = idx1.shape
    same = (idx1[:, :, None] == idx1[:, None, :]) | (idx2[:, :, None] == idx2[:, None, :])  # [B, K, K]
    same &= ~torch.eye(k, dtype=torch.bool, device=idx1.device)
    mask = torch.zeros(b, k, b, k, dtype=torch.bool, device=idx1.device)
    ar = torch.arange(b, device=idx1.device)
    mask[ar, :, ar, :] = same
    return mask.reshape(b * k, b * k)


def info_nce(q: torch.Tensor, k: torch.Tensor, temperature: float, weights: torch.Tensor | None = None,
             pair_weighting: str = "none", offset: int = 0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """-log softmax(q_r . k / T)[r + offset], reduced over rows r.

    q [n, d] (local queries), k [N, d] (all keys, already gathered; no gradient needed), weights [n]
    (pair weights w, 0 for padding), mask [n, n] (local keys to exclude, placed at `offset`).
    pair_weighting: "none" = mean over rows with w > 0; "w" = sum w CE / sum w (the apparent intent);
    "official" = mean over all rows, padding included (the released code, whose w-weighting is a no-op).
    """
    # logits and softmax in fp32: autocast would run the matmul in bf16 again even on fp32 inputs, and a bf16
    # logit at 1/T = 10 has a step of 0.06, so autocast is switched off here
    dt = torch.promote_types(q.dtype, torch.float32)  # fp32, or fp64 when given fp64
    with torch.autocast(q.device.type, enabled=False):
        logits = F.normalize(q.to(dt), dim=1) @ F.normalize(k.to(dt), dim=1).T / temperature
    return _reduce_nce(logits, q.shape[0], weights, pair_weighting, offset, mask)


def _reduce_nce(logits, n, weights, pair_weighting, offset, mask):
    if mask is not None:  # an all-false mask is a no-op; `mask.any()` would sync with the host
        full = torch.zeros_like(logits, dtype=torch.bool)
        full[:, offset:offset + mask.shape[1]] = mask
        logits = logits.masked_fill(full, float("-inf"))
    labels = torch.arange(n, device=logits.device) + offset
    ce = F.cross_entropy(logits, labels, reduction="none")
    if pair_weighting == "official" or weights is None:
        return ce.mean()
    w = weights.reshape(-1).to(ce.dtype)
    if pair_weighting == "none":
        valid = (w > 0).to(ce.dtype)
        return (ce * valid).sum() / valid.sum().clamp_min(1.0)
    if pair_weighting == "w":
        return (ce * w).sum() / w.sum().clamp_min(1e-12)
    raise ValueError(f"pair_weighting must be 'none', 'w' or 'official', got {pair_weighting!r}")


def multigrain_loss(level_losses: Sequence[torch.Tensor], pairs: Sequence[int]) -> torch.Tensor:
    """L = sum_c K_c L_c / sum_c K_c, where L_c already sums both directions."""
    total = sum(k * l for k, l in zip(pairs, level_losses))
    return total / float(sum(pairs))


def momentum_at(step: int, total_steps: int, m0: float = 0.996) -> float:
    """m(t) = 1 - (1 - m0) (1 + cos(pi t / T)) / 2: m0 at t = 0, 1 at t = T."""
    t = min(max(step, 0), total_steps) / max(total_steps, 1)
    return 1.0 - (1.0 - m0) * (1.0 + math.cos(math.pi * t)) / 2.0


def lr_at(step: int, total_steps: int, warmup_steps: int, lr: float, min_lr: float) -> float:
    """Linear warm-up from 0 over `warmup_steps`, then cosine from lr to min_lr at the last step."""
    if step < warmup_steps:
        return lr * step / warmup_steps
    rest = max(total_steps - 1 - warmup_steps, 1)
    t = min((step - warmup_steps) / rest, 1.0)
    return min_lr + (lr - min_lr) * (1.0 + math.cos(math.pi * t)) / 2.0


@torch.no_grad()
def ema_update(momentum: nn.Module, base: nn.Module, m: float) -> None:
    """Parameters only: BN running buffers of the momentum branch stay its own (spec 2.4)."""
    mp = [p for p in momentum.parameters()]
    bp = [p.detach() for p in base.parameters()]
    if len(mp) != len(bp):
        raise ValueError("momentum and base modules have different parameter lists")
    torch._foreach_mul_(mp, m)
    torch._foreach_add_(mp, bp, alpha=1.0 - m)


@torch.no_grad()
def clip_per_parameter(params: Iterable[nn.Parameter], clip: float) -> torch.Tensor:
    """Scale each gradient tensor to L2 norm <= clip separately (DINO style, not the global norm).

    Returns the norms before clipping; no host sync, so it stays cheap on GPU."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    norms = torch.stack(torch._foreach_norm(grads, 2.0)).float()
    coefs = (clip / (norms + 1e-6)).clamp(max=1.0)
    for g, c in zip(grads, coefs.unbind(0)):
        g.mul_(c.to(g.dtype))
    return norms
