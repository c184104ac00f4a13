"""GradScale: identity forward; backward multiplies the incoming gradient by a per-sample factor.

The factor tensor is held by reference (not saved for backward), so it can be filled after the forward
pass — γ depends on D's output, which only exists after the fake batch went through D.
"""
from __future__ import annotations

import torch

__all__ = ["GradScale", "grad_scale", "ScaleSlot"]


class ScaleSlot:
    """A mutable holder for the per-sample scale, filled between forward and backward."""

    def __init__(self, value: torch.Tensor | float | None = None):
        self.value = value


class GradScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, slot: ScaleSlot):
        ctx.slot = slot
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        s = ctx.slot.value
        if s is None:
            raise RuntimeError("GradScale: the scale was never set before backward()")
        if isinstance(s, torch.Tensor) and s.ndim == 1:
            s = s.to(grad.dtype).view(-1, *([1] * (grad.ndim - 1)))
        return grad * s, None


def grad_scale(x: torch.Tensor, slot: ScaleSlot) -> torch.Tensor:
    return GradScale.apply(x, slot)
