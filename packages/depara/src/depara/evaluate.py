"""Judging a transferability ranking against measured transfer: Spearman, Kendall, weighted tau,
top-1 hit, P@K / R@K (spec 3.1), and the random-score baseline."""
from __future__ import annotations

import numpy as np
import torch

from .method import rankdata

__all__ = ["SORT_GT", "TASKONOMY_TASKS", "spearman_rho", "kendall_tau", "weighted_tau", "precision_recall_at_k",
           "rank_metrics", "random_baseline"]

TASKONOMY_TASKS = ["autoencoder", "curvature", "denoise", "edge2d", "edge3d", "keypoint2d", "keypoint3d",
                   "colorization", "reshade", "rgb2depth", "rgb2mist", "rgb2sfnorm", "room_layout", "segment25d",
                   "segment2d", "vanishing_point", "segmentsemantic", "class_1000", "class_places",
                   "inpainting_whole"]

# prcurve/sort_gt.npy of the official code: row r ranks the sources of target r (first entry = the target).
SORT_GT = np.array([
    [0, 2, 19, 7, 14, 5, 18, 17, 1, 16, 4, 8, 6, 10, 13, 11, 9, 12, 3, 15],
    [1, 11, 9, 6, 10, 8, 4, 13, 19, 12, 15, 16, 17, 3, 2, 0, 5, 18, 14, 7],
    [2, 19, 0, 7, 14, 5, 18, 17, 16, 1, 8, 10, 4, 6, 13, 9, 11, 12, 3, 15],
    [3, 5, 0, 14, 2, 7, 19, 1, 6, 13, 16, 4, 17, 18, 11, 10, 8, 9, 12, 15],
    [4, 11, 6, 9, 1, 10, 8, 13, 12, 18, 16, 15, 14, 3, 2, 7, 5, 19, 0, 17],
    [5, 2, 0, 7, 14, 19, 17, 18, 3, 16, 1, 10, 6, 4, 8, 13, 11, 9, 12, 15],
    [6, 1, 11, 13, 4, 8, 10, 9, 14, 19, 2, 3, 5, 17, 0, 16, 18, 7, 15, 12],
    [8, 11, 10, 9, 4, 6, 1, 13, 12, 16, 15, 18, 3, 17, 5, 14, 7, 0, 2, 19],
    [9, 10, 8, 6, 11, 4, 1, 13, 16, 12, 18, 17, 14, 15, 7, 3, 2, 5, 0, 19],
    [10, 9, 8, 4, 6, 11, 1, 13, 16, 12, 18, 17, 15, 7, 14, 3, 2, 0, 5, 19],
    [11, 8, 4, 6, 1, 13, 10, 9, 12, 15, 3, 5, 14, 19, 16, 18, 0, 2, 7, 17],
    [12, 11, 15, 8, 4, 10, 9, 6, 1, 13, 18, 3, 16, 17, 7, 14, 5, 0, 19, 2],
    [13, 6, 11, 1, 4, 8, 10, 9, 3, 14, 5, 0, 2, 19, 16, 7, 18, 17, 12, 15],
    [14, 0, 5, 2, 7, 3, 19, 13, 18, 1, 16, 4, 17, 8, 10, 11, 6, 9, 12, 15],
    [15, 11, 12, 8, 4, 13, 6, 1, 9, 10, 3, 5, 18, 14, 16, 17, 19, 0, 7, 2],
    [16, 1, 11, 6, 8, 18, 4, 13, 10, 9, 17, 14, 7, 5, 2, 0, 3, 19, 12, 15],
    [17, 18, 16, 4, 1, 6, 11, 10, 13, 8, 12, 2, 7, 14, 19, 0, 5, 3, 15, 9],
    [18, 17, 16, 4, 1, 6, 11, 8, 10, 13, 7, 9, 12, 14, 5, 2, 0, 19, 3, 15]], dtype=np.int64)


