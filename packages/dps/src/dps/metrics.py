"""Link-prediction metrics (spec §3.2.6) and TGAT's early-stopping monitor.

AP is computed on **scores** (pitfall 8); the official code's AP on thresholded labels is available as
`ap_on_labels=True` for comparison only.
"""
from __future__ import annotations

import numpy as np

__all__ = ["roc_auc", "average_precision", "accuracy", "f1", "link_metrics", "EarlyStopMonitor", "mean_std"]


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann–Whitney AUC with average ranks for ties."""
    y, s = np.asarray(y).astype(bool), np.asarray(s, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):  # average ranks over runs of equal scores
        j = i
        while j + 1 < len(s) and ss[j + 1] == ss[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """AP = Σ_n (R_n − R_{n−1}) P_n over distinct score thresholds (descending)."""
    y, s = np.asarray(y).astype(np.float64), np.asarray(s, dtype=np.float64)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def accuracy(y, p) -> float:
    return float(np.mean((np.asarray(p) >= 0.5) == np.asarray(y).astype(bool)))


def f1(y, p) -> float:
    y, pred = np.asarray(y).astype(bool), np.asarray(p) >= 0.5
    tp = float(np.sum(pred & y))
    denom = float(np.sum(pred) + np.sum(y))
    return 2 * tp / denom if denom else 0.0


def link_metrics(y, prob, ap_on_labels: bool = False) -> dict:
    y, prob = np.asarray(y), np.asarray(prob)
    ap = average_precision(y, (prob >= 0.5).astype(np.float64)) if ap_on_labels else average_precision(y, prob)
    return {"acc": accuracy(y, prob), "f1": f1(y, prob), "auc": roc_auc(y, prob), "ap": ap}


class EarlyStopMonitor:
    """Stop after `patience` epochs without a relative improvement > `tol` over the best (TGAT rule)."""

    def __init__(self, patience: int = 3, tol: float = 1e-3, higher_better: bool = True):
        self.patience, self.tol, self.higher_better = patience, tol, higher_better
        self.num_round, self.epoch_count, self.best_epoch, self.last_best = 0, 0, 0, None

    def step(self, value: float) -> bool:
        v = value if self.higher_better else -value
        if self.last_best is None:
            self.last_best = v
        elif (v - self.last_best) / abs(self.last_best) > self.tol:
            self.last_best, self.num_round, self.best_epoch = v, 0, self.epoch_count
        else:
            self.num_round += 1
        self.epoch_count += 1
        return self.num_round >= self.patience

    def state_dict(self) -> dict:
        return dict(num_round=self.num_round, epoch_count=self.epoch_count, best_epoch=self.best_epoch,
                    last_best=self.last_best)

    def load_state_dict(self, sd: dict) -> None:
        self.__dict__.update(sd)


def mean_std(values) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0
