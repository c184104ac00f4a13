"""Asymmetric patch sampling (spec §2.2): sparse view-1 subsets, selective view-2 subsets.

Boxes are crop boxes `(top i, left j, height h, width w)` in original-image pixels; patch indices are
row-major over a G×G grid (`idx = row·G + col`). Everything here is numpy on one image pair, so it runs
in data-loader workers with a per-sample `np.random.Generator`.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["num_kept", "sparse_patch_sampling", "cell_edges", "non_overlap_ratio", "non_overlap_ratio_loop",
           "selection_weights", "weighted_sample_without_replacement", "selective_patch_sampling",
           "asymmetric_patch_sampling", "symmetric_patch_sampling", "overlap_fraction", "random_resized_crop_box"]

# Cells with u below this are "fully covered" (spec §2.2 step 3).
U_EPS = 1e-6


def num_kept(grid: int, ratio: float, num_subsets: int) -> int:
    """n = floor(M·r); K·r ≤ 1 is required so the K chunks of one permutation do not run out (Q10)."""
    m = grid * grid
    n = int(math.floor(m * ratio + 1e-9))
    if not 0.0 < ratio <= 1.0 or n < 1:
        raise ValueError(f"sampling ratio {ratio} keeps no patch of a {grid}x{grid} grid; use 0 < ratio <= 1")
    if num_subsets < 1 or num_subsets * n > m:
        raise ValueError(f"K·r must be ≤ 1: K={num_subsets} subsets of n={n} patches exceed the {m} patches "
                         f"of a {grid}x{grid} grid; lower sampling.num_subsets or sampling.ratio")
    return n


def sparse_patch_sampling(grid: int, ratio: float, num_subsets: int, rng: np.random.Generator) -> np.ndarray:
    """View 1: ONE random permutation cut into K consecutive chunks of n (pitfall 4) -> int64 [K, n]."""
    n = num_kept(grid, ratio, num_subsets)
    perm = rng.permutation(grid * grid)
    return perm[: num_subsets * n].reshape(num_subsets, n).astype(np.int64)


def cell_edges(box, grid: int, flipped: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel edges (y0, y1 per row; x0, x1 per column index) of a view's grid in original-image coordinates.

    A horizontally flipped view shows original column G-1-col at tensor column col, so its column
    index maps to the mirrored geometric column (the flip-aware fix of Q1).
    """
    i, j, h, w = (float(v) for v in box)
    rows = np.arange(grid, dtype=np.float64)
    cols = rows[::-1] if flipped else rows
    y0 = i + rows * h / grid
    x0 = j + cols * w / grid
    return y0, y0 + h / grid, x0, x0 + w / grid


def _overlap_1d(a0, a1, b0, b1) -> np.ndarray:
    """[len(a), len(b)] lengths of interval intersections."""
    return np.clip(np.minimum(a1[:, None], b1[None]) - np.maximum(a0[:, None], b0[None]), 0.0, None)


def non_overlap_ratio(box1, box2, idx1: np.ndarray, grid: int, flip1: bool = False, flip2: bool = False
                      ) -> np.ndarray:
    """u_c = 1 − Σ_{q∈I1} area(cell_c ∩ patch_q) / area(cell_c) for every view-2 cell (spec §2.2 step 3).

    idx1: [n] or [K, n] view-1 indices -> u: [M] or [K, M]. Rectangle areas separate into row and
    column overlaps, so the (cells × patches) sum is Iy · mask1 · Ixᵀ on the G×G grid (pitfall 13).
    """
    idx1 = np.asarray(idx1)
    single = idx1.ndim == 1
    idx1 = idx1.reshape(1, -1) if single else idx1
    y0a, y1a, x0a, x1a = cell_edges(box1, grid, flip1)
    y0b, y1b, x0b, x1b = cell_edges(box2, grid, flip2)
    iy = _overlap_1d(y0b, y1b, y0a, y1a)  # [rows2, rows1]
    ix = _overlap_1d(x0b, x1b, x0a, x1a)  # [cols2, cols1]
    mask = np.zeros((idx1.shape[0], grid * grid))
    np.put_along_axis(mask, idx1, 1.0, axis=1)
    covered = iy[None] @ mask.reshape(-1, grid, grid) @ ix.T[None]
    cell_area = (float(box2[2]) / grid) * (float(box2[3]) / grid)
    u = 1.0 - covered.reshape(idx1.shape[0], -1) / cell_area
    u[u < U_EPS] = 0.0
    return u[0] if single else u


