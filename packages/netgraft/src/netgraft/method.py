"""Progressive network grafting (spec §2): grafting units, the grafted forward, the loss and the
exact merge of adaptation layers.

Positions index `teacher.blocks + [teacher.head]`: position K (= number of blocks) is the head.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .partition import FlattenHead, GapHead, Partition

__all__ = ["normalized_logit_loss", "graft_loss", "adapter", "GraftingUnit", "Grafted", "build_units",
           "Student", "merge_adapters", "affine_of"]


def normalized_logit_loss(z_g: torch.Tensor, z_t: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Σ_i ‖z_g,i/‖z_g,i‖ − z_t,i/‖z_t,i‖‖² = Σ_i (2 − 2 cos(z_g,i, z_t,i)): a SUM over batch and classes (§2.3)."""
    return (F.normalize(z_g, dim=1, eps=eps) - F.normalize(z_t, dim=1, eps=eps)).pow(2).sum()


def graft_loss(z_g: torch.Tensor, z_t: torch.Tensor, kind: str = "normalized_mse", temperature: float = 4.0
               ) -> torch.Tensor:
    if kind == "normalized_mse":
        return normalized_logit_loss(z_g, z_t)
    if kind == "mse":  # the reference's non-default path (mean reduction)
        return F.mse_loss(z_g, z_t)
    if kind == "kl":  # extension: Hinton KD on the hybrid network's logits
        t = temperature
        return F.kl_div(F.log_softmax(z_g / t, 1), F.softmax(z_t / t, 1), reduction="batchmean") * t * t
    raise ValueError(f"unknown loss '{kind}' (normalized_mse | mse | kl)")


def adapter(cin: int, cout: int, force: bool = False) -> nn.Module:
    """1×1 conv with bias, no nonlinearity, Kaiming-normal (fan_out, relu), zero bias; identity if widths match."""
    if cin == cout and not force:
        return nn.Identity()
    conv = nn.Conv2d(cin, cout, 1, bias=True)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return conv


class GraftingUnit(nn.Module):
    """U_l = A_{s→t}^l ∘ B_S^l ∘ A_{t→s}^{l−1} (the head unit has no s2t)."""

    def __init__(self, body: nn.Module, t2s: nn.Module | None = None, s2t: nn.Module | None = None):
        super().__init__()
        self.t2s = t2s if t2s is not None else nn.Identity()
        self.body = body
        self.s2t = s2t if s2t is not None else nn.Identity()

    def forward(self, x):
        return self.s2t(self.body(self.t2s(x)))


class Grafted(nn.Module):
    """Teacher blocks [0, pos) → unit → teacher blocks [pos+length, K) → teacher head (unless replaced).

    `start` lets callers feed the output of teacher blocks [0, start) directly (cached prefix).
    Teacher weights are frozen but gradients flow *through* them into the unit.
    """

    def __init__(self, teacher: Partition, unit: nn.Module, pos: int, length: int = 1):
        super().__init__()
        k = teacher.num_blocks
        if not (0 <= pos and length >= 1 and pos + length <= k + 1):
            raise ValueError(f"graft position {pos} with length {length} does not fit {k} blocks + head")
        self.teacher = teacher
        self.unit, self.pos, self.length = unit, pos, length

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        if start > self.pos:
            raise ValueError(f"input starts after block {start} but the graft is at {self.pos}")
        for b in self.teacher.blocks[start:self.pos]:
            x = b(x)
        x = self.unit(x)
        end = self.pos + self.length
        if end > self.teacher.num_blocks:  # the unit covered the head: x are the logits
            return x
        for b in self.teacher.blocks[end:]:
            x = b(x)
        return self.teacher.head(x)


def build_units(teacher: Partition, student: Partition, positions: list[int], force_adapters: bool = False
                ) -> nn.ModuleList:
    """One grafting unit per position (each adaptation layer belongs to exactly one unit)."""
    k = teacher.num_blocks
    if student.num_blocks != k:
        raise ValueError(f"teacher has {k} blocks but student has {student.num_blocks}")
    if not positions or any(b <= a for a, b in zip(positions, positions[1:])):
        raise ValueError(f"positions must be a non-empty increasing list, got {positions}")
    units = []
    for i, p in enumerate(positions):
        if not 0 <= p <= k:
            raise ValueError(f"position {p} outside 0..{k} (K={k} is the head)")
        body = student.blocks[p] if p < k else student.head
        t2s = None
        if p > 0:  # input comes from teacher block p−1
            t2s = adapter(teacher.channels[p - 1], student.channels[p - 1], force_adapters and i > 0)
        s2t = adapter(student.channels[p], teacher.channels[p], force_adapters) if p < k else None
        units.append(GraftingUnit(body, t2s, s2t))
    return nn.ModuleList(units)