def spearman_rho(x, y) -> float:
    """Spearman's rho with average ranks for ties; nan when either side is constant."""
    rx = rankdata(torch.as_tensor(np.asarray(x, dtype=np.float64)))
    ry = rankdata(torch.as_tensor(np.asarray(y, dtype=np.float64)))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(rx.norm() * ry.norm())
    return float((rx * ry).sum()) / den if den > 0 else float("nan")


def kendall_tau(x, y) -> float:
    """Kendall's tau-b (tie-corrected), O(n^2): the rankings here have tens of entries."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(len(x), 1)
    dx, dy = dx[iu], dy[iu]
    den = np.sqrt((dx != 0).sum() * (dy != 0).sum())
    return float((dx * dy).sum() / den) if den > 0 else float("nan")


def weighted_tau(x, y) -> float:
    """Weighted Kendall tau (hyperbolic weights on the top of the rankings), as LogME reports it."""
    from scipy import stats  # on use: a bare GPU node may lack scipy, and nothing else here needs it

    return float(stats.weightedtau(np.asarray(x, float), np.asarray(y, float)).statistic)


def precision_recall_at_k(S: np.ndarray, gt_order: np.ndarray, k: int, relevant: int = 5,
                          targets: np.ndarray | None = None, self_exclusion: str = "explicit") -> tuple[float, float]:
    """P@K and R@K of the rows of the affinity S [T, M] against ground-truth orders [T, M].

    Row r's target is `targets[r]` (default gt_order[r, 0]); it is excluded explicitly rather than by
    dropping the first sorted entry (the official code assumes the self-score is maximal; self_exclusion=
    "drop_first" reproduces that)."""
    S = np.asarray(S, dtype=np.float64)
    gt_order = np.asarray(gt_order)
    targets = gt_order[:, 0] if targets is None else np.asarray(targets)
    hits = 0
    for r in range(S.shape[0]):
        ranked = np.argsort(-S[r], kind="stable")
        order = list(ranked[1:]) if self_exclusion == "drop_first" else [j for j in ranked if j != targets[r]]
        gt = [j for j in gt_order[r] if j != targets[r]][:relevant]
        hits += len(set(order[:k]) & set(gt))
    return hits / (S.shape[0] * k), hits / (S.shape[0] * relevant)


def rank_metrics(scores: np.ndarray, truth: np.ndarray, k: int = 3) -> dict:
    """Per-target and mean ranking quality of `scores` [T, M] against measured transfer `truth` [T, M];
    NaN entries (e.g. the target itself) are left out of that row."""
    scores, truth = np.asarray(scores, float), np.asarray(truth, float)
    rows = []
    for s, t in zip(scores, truth):
        ok = ~(np.isnan(s) | np.isnan(t))
        s, t = s[ok], t[ok]
        kk = min(k, len(s))
        top_s, top_t = set(np.argsort(-s, kind="stable")[:kk]), set(np.argsort(-t, kind="stable")[:kk])
        rows.append({"spearman": spearman_rho(s, t), "kendall": kendall_tau(s, t), "weighted_tau": weighted_tau(s, t),
                     "top1_hit": float(np.argmax(s) == np.argmax(t)),
                     # ties in the truth (e.g. three sources at 100 %): any best source counts as a hit
                     "top1_hit_ties": float(t[np.argmax(s)] >= t.max()),
                     # regret: transfer lost by taking the top-scored source instead of the best one
                     "top1_regret": float(t.max() - t[np.argmax(s)]), f"p_at_{k}": len(top_s & top_t) / kk})
    mean = {key: float(np.nanmean([r[key] for r in rows])) for key in rows[0]}
    return {"mean": mean, "per_target": rows}


def random_baseline(truth: np.ndarray, draws: int = 200, seed: int = 0, k: int = 3) -> dict:
    """Expected metrics of uniformly random scores (mean over `draws` seeded draws)."""
    rng = np.random.default_rng(seed)
    truth = np.asarray(truth, float)
    acc = []
    for _ in range(draws):
        s = rng.random(truth.shape)
        s[np.isnan(truth)] = np.nan
        acc.append(rank_metrics(s, truth, k)["mean"])
    return {"mean": {key: float(np.mean([a[key] for a in acc])) for key in acc[0]}, "draws": draws}