def non_overlap_ratio_loop(box1, box2, idx1, grid: int, flip1: bool = False, flip2: bool = False) -> np.ndarray:
    """The same quantity rectangle by rectangle (a readable reference for the tests)."""
    i1, j1, h1, w1 = (float(v) for v in box1)
    i2, j2, h2, w2 = (float(v) for v in box2)
    u = np.ones(grid * grid)
    for c in range(grid * grid):
        r2, c2 = divmod(c, grid)
        g2 = grid - 1 - c2 if flip2 else c2
        cy0, cx0 = i2 + r2 * h2 / grid, j2 + g2 * w2 / grid
        cy1, cx1 = cy0 + h2 / grid, cx0 + w2 / grid
        covered = 0.0
        for q in np.asarray(idx1).tolist():
            r1, c1 = divmod(int(q), grid)
            g1 = grid - 1 - c1 if flip1 else c1
            py0, px0 = i1 + r1 * h1 / grid, j1 + g1 * w1 / grid
            py1, px1 = py0 + h1 / grid, px0 + w1 / grid
            covered += max(0.0, min(cx1, px1) - max(cx0, px0)) * max(0.0, min(cy1, py1) - max(cy0, py0))
        u[c] = 1.0 - covered / ((h2 / grid) * (w2 / grid))
        if u[c] < U_EPS:
            u[c] = 0.0
    return u


def selection_weights(u: np.ndarray, power: float) -> np.ndarray:
    """Unnormalised p_c ∝ u_c^γ (pitfall 3). numpy's 0**0 = 1, so γ = 0 is uniform over all cells."""
    return np.power(u, power)


def weighted_sample_without_replacement(weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n distinct indices per row of weights [K, M], drawn like successive categorical draws ∝ weights.

    Exponential-race keys log(U)/w (Efraimidis–Spirakis) give that distribution in one vectorised
    top-n. If a row has fewer than n positive weights, ε is added to every cell first (guard of Q8).
    """
    w = np.array(weights, dtype=np.float64, copy=True)
    if w.ndim == 1:
        return weighted_sample_without_replacement(w[None], n, rng)[0]
    short = (w > 0).sum(1) < n
    if short.any():
        w[short] += 1e-6 * max(float(w[short].max()), 1.0)
    logu = np.log(rng.random(w.shape))
    with np.errstate(divide="ignore"):
        keys = np.where(w > 0, logu / np.where(w > 0, w, 1.0), -np.inf)
    top = np.argpartition(-keys, n - 1, axis=1)[:, :n]
    return top.astype(np.int64)


def selective_patch_sampling(box1, box2, idx1: np.ndarray, grid: int, power: float, rng: np.random.Generator,
                             flip1: bool = False, flip2: bool = False) -> np.ndarray:
    """View 2: for each view-1 subset, n cells drawn ∝ (non-overlap)^γ without replacement -> [K, n]."""
    idx1 = np.atleast_2d(idx1)
    u = non_overlap_ratio(box1, box2, idx1, grid, flip1, flip2)
    return weighted_sample_without_replacement(selection_weights(u, power), idx1.shape[1], rng)


def asymmetric_patch_sampling(box1, box2, flip1: bool, flip2: bool, grid: int, ratio: float, num_subsets: int,
                              power: float, rng: np.random.Generator, flip_aware: bool = True
                              ) -> tuple[np.ndarray, np.ndarray]:
    """(I1, I2), both int64 [K, n]. flip_aware=False reproduces the official flip-blind geometry (Q1)."""
    idx1 = sparse_patch_sampling(grid, ratio, num_subsets, rng)
    f1, f2 = (flip1, flip2) if flip_aware else (False, False)
    idx2 = selective_patch_sampling(box1, box2, idx1, grid, power, rng, f1, f2)
    return idx1, idx2


def symmetric_patch_sampling(grid: int, ratio: float, num_subsets: int, rng: np.random.Generator
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Report-only ablation: each view keeps its own independent sparse subsets."""
    return (sparse_patch_sampling(grid, ratio, num_subsets, rng),
            sparse_patch_sampling(grid, ratio, num_subsets, rng))


def overlap_fraction(box1, box2, idx1: np.ndarray, idx2: np.ndarray, grid: int, flip1: bool = False,
                     flip2: bool = False) -> float:
    """Mean fraction of the selected view-2 area covered by the selected view-1 patches (true geometry)."""
    idx1, idx2 = np.atleast_2d(idx1), np.atleast_2d(idx2)
    cov = 1.0 - non_overlap_ratio(box1, box2, idx1, grid, flip1, flip2)
    return float(np.take_along_axis(cov, idx2, axis=1).mean())


def random_resized_crop_box(height: int, width: int, scale=(0.15, 1.0), ratio=(3 / 4, 4 / 3),
                            rng: np.random.Generator | None = None) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box algorithm (10 tries, then a centre crop), on a numpy RNG."""
    rng = rng or np.random.default_rng()
    area = height * width
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_r))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(rng.integers(0, height - h + 1))
            j = int(rng.integers(0, width - w + 1))
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w
