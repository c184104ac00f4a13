"""Few-shot data (spec §2.7): the official seeded per-class sampler, the n/10 scaling rule, data sets."""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

__all__ = ["official_few_shot", "split_val", "augmentation", "Unlabeled", "PrefixCache"]


def official_few_shot(labels: np.ndarray, n: int, seed: int = 6, pool_per_class: int = 5000) -> np.ndarray:
    """For each class c (in order), the first n of a shuffled range(pool) index that class's samples (in data
    set order). Python's `random` is seeded once before the class loop, so the stream runs on across classes."""
    labels = np.asarray(labels)
    rng = random.Random(seed)
    chosen = []
    for c in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == c)
        pool = min(pool_per_class, len(members))
        if pool < n:
            raise ValueError(f"class {c} has {len(members)} samples, fewer than n_shot={n}")
        order = list(range(pool))
        rng.shuffle(order)
        chosen.append(members[order[:n]])
    return np.concatenate(chosen)


def split_val(indices: np.ndarray, labels: np.ndarray, val_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out the last `val_per_class` picks of every class (for label-free model selection)."""
    if val_per_class == 0:
        return indices, indices[:0]
    labels = np.asarray(labels)
    train, val = [], []
    for c in np.unique(labels[indices]):
        mine = indices[labels[indices] == c]
        train.append(mine[:-val_per_class])
        val.append(mine[-val_per_class:])
    return np.concatenate(train), np.concatenate(val)


def augmentation(kind: str, mean, std, size: int = 32):
    ops = []
    if kind == "crop_flip":
        ops.append(v2.RandomCrop(size, padding=4))
    if kind in ("crop_flip", "flip"):
        ops.append(v2.RandomHorizontalFlip())
    return v2.Compose(ops + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


class Unlabeled(Dataset):
    """Images only: the method never sees a label."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i][0]


class PrefixCache(Dataset):
    """Frozen-prefix outputs and teacher logits for every image and its mirror image, computed once.

    Valid because the prefix blocks are shared copies of the teacher's and never trained; items are
    (prefix output, teacher logits) of the image or, with probability ½ when `flip`, of its mirror.
    """

    @torch.no_grad()
    def __init__(self, images: torch.Tensor, prefix_fn, teacher_from_prefix, flip: bool, batch: int = 256):
        self.flip = flip
        views = [images, images.flip(-1)] if flip else [images]
        self.h, self.z = [], []
        for v in views:
            hs, zs = [], []
            for i in range(0, len(v), batch):
                h = prefix_fn(v[i:i + batch])
                hs.append(h)
                zs.append(teacher_from_prefix(h))
            self.h.append(torch.cat(hs))
            self.z.append(torch.cat(zs))

    def __len__(self):
        return self.h[0].shape[0]

    def __getitem__(self, i):
        v = int(torch.rand(()) < 0.5) if self.flip else 0
        return self.h[v][i], self.z[v][i]
