"""Diversity measures for a synthetic set (spec §7(b)): mean pairwise cosine similarity of teacher
instance-mean features (lower = more diverse), and instance-discrimination accuracy of a head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .augment import Normalizer, global_view, local_view
from .hooks import TeacherTaps

__all__ = ["teacher_features", "mean_pairwise_cosine", "mean_nearest_neighbour_cosine",
           "instance_discrimination_accuracy"]


@torch.no_grad()
def teacher_features(teacher: nn.Module, images: torch.Tensor, normalizer: Normalizer, taps: TeacherTaps | None = None,
                     batch_size: int = 128) -> torch.Tensor:
    """Instance-mean features f(x) (B, D) of un-augmented images in [0, 1]."""
    own = taps is None
    taps = taps or TeacherTaps(teacher, None, bn=False)
    dev = next(teacher.parameters()).device
    feats = []
    try:
        for i in range(0, images.shape[0], batch_size):
            teacher(normalizer(images[i:i + batch_size].to(dev)))
            feats.append(taps.features().float().cpu())
    finally:
        if own:
            taps.remove()
    return torch.cat(feats)


def mean_pairwise_cosine(features: torch.Tensor) -> float:
    """Mean cosine similarity over all pairs i != j."""
    f = F.normalize(features.double(), dim=1)
    sim = f @ f.t()
    n = f.shape[0]
    return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


def mean_nearest_neighbour_cosine(features: torch.Tensor) -> float:
    """Mean over i of max_{j != i} cos(f_i, f_j): how close each image is to its nearest other image (1 = every
    image has an exact duplicate, in direction); a near-duplicate measure beside the all-pairs mean."""
    f = F.normalize(features.double(), dim=1)
    sim = f @ f.t()
    sim.fill_diagonal_(-float("inf"))
    return float(sim.max(1).values.mean())


@torch.no_grad()
def instance_discrimination_accuracy(teacher: nn.Module, head: nn.Module, taps: TeacherTaps, images: torch.Tensor,
                                     normalizer: Normalizer) -> float:
    """Share of local views whose nearest global key (through the head) is their own image."""
    dev = next(teacher.parameters()).device
    x = images.to(dev)
    teacher(global_view(x, normalizer))
    k = head(taps.features().float())
    teacher(local_view(x, normalizer))
    q = head(taps.features().float())
    return float(((q @ k.t()).argmax(1) == torch.arange(x.shape[0], device=dev)).float().mean())
