"""Per-iteration schedules (spec §2.8) and the weight-decay parameter groups (pitfall 9)."""
from __future__ import annotations

import math

from torch import nn

__all__ = ["lr_at", "wd_at", "temp_at", "param_groups"]


def lr_at(step: int, total: int, warmup: int, lr_eff: float, min_lr: float) -> float:
    """Linear warm-up 0 -> lr_eff over `warmup` iterations, then cosine lr_eff -> min_lr over the rest."""
    if step < warmup:
        return lr_eff * step / warmup
    rest = max(total - warmup, 1)
    return min_lr + 0.5 * (lr_eff - min_lr) * (1 + math.cos(math.pi * min(step - warmup, rest) / rest))


def wd_at(step: int, total: int, wd0: float, wd_end: float) -> float:
    """Cosine wd0 -> wd_end over all iterations, no warm-up."""
    return wd_end + 0.5 * (wd0 - wd_end) * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def temp_at(step: int, iters_per_epoch: int, temp: float, warmup_temp: float, warmup_epochs: float) -> float:
    """Linear warmup_temp -> temp over warmup_epochs, then constant (constant 0.2 with the defaults)."""
    w = warmup_epochs * iters_per_epoch
    if w <= 0 or step >= w:
        return temp
    return warmup_temp + (temp - warmup_temp) * step / w


def param_groups(module: nn.Module) -> list[dict]:
    """Group 0 (decayed): parameters with ndim >= 2 not named *.bias, which includes cls_token and pos_embed
    (DINO rule); group 1: biases and norm weights, wd 0. Frozen parameters (momentum encoder) are left out."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}]
