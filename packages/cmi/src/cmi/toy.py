"""The spec's offline toy data (§7): 4 classes of oriented patterns at 16x16 (or any size).

0 horizontal stripes, 1 vertical stripes, 2 diagonal stripes, 3 centred Gaussian blob; random
period, phase, colour and position jitter, N(0, 0.1) pixel noise, clipped to [0, 1]."""
from __future__ import annotations

import numpy as np
from tenfold.data import ArrayImageDataset

__all__ = ["make_toy"]

TOY_CLASSES = ["hstripes", "vstripes", "dstripes", "blob"]


def make_toy(n: int, size: int = 16, classes: int = 4, seed: int = 0) -> ArrayImageDataset:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy, xx = yy[None], xx[None]
    period = rng.uniform(3.0, 6.0, n).astype(np.float32)[:, None, None] * size / 16
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    jx = rng.uniform(-2, 2, n).astype(np.float32)[:, None, None] * size / 16
    jy = rng.uniform(-2, 2, n).astype(np.float32)[:, None, None] * size / 16
    k = labels[:, None, None] % 4
    u = np.where(k == 0, yy + jy, np.where(k == 1, xx + jx, (xx + jx + yy + jy) / np.sqrt(2)))
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * u / period + phase)
    sigma = rng.uniform(0.15, 0.25, n).astype(np.float32)[:, None, None] * size
    c = (size - 1) / 2
    blob = np.exp(-((xx - c - jx) ** 2 + (yy - c - jy) ** 2) / (2 * sigma ** 2))
    pattern = np.where(k == 3, blob, stripes)
    fg = rng.uniform(0.5, 1.0, (n, 1, 1, 3)).astype(np.float32)
    bg = rng.uniform(0.0, 0.3, (n, 1, 1, 3)).astype(np.float32)
    img = bg + (fg - bg) * pattern[..., None] + rng.normal(0, 0.1, (n, size, size, 3)).astype(np.float32)
    img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return ArrayImageDataset(img, labels.astype(np.int64), None, TOY_CLASSES[:classes])
