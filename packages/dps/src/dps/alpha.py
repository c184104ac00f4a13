"""Per-node time-decay rates α_u by maximum likelihood on repeated interactions (spec §2.2, `optimal_alpha.py`).

For node u with training history (v_1, τ_1) … (v_n, τ_n) (τ min-max normalised), positions S_u (all if
n ≤ max_terms, else max_terms drawn with replacement) and j(i) = the latest m < i with v_m = v_i:

    L_u(α) = Σ_{i∈S_u, j(i) exists} [ log Σ_{m<i} exp(α τ_m) − α τ_{j(i)} ],   0 ≤ α ≤ 100,

convex in α. Solved with scipy's bounded scalar minimiser (the official cvxpy/ECOS is not a dependency).
Nodes without any term get `fallback` (official: solver-dependent, ≈ 50).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from .tcsr import TemporalCSR

__all__ = ["alpha_objective", "previous_occurrence", "node_terms", "fit_alpha_terms", "fit_alpha"]


def alpha_objective(alpha: float, tau: np.ndarray, terms: np.ndarray, prev: np.ndarray) -> float:
    """L_u(α) for one node: `terms` are positions i, `prev` their j(i) (0-based, prefix = tau[:i])."""
    if len(terms) == 0:
        return 0.0
    # prefix log-sum-exp in one pass: cum[i-1] = log Σ_{m<i} exp(α τ_m)  (every term has i ≥ 1)
    cum = np.logaddexp.accumulate(alpha * tau[:int(terms.max())])
    return float(np.sum(cum[terms - 1] - alpha * tau[prev]))


def previous_occurrence(owner: np.ndarray, nbr: np.ndarray) -> np.ndarray:
    """For CSR entries (owner, nbr) in chronological order within owner: index of the latest earlier entry
    with the same (owner, nbr), else -1. One lexsort, no per-node loop."""
    m = owner.size
    order = np.lexsort((np.arange(m), nbr, owner))
    same = (owner[order][1:] == owner[order][:-1]) & (nbr[order][1:] == nbr[order][:-1])
    prev = np.full(m, -1, dtype=np.int64)
    prev[order[1:][same]] = order[:-1][same]
    return prev


def fit_alpha_terms(tau: np.ndarray, terms: np.ndarray, prev: np.ndarray, bounds=(0.0, 100.0),
                    fallback: float = 50.0, xatol: float = 1e-4) -> float:
    if len(terms) == 0:
        return float(fallback)
    try:
        res = minimize_scalar(alpha_objective, bounds=bounds, method="bounded", args=(tau, terms, prev),
                              options={"xatol": xatol})
        if not np.isfinite(res.x):
            return float(bounds[1])
        return float(res.x)
    except (ValueError, FloatingPointError):  # the official code also falls back to the upper bound
        return float(bounds[1])


def node_terms(pos_local: np.ndarray, prev_local: np.ndarray, n: int, max_terms: int, rng: np.random.RandomState):
    """The position set S_u and the j(i) of those positions that have an earlier occurrence."""
    s = np.arange(n) if n <= max_terms else rng.randint(0, n, max_terms)
    keep = prev_local[s] >= 0
    return s[keep], prev_local[s[keep]]


def fit_alpha(csr: TemporalCSR, t_min: float, time_scale: float, max_terms: int = 100, bounds=(0.0, 100.0),
              fallback: float = 50.0, xatol: float = 1e-4, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """α for every node of a (training-graph) CSR. Returns ([N+1] float64 tensor, stats)."""
    nbr = csr.nbr.cpu().numpy()
    off = csr.offset.cpu().numpy()
    owner = np.repeat(np.arange(csr.num_nodes + 1), np.diff(off))
    tau = (csr.ts.cpu().numpy() - t_min) / (time_scale if time_scale > 0 else 1.0)
    prev = previous_occurrence(owner, nbr)
    rng = np.random.RandomState(seed)
    alpha = np.full(csr.num_nodes + 1, float(fallback))
    fitted = 0
    for u in range(1, csr.num_nodes + 1):
        a, b = off[u], off[u + 1]
        if b - a < 2:
            continue
        pl = prev[a:b]
        if not (pl >= 0).any():
            continue
        terms, pj = node_terms(np.arange(b - a), np.where(pl >= 0, pl - a, -1), b - a, max_terms, rng)
        if len(terms) == 0:
            continue
        alpha[u] = fit_alpha_terms(tau[a:b], terms, pj, bounds, fallback, xatol)
        fitted += 1
    stats = {"nodes_fitted": fitted, "nodes_fallback": csr.num_nodes - fitted,
             "alpha_median_fitted": float(np.median(alpha[1:][alpha[1:] != fallback])) if fitted else None}
    return torch.from_numpy(alpha), stats