class Student(nn.Module):
    """The final student: the shared prefix (teacher blocks copied) followed by the chain of units."""

    def __init__(self, prefix: nn.ModuleList, units: nn.ModuleList):
        super().__init__()
        self.prefix = prefix
        self.units = units

    def forward_prefix(self, x):
        for b in self.prefix:
            x = b(x)
        return x

    def forward_from_prefix(self, h):
        for u in self.units:
            h = u(h)
        return h

    def forward(self, x):
        return self.forward_from_prefix(self.forward_prefix(x))


# ---- exact adapter merging (§2.6) -------------------------------------------------------------

def affine_of(module: nn.Module, dim: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(W, b) of a per-position affine map on `dim` channels, or None if `module` is not affine."""
    if isinstance(module, nn.Identity):
        return torch.eye(dim, dtype=torch.float64), torch.zeros(dim, dtype=torch.float64)
    if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.stride == (1, 1) \
            and module.groups == 1 and module.padding in ((0, 0), 0):
        w = module.weight.detach().double().flatten(1)
        b = module.bias.detach().double() if module.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        return w, b
    if isinstance(module, nn.Linear):
        w = module.weight.detach().double()
        b = module.bias.detach().double() if module.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        return w, b
    if isinstance(module, nn.BatchNorm1d) and not module.training:
        scale = module.weight.detach().double() / (module.running_var.double() + module.eps).sqrt()
        return torch.diag(scale), module.bias.detach().double() - scale * module.running_mean.double()
    if isinstance(module, nn.Sequential):
        w, b = torch.eye(dim, dtype=torch.float64), torch.zeros(dim, dtype=torch.float64)
        for m in module:
            ab = affine_of(m, w.shape[0])
            if ab is None:
                return None
            w, b = ab[0] @ w, ab[0] @ b + ab[1]
        return w, b
    return None


def _compose(*maps):
    w, b = maps[0]
    for w2, b2 in maps[1:]:
        w, b = w2 @ w, w2 @ b + b2
    return w, b


def _conv1x1(w, b, dtype):
    conv = nn.Conv2d(w.shape[1], w.shape[0], 1, bias=True)
    with torch.no_grad():
        conv.weight.copy_(w.view(*w.shape, 1, 1).to(dtype))
        conv.bias.copy_(b.to(dtype))
    return conv


def _linear(w, b, dtype):
    lin = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(w.to(dtype))
        lin.bias.copy_(b.to(dtype))
    return lin


def _out_dim(module: nn.Module, default: int) -> int:
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    return default


def _in_dim(module: nn.Module) -> int | None:
    if isinstance(module, nn.Conv2d):
        return module.in_channels
    if isinstance(module, nn.Linear):
        return module.in_features
    return None


def merge_adapters(student: Student) -> nn.Module:
    """An equivalent student without adaptation layers: each s2t→t2s pair becomes one 1×1 conv, and the
    pair before a purely affine head (Linear/BN1d in eval) folds into one Linear (exact, §2.6)."""
    student = copy.deepcopy(student).eval()
    units = list(student.units)
    layers: list[nn.Module] = []
    pending: list[tuple[torch.Tensor, torch.Tensor]] = []
    dtype = next(student.parameters()).dtype

    def flush_conv():
        if pending:
            w, b = _compose(*pending)
            if not torch.equal(w, torch.eye(w.shape[0], dtype=w.dtype)) or b.abs().max() > 0:
                layers.append(_conv1x1(w, b, dtype))
            pending.clear()

    for u in units:
        if not isinstance(u.t2s, nn.Identity):
            pending.append(affine_of(u.t2s, u.t2s.in_channels))
        head = u.body if isinstance(u.body, (FlattenHead, GapHead)) else None
        if head is not None:
            inner = head.mlp if isinstance(head, FlattenHead) else head.fc
            dim = _in_dim(inner[0] if isinstance(inner, nn.Sequential) else inner)
            aff = affine_of(inner, dim) if dim is not None else None
            if aff is not None:
                # conv1x1 maps commute with flatten at 1×1 and with global average pooling
                w, b = _compose(*pending, aff) if pending else aff
                pending.clear()
                lin = _linear(w, b, dtype)
                layers.append(FlattenHead(lin) if isinstance(head, FlattenHead) else GapHead(lin))
                continue
        flush_conv()
        layers.append(u.body)
        if not isinstance(u.s2t, nn.Identity):
            pending.append(affine_of(u.s2t, u.s2t.in_channels))
    flush_conv()
    return nn.Sequential(*student.prefix, *layers)
