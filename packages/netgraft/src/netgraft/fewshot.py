"""Few-shot data (spec §2.7): the official seeded per-class sampler, the n/10 scaling rule, data sets."""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

__all__ = ["official_few_shot", "validation_shots", "split_val", "augmentation", "Unlabeled", "PrefixCache",
           "crop_views"]


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


def validation_shots(labels: np.ndarray, n: int, m: int, seed: int = 6, pool_per_class: int = 5000
                     ) -> np.ndarray:
    """m labelled validation images per class from the training split, disjoint from the n shots: picks n..n+m−1
    of the same seeded per-class shuffle (the shuffle consumes the RNG stream independently of n, so the first n
    picks are exactly `official_few_shot(labels, n)`). Used only to choose hyperparameters, never for training."""
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    labels = np.asarray(labels)
    both = official_few_shot(labels, n + m, seed, pool_per_class)
    return np.concatenate([both[labels[both] == c][n:] for c in range(int(labels.max()) + 1)])


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


def crop_views(images: torch.Tensor, n: int, seed: int, padding: int = 4) -> list[torch.Tensor]:
    """The images plus `n` seeded random crops of each (zero padding, as RandomCrop(size, padding)):
    a finite stand-in for random cropping when the prefix is cached. `images` are [N, C, H, W] in [0, 1].

    With n ≥ (2·padding+1)² every offset is returned once instead (the image itself is the centre one):
    a uniform draw over these views is exactly RandomCrop(size, padding)'s distribution."""
    views = [images]
    if n == 0:
        return views
    h, w = images.shape[-2:]
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    offsets = range(2 * padding + 1)
    if n >= len(offsets) ** 2:
        return [padded[:, :, a:a + h, b:b + w] for a in offsets for b in offsets]
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        off = torch.randint(0, 2 * padding + 1, (len(images), 2), generator=g).tolist()
        views.append(torch.stack([padded[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(off)]))
    return views


class PrefixCache(Dataset):
    """Frozen-prefix outputs and teacher logits for every image view and its mirror image, computed once.

    Valid because the prefix blocks are shared copies of the teacher's and never trained; an item is
    (prefix output, teacher logits) of one of the image's views (the image and any cached crops) chosen
    uniformly, mirrored with probability ½ when `flip`. With `keep_input` an item holds the input view itself
    instead of its prefix output (for students that train their own prefix, e.g. from-scratch KD).
    """

    @torch.no_grad()
    def __init__(self, images: torch.Tensor | list[torch.Tensor], prefix_fn, teacher_from_prefix, flip: bool,
                 batch: int = 256, keep_input: bool = False):
        self.flip = flip
        base = [images] if isinstance(images, torch.Tensor) else list(images)
        views = [u for v in base for u in ((v, v.flip(-1)) if flip else (v,))]
        self.h, self.z = [], []
        for v in views:
            hs, zs = [], []
            for i in range(0, len(v), batch):
                h = prefix_fn(v[i:i + batch])
                hs.append(v[i:i + batch] if keep_input else h)
                zs.append(teacher_from_prefix(h))
            self.h.append(torch.cat(hs))
            self.z.append(torch.cat(zs))

    def __len__(self):
        return self.h[0].shape[0]

    def __getitem__(self, i):
        if len(self.h) == 2 and self.flip:  # image or mirror: the draw used since before crops were cached
            v = int(torch.rand(()) < 0.5)
        else:
            v = int(torch.randint(len(self.h), ()))
        return self.h[v][i], self.z[v][i]
