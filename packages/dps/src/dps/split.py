"""Chronological splits and fixed evaluation negatives (spec §3.2, pitfalls 6–7).

- `unique_timestamp_split` (DPS, default): train t < ts[int(0.70|ts|)], val < ts[int(0.85|ts|)], test the rest,
  over the sorted *unique* timestamps.
- `quantile_split` (PyG / DyGLib): event-time quantiles, train t ≤ q_0.70 inclusive — identical to
  `TemporalData.train_val_test_split`.
- `transductive_filter`: drop val/test events with an endpoint unseen in training.
- `new_node_split`: DyGLib-style inductive setting (non-paper extra): a fraction of the nodes seen after the
  training period are held out: their events leave the training set and the training neighbour index;
  inductive evaluation keeps the events touching them.
- `eval_negatives`: one negative per positive, fixed by a seed; random / historical / inductive strategies.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from tenfold.errors import DataError

__all__ = ["Split", "unique_timestamp_split", "quantile_split", "transductive_filter", "new_node_split",
           "node_task_split",
           "eval_negatives"]


@dataclasses.dataclass
class Split:
    """Boolean masks over the event stream; `graph` marks the events that form the neighbour index."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    graph: torch.Tensor
    train_graph: torch.Tensor | None = None  # events of the training neighbour index (None: `graph`)
    held_out: torch.Tensor | None = None  # inductive setting: the held-out node ids

    def counts(self) -> dict:
        return {k: int(getattr(self, k).sum()) for k in ("train", "val", "test", "graph")}


def unique_timestamp_split(t: torch.Tensor, train_frac: float = 0.70, val_frac: float = 0.15) -> Split:
    ts = torch.unique(t)
    train_ts = ts[min(int((train_frac) * len(ts)), len(ts) - 1)]
    val_ts = ts[min(int((train_frac + val_frac) * len(ts)), len(ts) - 1)]
    train = t < train_ts
    val = (t >= train_ts) & (t < val_ts)
    test = t >= val_ts
    return Split(train, val, test, torch.ones_like(train))


def quantile_split(t: torch.Tensor, val_ratio: float = 0.15, test_ratio: float = 0.15) -> Split:
    val_time, test_time = np.quantile(t.cpu().numpy(), [1.0 - val_ratio - test_ratio, 1.0 - test_ratio])
    n = t.numel()
    val_idx, test_idx = int((t <= val_time).sum()), int((t <= test_time).sum())
    ar = torch.arange(n)
    return Split(ar < val_idx, (ar >= val_idx) & (ar < test_idx), ar >= test_idx, torch.ones(n, dtype=torch.bool))


def node_task_split(t: torch.Tensor, train_frac: float = 0.70, val_frac: float = 0.15) -> Split:
    """Official node-task split (`fusion_node.py`): val_time, test_time = quantiles of t (linear);
    train t < val_time, val val_time < t ≤ test_time, test t > test_time (events at exactly val_time unused)."""
    val_time, test_time = np.quantile(t.cpu().numpy(), [train_frac, train_frac + val_frac])
    return Split(t < val_time, (t > val_time) & (t <= test_time), t > test_time, torch.ones_like(t, dtype=torch.bool))


def _seen(src, dst, mask, num_nodes):
    seen = torch.zeros(num_nodes + 1, dtype=torch.bool)
    seen[src[mask]] = True
    seen[dst[mask]] = True
    return seen


def transductive_filter(src, dst, split: Split, num_nodes: int) -> Split:
    """Val/test events with an endpoint unseen in training are dropped from evaluation *and* from the
    neighbour graph (the official pipeline writes the filtered files and builds the graph from them)."""
    seen = _seen(src, dst, split.train, num_nodes)
    ok = seen[src] & seen[dst]
    val, test = split.val & ok, split.test & ok
    return Split(split.train, val, test, split.train | val | test)


