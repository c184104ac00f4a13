"""A procedurally generated labelled image set: the offline default for demos and fast tests.

Class = shape (10 kinds); colour, texture, position, size and background vary per image, so the
task needs shape features rather than colour statistics. Deterministic in (seed, index); any size.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .arrays import ArrayImageDataset

__all__ = ["synthetic_shapes", "SHAPES"]

SHAPES = ["disc", "square", "triangle", "cross", "ring", "diamond", "hbar", "vbar", "ellipse", "corner"]


def _masks(kind: np.ndarray, cx, cy, r, yy, xx) -> np.ndarray:
    dx = (xx[None] - cx[:, None, None]) / r[:, None, None]
    dy = (yy[None] - cy[:, None, None]) / r[:, None, None]
    ad, ady = np.abs(dx), np.abs(dy)
    k = kind[:, None, None]
    m = np.zeros(dx.shape, dtype=bool)
    m |= (k == 0) & (dx**2 + dy**2 <= 1)
    m |= (k == 1) & (ad <= 0.8) & (ady <= 0.8)
    m |= (k == 2) & (dy <= 0.8) & (dy >= -0.9 + 1.7 * ad)
    m |= (k == 3) & (((ad <= 0.28) & (ady <= 1)) | ((ady <= 0.28) & (ad <= 1)))
    m |= (k == 4) & (dx**2 + dy**2 <= 1) & (dx**2 + dy**2 >= 0.4)
    m |= (k == 5) & (ad + ady <= 1)
    m |= (k == 6) & (ad <= 1) & (ady <= 0.35)
    m |= (k == 7) & (ady <= 1) & (ad <= 0.35)
    m |= (k == 8) & ((dx / 1.0) ** 2 + (dy / 0.5) ** 2 <= 1)
    m |= (k == 9) & (((dx >= -0.9) & (dx <= -0.4) & (ady <= 0.9)) | ((dy >= 0.4) & (dy <= 0.9) & (ad <= 0.9)))
    return m


def synthetic_shapes(n: int = 2000, image_size: int = 32, num_classes: int = 10, seed: int = 0,
                     channels: int = 3, transform: Callable | None = None, chunk: int = 2048) -> ArrayImageDataset:
    if not 2 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes must be in 2..{len(SHAPES)}")
    if channels not in (1, 3):
        raise ValueError("channels must be 1 or 3")
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    s = image_size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    out = np.empty((n, s, s, channels), dtype=np.uint8)
    for start in range(0, n, chunk):
        lab = labels[start:start + chunk]
        b = len(lab)
        r = rng.uniform(0.22, 0.38, b).astype(np.float32) * s
        cx = rng.uniform(0.3, 0.7, b).astype(np.float32) * s
        cy = rng.uniform(0.3, 0.7, b).astype(np.float32) * s
        mask = _masks(lab, cx, cy, r, yy, xx)
        fg = rng.uniform(0.45, 1.0, (b, 3)).astype(np.float32)
        bg = rng.uniform(0.0, 0.4, (b, 3)).astype(np.float32)
        # texture on the shape: stripes of random frequency/orientation, so colour alone is not the class
        theta = rng.uniform(0, np.pi, b).astype(np.float32)
        freq = rng.uniform(0.2, 0.8, b).astype(np.float32)
        ct, st = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
        phase = (xx[None] * ct + yy[None] * st) * freq[:, None, None]
        tex = 0.75 + 0.25 * np.sign(np.sin(phase))
        noise = rng.normal(0, 0.06, (b, s, s, 1)).astype(np.float32)
        img = np.where(mask[..., None], fg[:, None, None, :] * tex[..., None], bg[:, None, None, :]) + noise
        if channels == 1:
            img = img.mean(-1, keepdims=True)
        out[start:start + b] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return ArrayImageDataset(out, labels.astype(np.int64), transform, SHAPES[:num_classes])
