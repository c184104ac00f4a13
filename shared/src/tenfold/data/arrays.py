"""In-memory image data sets: uint8 NHWC arrays + int64 labels."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["ArrayImageDataset", "class_subset", "few_shot_indices"]


class ArrayImageDataset(Dataset):
    """`images` uint8 [N,H,W,C], `labels` int64 [N]. Items are (transform(x), label) where x is a
    uint8 CHW tensor (torchvision.transforms.v2 accepts it); without a transform, float CHW in [0,1]."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable | None = None,
                 classes: Sequence[str] | None = None):
        if images.ndim == 3:
            images = images[..., None]
        if images.dtype != np.uint8:
            raise TypeError("images must be uint8 NHWC")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.classes = list(classes) if classes is not None else sorted(set(self.labels.tolist()))
        self.targets = self.labels  # torchvision naming

    def __len__(self) -> int:
        return len(self.images)

    def raw(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.images[i]).permute(2, 0, 1)

    def __getitem__(self, i):
        x = self.raw(i)
        x = self.transform(x) if self.transform is not None else x.float().div_(255)
        return x, int(self.labels[i])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as float [N,C,H,W] in [0,1] and labels (for fast batched evaluation)."""
        return torch.from_numpy(self.images).permute(0, 3, 1, 2).float().div_(255), torch.from_numpy(self.labels)


def class_subset(ds: ArrayImageDataset, classes: Sequence[int], remap: bool = True) -> ArrayImageDataset:
    """Keep the given classes; with `remap`, label classes[i] becomes i."""
    classes = list(classes)
    mask = np.isin(ds.labels, classes)
    labels = ds.labels[mask]
    names = [ds.classes[c] if c < len(ds.classes) else str(c) for c in classes]
    if remap:
        lut = np.full(max(int(ds.labels.max()), max(classes)) + 1, -1, dtype=np.int64)
        lut[classes] = np.arange(len(classes))
        labels = lut[labels]
        return ArrayImageDataset(ds.images[mask], labels, ds.transform, names)
    return ArrayImageDataset(ds.images[mask], labels, ds.transform, ds.classes)


def few_shot_indices(labels: np.ndarray, n_per_class: int, seed: int) -> np.ndarray:
    """`n_per_class` indices of each class, chosen by a seeded permutation (sorted output)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < n_per_class:
            raise ValueError(f"class {c} has {len(idx)} samples, fewer than n_per_class={n_per_class}")
        out.append(rng.choice(idx, size=n_per_class, replace=False))
    return np.sort(np.concatenate(out))
