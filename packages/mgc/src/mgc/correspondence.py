"""Crop geometry and the multi-grained correspondence sampler (spec 2.1 steps 1-2, 2.2).

Boxes are `(x0, y0, w, h)` in original-image pixels. A view is the box resized to S x S; its
level grid has L x L cells, cell (i, j) (row i = y, counted in the *unflipped* crop) covering
`[x0 + j w/L, x0 + (j+1) w/L] x [y0 + i h/L, y0 + (i+1) h/L]`. Its index in the token/cell layout
is `i L + j`, or `i L + (L-1-j)` when the view is flipped (the image column is mirrored).

Everything is computed in original-image coordinates with float64 (pitfall 2), vectorised over
all L^2 x L^2 cell pairs (pitfall 14) instead of the reference's nested loops.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np

__all__ = ["box_iou", "sample_crop_box", "sample_view_boxes", "level_strides", "cell_rects", "flip_perm",
           "overlap_weights", "view1_lattice", "multigrain_correspondence", "OFFICIAL_STRIDE_RULES"]

# Per-level (r_row, r_col, lo_row, hi_row, lo_col, hi_col) of the official transform for levels
# {1, 2, 7} at 224 px / patch 16 (spec 2.2 table): s = clip(floor(IoU_v * r), lo, hi).
OFFICIAL_STRIDE_RULES = [[12, 8, 2, 8, 2, 6], [8, 4, 2, 4, 1, 3], [1, 1, 1, 1, 1, 1]]

_EPS = 1e-9


def box_iou(b1: Sequence[float], b2: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, w, h) boxes."""
    ix = max(0.0, min(b1[0] + b1[2], b2[0] + b2[2]) - max(b1[0], b2[0]))
    iy = max(0.0, min(b1[1] + b1[3], b2[1] + b2[3]) - max(b1[1], b2[1]))
    inter = ix * iy
    union = b1[2] * b1[3] + b2[2] * b2[3] - inter
    return inter / union if union > 0 else 0.0


def sample_crop_box(width: int, height: int, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3),
                    rng: random.Random | None = None) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box (10 tries, then a centre crop), as integer (x0, y0, w, h)."""
    rng = rng or random
    area = width * height
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        ar = math.exp(rng.uniform(*log_r))
        w = int(round(math.sqrt(target * ar)))
        h = int(round(math.sqrt(target / ar)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def sample_view_boxes(width: int, height: int, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), min_iou: float = 0.2,
                      max_tries: int = 1000, rng: random.Random | None = None):
    """Box of view 1, then the first box of view 2 with IoU > min_iou (spec 2.1, pitfall 3).

    The reference loops without bound; here after `max_tries` rejections view 2 is the full image
    if that overlaps enough, else a copy of view 1's box."""
    b1 = sample_crop_box(width, height, scale, ratio, rng)
    for _ in range(max_tries):
        b2 = sample_crop_box(width, height, scale, ratio, rng)
        if box_iou(b1, b2) > min_iou:
            return b1, b2
    full = (0, 0, width, height)
    return b1, (full if box_iou(b1, full) > min_iou else b1)


def level_strides(iou: float, rule: Sequence[float] | None) -> tuple[int, int]:
    """(s_row, s_col) = clip(floor(IoU_v * r), lo, hi); `None` means dense (1, 1)."""
    if rule is None:
        return 1, 1
    r_row, r_col, lo_row, hi_row, lo_col, hi_col = rule
    s_row = int(min(max(math.floor(iou * r_row), lo_row), hi_row))
    s_col = int(min(max(math.floor(iou * r_col), lo_col), hi_col))
    return max(s_row, 1), max(s_col, 1)


def cell_rects(box: Sequence[float], L: int) -> np.ndarray:
    """[L*L, 4] (x0, y0, x1, y1) footprints of a view's cells in original pixels, row-major, unflipped."""
    x0, y0, w, h = (float(v) for v in box)
    xs = x0 + np.arange(L + 1, dtype=np.float64) * (w / L)
    ys = y0 + np.arange(L + 1, dtype=np.float64) * (h / L)
    i, j = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    i, j = i.ravel(), j.ravel()
    return np.stack([xs[j], ys[i], xs[j + 1], ys[i + 1]], 1)


def flip_perm(L: int, flipped: bool) -> np.ndarray:
    """Unflipped cell index (i L + j) -> index in the stored view's layout."""
    k = np.arange(L * L)
    if not flipped:
        return k
    i, j = k // L, k % L
    return i * L + (L - 1 - j)