def new_node_split(src, dst, split: Split, num_nodes: int, frac: float = 0.1, seed: int = 0) -> tuple[Split, Split]:
    """Inductive setting: hold out `frac` of the nodes that appear after the training period. Every event
    touching a held-out node leaves the training set *and* the training neighbour index (`train_graph`), so
    these nodes occur in no training neighbourhood and get no gradient; evaluation queries the full graph
    (strictly before t), where they are nodes the model has never trained on.
    Returns (transductive-style split with the reduced train set and index, inductive split: val/test events
    touching a held-out node)."""
    later = torch.unique(torch.cat([src[~split.train], dst[~split.train]]))
    g = torch.Generator().manual_seed(seed)
    n_new = max(1, int(frac * later.numel()))
    new = later[torch.randperm(later.numel(), generator=g)[:n_new]]
    is_new = torch.zeros(num_nodes + 1, dtype=torch.bool)
    is_new[new] = True
    touches = is_new[src] | is_new[dst]
    train = split.train & ~touches
    held = torch.sort(new).values
    base = Split(train, split.val, split.test, split.graph, split.graph & ~touches, held)
    ind = Split(train, split.val & touches, split.test & touches, split.graph, split.graph & ~touches, held)
    return base, ind


def eval_negatives(src, dst, mask, candidates: torch.Tensor, strategy: str = "random", seed: int = 42,
                   train_mask: torch.Tensor | None = None) -> torch.Tensor:
    """One negative destination per positive event in `mask` (≠ its positive destination).

    random: uniform over `candidates` (item side for bipartite graphs, else all train nodes);
    historical: a destination u interacted with during training (DyGLib's hard negatives), random if none;
    inductive: a destination of an evaluation edge never seen in training, random if none."""
    if candidates.numel() < 2:
        raise DataError("need at least two candidate destinations to draw evaluation negatives")
    rng = np.random.RandomState(seed)
    s, d = src[mask].numpy(), dst[mask].numpy()
    cand = np.sort(candidates.numpy())
    neg = cand[rng.randint(0, len(cand), len(d))]
    clash = neg == d
    while clash.any():  # redraw the (rare) collisions with the positive
        neg[clash] = cand[rng.randint(0, len(cand), int(clash.sum()))]
        clash = neg == d
    if strategy == "random":
        return torch.from_numpy(neg)
    if train_mask is None:
        raise ValueError(f"strategy {strategy!r} needs train_mask")
    ts, td = src[train_mask].numpy(), dst[train_mask].numpy()
    if strategy == "historical":
        pools: dict[int, np.ndarray] = {}
        order = np.argsort(ts, kind="stable")
        us, starts = np.unique(ts[order], return_index=True)
        for u, a, b in zip(us, starts, np.r_[starts[1:], len(order)]):
            pools[int(u)] = np.unique(td[order[a:b]])
        for i in range(len(d)):
            p = pools.get(int(s[i]))
            if p is not None:
                p = p[p != d[i]]
                if p.size:
                    neg[i] = p[rng.randint(p.size)]
        return torch.from_numpy(neg)
    if strategy == "inductive":
        # destinations of evaluation edges whose (src, dst) pair never occurs in training; vectorised, and the
        # draws are the same as one randint per event over "new_dst without the positive" (same RNG stream)
        m = int(max(src.max(), dst.max())) + 1
        seen = np.unique(ts.astype(np.int64) * m + td)
        fresh = ~np.isin(s.astype(np.int64) * m + d, seen)
        new_dst = np.unique(d[fresh])
        new_dst = new_dst[new_dst > 0]
        if new_dst.size:
            q = np.searchsorted(new_dst, d)
            has = new_dst[np.minimum(q, new_dst.size - 1)] == d  # the positive is among them: one fewer choice
            high = new_dst.size - has
            ok = high > 0
            idx = rng.randint(0, high[ok])
            neg[ok] = new_dst[idx + (has[ok] & (idx >= q[ok]))]
        return torch.from_numpy(neg)
    raise ValueError(f"unknown negative strategy {strategy!r} (random, historical, inductive)")
