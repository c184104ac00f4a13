"""Per-node time-decay rates α_u by maximum likelihood on repeated interactions (spec §2.2, `optimal_alpha.py`).

For node u with training history (v_1, τ_1) … (v_n, τ_n) (τ min-max normalised), positions S_u (all if
n ≤ max_terms, else max_terms drawn with replacement) and j(i) = the latest m < i with v_m = v_i:

    L_u(α) = Σ_{i∈S_u, j(i) exists} [ log Σ_{m<i} exp(α τ_m) − α τ_{j(i)} ],   0 ≤ α ≤ 100,

convex in α. `fit_alpha` solves every node at once by bisection on the derivative; `fit_alpha_terms` is the
per-node scipy bounded scalar minimiser it is tested against (the official cvxpy/ECOS is not a dependency).
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


def _term_sets(owner, deg, prev, max_terms, rng, n_nodes):
    """Global positions of every node's terms (i, j(i)): all positions with an earlier repeat when deg ≤ max_terms,
    else `max_terms` positions drawn with replacement. The draws are one vectorised randint over the nodes in
    ascending order: the same numbers as one `randint(0, n, max_terms)` per node (legacy RandomState)."""
    has_rep = np.bincount(owner[prev >= 0], minlength=n_nodes + 1) > 0
    cand = np.flatnonzero((deg >= 2) & has_rep)
    cand = cand[cand >= 1]
    off = np.r_[0, np.cumsum(deg)]
    small = cand[deg[cand] <= max_terms]
    big = cand[deg[cand] > max_terms]
    in_small = np.zeros(n_nodes + 1, dtype=bool)
    in_small[small] = True
    pos_small = np.flatnonzero(in_small[owner] & (prev >= 0))
    draws = rng.randint(0, np.repeat(deg[big], max_terms)) if big.size else np.zeros(0, dtype=np.int64)
    pos_big = np.repeat(off[big], max_terms) + draws
    pos_big = pos_big[prev[pos_big] >= 0]
    pos = np.r_[pos_small, pos_big].astype(np.int64)
    return pos, prev[pos]


def fit_alpha(csr: TemporalCSR, t_min: float, time_scale: float, max_terms: int = 100, bounds=(0.0, 100.0),
              fallback: float = 50.0, xatol: float = 1e-4, seed: int = 0,
              chunk_elems: int = 1 << 22) -> tuple[torch.Tensor, dict]:
    """α for every node of a (training-graph) CSR, all nodes at once. Returns ([N+1] float64 tensor, stats).

    L_u is convex, so its minimiser on [lo, hi] is found by bisection on the sign of
    L_u'(α) = Σ_terms (E_{softmax(α τ) over m<i}[τ_m] − τ_{j(i)}), evaluated for every node together on padded
    [nodes, history] blocks (width buckets, ≤ chunk_elems entries each): hi when L'(hi) ≤ 0 (which includes a flat
    objective, where scipy's bounded minimiser also returns ≈ hi), lo when L'(lo) ≥ 0, else the midpoint of a
    bracket narrower than xatol (the scipy solver of `fit_alpha_terms` agrees within ≈ xatol)."""
    nbr = csr.nbr.cpu().numpy()
    off = csr.offset.cpu().numpy()[: csr.num_nodes + 2]
    deg = np.diff(off)
    n = csr.num_nodes
    owner = np.repeat(np.arange(n + 1), deg)
    tau = (csr.ts.cpu().numpy() - t_min) / (time_scale if time_scale > 0 else 1.0)
    prev = previous_occurrence(owner, nbr)
    rng = np.random.RandomState(seed)
    alpha = np.full(n + 1, float(fallback))
    tpos, tprev = _term_sets(owner, deg, prev, max_terms, rng, n)
    nodes = np.unique(owner[tpos])
    if nodes.size:
        alpha[nodes] = _bisect(tau, off, owner, nodes, tpos, tprev, bounds, xatol, chunk_elems)
    fitted = int(nodes.size)
    stats = {"nodes_fitted": fitted, "nodes_fallback": n - fitted,
             "alpha_median_fitted": float(np.median(alpha[nodes])) if fitted else None}
    return torch.from_numpy(alpha), stats


def _bisect(tau, off, owner, nodes, tpos, tprev, bounds, xatol, chunk_elems):
    deg = off[nodes + 1] - off[nodes]
    order = np.argsort(deg, kind="stable")
    row_of = np.full(off.size, -1)
    blocks = []  # (node rows, padded positions, mask, term row, term local i, term τ_j)
    s = 0
    while s < order.size:  # width buckets: max width ≤ 2 × min width, ≤ chunk_elems entries
        w = int(deg[order[s]])
        e = int(np.searchsorted(deg[order], 2 * w, side="right"))
        e = max(s + 1, min(e, s + max(1, chunk_elems // max(int(deg[order[e - 1]]), 1))))
        rows = order[s:e]
        width = int(deg[rows].max())
        ar = np.arange(width)
        mask = ar[None, :] < deg[rows][:, None]
        pos = np.where(mask, off[nodes[rows]][:, None] + ar[None, :], 0)
        row_of[nodes[rows]] = np.arange(rows.size)
        sel = np.isin(owner[tpos], nodes[rows])
        trow = row_of[owner[tpos[sel]]]
        blocks.append((rows, np.where(mask, tau[pos], 0.0), mask, trow, tpos[sel] - off[owner[tpos[sel]]],
                       tau[tprev[sel]]))
        s = e

    def grad(a):
        g = np.zeros(nodes.size)
        for rows, tp, mask, trow, ti, tj in blocks:
            ar = a[rows][:, None]
            top = np.max(np.where(mask, tp, -np.inf), axis=1, keepdims=True)
            ex = np.where(mask, np.exp(ar * (tp - top)), 0.0)
            c1, c2 = np.cumsum(ex, 1), np.cumsum(ex * tp, 1)
            mean = c2[trow, ti - 1] / c1[trow, ti - 1]  # E over the prefix m < i
            g[rows] += np.bincount(trow, weights=mean - tj, minlength=rows.size)
        return g

    lo = np.full(nodes.size, float(bounds[0]))
    hi = np.full(nodes.size, float(bounds[1]))
    at_hi = grad(hi) <= 0
    at_lo = ~at_hi & (grad(lo) >= 0)
    open_ = ~(at_hi | at_lo)
    while open_.any() and float(np.max(hi[open_] - lo[open_])) > xatol:
        mid = (lo + hi) / 2
        up = grad(mid) > 0
        hi = np.where(open_ & up, mid, hi)
        lo = np.where(open_ & ~up, mid, lo)
    return np.where(at_hi, bounds[1], np.where(at_lo, bounds[0], (lo + hi) / 2))