def _interval_overlap(a0: float, a_len: float, b0: float, b_len: float, L: int) -> np.ndarray:
    """[L, L] lengths of overlap between the L equal sub-intervals of two 1-D intervals."""
    ea = a0 + np.arange(L + 1, dtype=np.float64) * (a_len / L)
    eb = b0 + np.arange(L + 1, dtype=np.float64) * (b_len / L)
    d = np.minimum(ea[1:, None], eb[None, 1:]) - np.maximum(ea[:-1, None], eb[None, :-1])
    d[d <= _EPS * (a_len + b_len) / L] = 0.0  # cells that only touch along an edge do not overlap
    return d


def overlap_weights(box1, box2, L: int, flip1: bool = False, flip2: bool = False) -> np.ndarray:
    """[L^2, L^2] w(c1, c2) = |c1 n c2| / (|c1| + |c2|) (a half-Dice, not IoU), indexed in the stored
    (possibly flipped) layouts of view 1 (rows) and view 2 (columns).

    Cells are products of row and column intervals, so the intersection area factorises into a
    y-overlap [L, L] times an x-overlap [L, L]; a flip mirrors the column axis of its view."""
    x1, y1, w1, h1 = (float(v) for v in box1)
    x2, y2, w2, h2 = (float(v) for v in box2)
    oy = _interval_overlap(y1, h1, y2, h2, L)
    ox = _interval_overlap(x1, w1, x2, w2, L)
    if flip1:
        ox = ox[::-1, :]
    if flip2:
        ox = ox[:, ::-1]
    inter = (oy[:, None, :, None] * ox[None, :, None, :]).reshape(L * L, L * L)
    return inter / ((w1 * h1 + w2 * h2) / (L * L))


def view1_lattice(box1, box2, L: int, strides: tuple[int, int]) -> np.ndarray:
    """Bool [L, L] (unflipped): view-1 cells touching the overlap O, every s_row-th row and s_col-th
    column of that range starting at the first (the reference's sparse sampling)."""
    x0, y0, w, h = (float(v) for v in box1)
    ox0, oy0 = max(x0, float(box2[0])), max(y0, float(box2[1]))
    ox1 = min(x0 + w, float(box2[0]) + float(box2[2]))
    oy1 = min(y0 + h, float(box2[1]) + float(box2[3]))
    mask = np.zeros((L, L), dtype=bool)
    if ox1 <= ox0 or oy1 <= oy0:
        return mask
    # cell units of view 1; `last` is ceil(e) - 1, i.e. floor(e) - 1 on an exact cell edge
    i0, i1 = math.floor((oy0 - y0) / h * L + _EPS), math.ceil((oy1 - y0) / h * L - _EPS) - 1
    j0, j1 = math.floor((ox0 - x0) / w * L + _EPS), math.ceil((ox1 - x0) / w * L - _EPS) - 1
    rows = np.arange(max(i0, 0), min(i1, L - 1) + 1, strides[0])
    cols = np.arange(max(j0, 0), min(j1, L - 1) + 1, strides[1])
    mask[np.ix_(rows, cols)] = True
    return mask


def multigrain_correspondence(box1, box2, flip1: bool, flip2: bool, L: int, K: int,
                              stride_rule: Sequence[float] | None = None):
    """The K corresponding cell pairs of one level (spec 2.2).

    Candidates are every (c1, c2) with w > 0 whose view-1 cell lies on the strided lattice over the
    overlap; the K with the largest w are kept (ties: row-major order of (c1, c2)), the rest padded
    with (0, 0, w = 0). Returns idx1, idx2 (int64 [K], stored layouts) and w (float32 [K]), sorted by
    decreasing w."""
    strides = level_strides(box_iou(box1, box2), stride_rule)
    lattice = view1_lattice(box1, box2, L, strides).ravel()
    w = overlap_weights(box1, box2, L)  # unflipped frames; flips are applied to the chosen indices
    w = np.where(lattice[:, None], w, 0.0)
    flat = w.ravel()
    cand = np.flatnonzero(flat > 0)
    order = cand[np.argsort(-flat[cand], kind="stable")][:K]
    idx1 = np.zeros(K, dtype=np.int64)
    idx2 = np.zeros(K, dtype=np.int64)
    ww = np.zeros(K, dtype=np.float32)
    n = len(order)
    idx1[:n] = flip_perm(L, flip1)[order // (L * L)]
    idx2[:n] = flip_perm(L, flip2)[order % (L * L)]
    ww[:n] = flat[order]
    return idx1, idx2, ww
