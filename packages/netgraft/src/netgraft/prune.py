"""Pruned initialisation of the thin student (an extension; spec §6: few-shot KD users value "student
initialisation by pruning the teacher"). Not in the paper or the reference code, which start the thin blocks
from random weights; `model.student_init=prune` turns it on for NetGraft and plain KD alike.

Every student conv takes the teacher filters with the largest L1 norm (Li et al., "Pruning Filters for Efficient
ConvNets", 2017), restricted to the input channels kept upstream. The adapters start as the matching channel
selections (s2t puts the kept channels back in their teacher positions, t2s picks them out), and the head unit
takes the teacher's head with its BatchNorm folded in. With a student as wide as the teacher this reproduces
the teacher exactly.
"""
from __future__ import annotations

import torch
from torch import nn

from .partition import FlattenHead, Partition

__all__ = ["prune_init_"]


def _convs(m: nn.Module) -> list[nn.Conv2d]:
    return [c for c in m.modules() if isinstance(c, nn.Conv2d)]


def _linears(m: nn.Module) -> list[nn.Linear]:
    return [c for c in m.modules() if isinstance(c, nn.Linear)]


def _top_l1(w: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (ascending) of the k rows of w with the largest L1 norm."""
    return w.abs().flatten(1).sum(1).topk(k).indices.sort().values


def _selection_(adapter: nn.Module, keep: torch.Tensor, to_student: bool) -> None:
    """A 1×1 conv that picks channels `keep` out of the teacher's map (t2s) or puts them back (s2t)."""
    if isinstance(adapter, nn.Identity):
        if not torch.equal(keep, torch.arange(len(keep), device=keep.device)):
            raise ValueError("an identity adapter cannot carry a pruned channel selection")
        return
    adapter.weight.zero_()
    adapter.bias.zero_()
    rows, cols = (torch.arange(len(keep)), keep) if to_student else (keep, torch.arange(len(keep)))
    adapter.weight[rows, cols, 0, 0] = 1.0


def _fold_head(head: nn.Module) -> tuple[torch.Tensor, torch.Tensor, nn.Linear]:
    """Teacher head Linear → [BatchNorm1d] → Linear: the first linear with the (eval-mode) BN folded in."""
    mods = list(head.mlp) if isinstance(head, FlattenHead) and isinstance(head.mlp, nn.Sequential) else []
    lins = [m for m in mods if isinstance(m, nn.Linear)]
    bns = [m for m in mods if isinstance(m, nn.BatchNorm1d)]
    if len(lins) != 2 or len(mods) != len(lins) + len(bns) or len(bns) > 1:
        raise ValueError("student_init=prune needs a teacher head Linear → [BatchNorm1d] → Linear")
    w, b = lins[0].weight.clone(), lins[0].bias.clone()
    if bns:
        bn = bns[0]
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w, b = w * scale[:, None], (b - bn.running_mean) * scale + bn.bias
    return w, b, lins[1]


@torch.no_grad()
def prune_init_(teacher: Partition, units: nn.ModuleList, positions: list[int]) -> None:
    """Overwrite the units' weights with the teacher's, pruned to the student's widths (VGG-style blocks)."""
    # teacher channels carried by the current student feature map, in order (None: the raw image's)
    keep = torch.arange(teacher.channels[positions[0] - 1]) if positions[0] > 0 else None
    for unit, pos in zip(units, positions):
        if keep is not None:
            _selection_(unit.t2s, keep, to_student=True)
        if pos == teacher.num_blocks:  # the head unit (never first: it follows at least one block)
            w1, b1, out = _fold_head(teacher.head)
            lins = _linears(unit.body)
            if len(lins) != 2 or lins[0].out_features > w1.shape[0]:
                raise ValueError("student_init=prune needs a student head Linear → Linear no wider than the "
                                 "teacher's")
            s1, s2 = lins
            w1 = w1[:, keep]
            hid = _top_l1(w1, s1.out_features)
            s1.weight.copy_(w1[hid])
            s1.bias.copy_(b1[hid])
            s2.weight.copy_(out.weight[:, hid])
            s2.bias.copy_(out.bias)
            return
        tconvs, sconvs = _convs(teacher.blocks[pos]), _convs(unit.body)
        if len(tconvs) != len(sconvs) or any(s.out_channels > t.out_channels for s, t in zip(sconvs, tconvs)):
            raise ValueError(f"student_init=prune: student block {pos} must have the teacher's convs, "
                             f"each no wider than the teacher's")
        for t, s in zip(tconvs, sconvs):
            idx = _top_l1(t.weight, s.out_channels)
            w = t.weight[idx]
            s.weight.copy_(w[:, keep] if keep is not None else w)
            s.bias.copy_(t.bias[idx])
            keep = idx
        _selection_(unit.s2t, keep, to_student=False)
