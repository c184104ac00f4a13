"""Neighbour samplers over a `TemporalCSR`, all vectorised over a batch of queries (u, t).

Every sampler returns (neighbour ids, edge ids, times), each [B, K], chronological, zero-padded at the end
(padding id 0 is masked in attention). Histories shorter than K are returned whole (TDS / GAS / recent).

- `UniformSampler`: TGAT's uniform sampling *with replacement*, re-sorted by time (baseline, GAS pretrain).
- `RecentSampler`: the K most recent events (baseline).
- `TimeDecaySampler` (TDS, §2.2): K distinct picks with p_i ∝ exp(α_u τ_i) via Gumbel-top-K (same law as
  numpy's successive sampling without replacement); `cache_mode="frozen"` keeps the first draw per
  (u, r) forever (official behaviour, pitfall 4), "resample" draws afresh each query.
- `TableSampler` (GAS lookup, §2.3 step 3): a precomputed top-K table per (u, r).
Tables and caches are indexed by slot(u, r) = offset[u] + u + r, a dense index over all (node, prefix) keys.
"""
from __future__ import annotations

import torch
from tenfold.errors import DataError

from .tcsr import TemporalCSR

__all__ = ["UniformSampler", "RecentSampler", "TimeDecaySampler", "TableSampler", "build_sampler", "pyg_subgraph"]


def _head(csr: TemporalCSR, nodes, r, k):
    """Relative positions 0..K-1 with validity (< r): 'all of a short history, padded at the end'."""
    ar = torch.arange(k, device=csr.device)
    return ar.expand(nodes.numel(), k).clone(), ar[None, :] < r[:, None]


class _Sampler:
    name = "base"

    def __init__(self, csr: TemporalCSR, k: int):
        self.csr, self.k = csr, int(k)

    def __call__(self, nodes: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None):
        nodes = nodes.to(self.csr.device).long()
        start, r = self.csr.prefix(nodes, t)
        rel, valid = self.select(nodes, r, generator)
        return self.csr.gather(start[:, None] + rel, valid)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, sd: dict) -> None:
        pass


class UniformSampler(_Sampler):
    name = "uniform"

    def select(self, nodes, r, generator):
        u = torch.rand(nodes.numel(), self.k, generator=generator, device=self.csr.device)
        rel = torch.sort((u * r[:, None]).long(), dim=1).values  # u < 1, so truncation = floor < r
        return rel, (r > 0)[:, None].expand(-1, self.k)


class RecentSampler(_Sampler):
    name = "recent"

    def select(self, nodes, r, generator):
        rel, valid = _head(self.csr, nodes, r, self.k)
        return rel + torch.clamp(r - self.k, min=0)[:, None], valid


class _SlotSampler(_Sampler):
    """Shared logic: r < K → whole history; r ≥ K → a K-row per slot(u, r)."""

    def slots(self, nodes, r):
        return self.csr.offset[nodes] + nodes + r

    def select(self, nodes, r, generator):
        rel, valid = _head(self.csr, nodes, r, self.k)
        big = r >= self.k
        if bool(big.any()):
            rel[big] = self.rows(nodes[big], r[big], generator)
        return rel, valid


class TimeDecaySampler(_SlotSampler):
    """TDS. `alpha`: [N+1] per-node decay rates; τ = (t − t_min) / time_scale (min-max normalised)."""

    name = "tds"

    def __init__(self, csr: TemporalCSR, k: int, alpha: torch.Tensor, t_min: float, time_scale: float,
                 cache_mode: str = "frozen", chunk_elems: int = 1 << 22):
        super().__init__(csr, k)
        if cache_mode not in ("frozen", "resample"):
            raise ValueError(f"cache_mode must be 'frozen' or 'resample', got {cache_mode!r}")
        self.alpha = alpha.to(csr.device, torch.float64)
        self.t_min, self.time_scale = float(t_min), float(time_scale) if time_scale > 0 else 1.0
        self.cache_mode, self.chunk_elems = cache_mode, chunk_elems
        if cache_mode == "frozen":
            self.cache = torch.zeros(csr.num_slots, self.k, dtype=torch.int32, device=csr.device)
            self.filled = torch.zeros(csr.num_slots, dtype=torch.bool, device=csr.device)

    def draw(self, nodes, r, generator):
        """Gumbel-top-K over each full history: K distinct indices, sorted by time. Queries are processed in
        order of history length, in chunks of bounded padded size, so the work is ≈ Σ r rather than B·max r."""
        out = torch.empty(nodes.numel(), self.k, dtype=torch.long, device=self.csr.device)
        if nodes.numel() == 0:
            return out
        order = torch.argsort(r, stable=True)
        rs = r[order]
        n, s = nodes.numel(), 0
        while s < n:
            e = min(n, s + max(1, self.chunk_elems // max(int(rs[s]), 1)))
            # length buckets (max r ≤ 2·min r): padding wastes at most half of each chunk
            e = min(e, max(s + 1, int(torch.searchsorted(rs, 2 * max(int(rs[s]), 16), right=True))))
            while e - s > 1 and (e - s) * int(rs[e - 1]) > self.chunk_elems:
                e = s + (e - s) // 2
            w = max(int(rs[e - 1]), 1)
            idx = order[s:e]
            pos, valid = self.csr.window(nodes[idx], r[idx], w)
            tau = ((self.csr.ts[pos] - self.t_min) / self.time_scale).float()
            u = torch.rand(e - s, w, generator=generator, device=self.csr.device)
            g = -torch.log(-torch.log(u.clamp_min(1e-20)))
            logits = (self.alpha[nodes[idx]].float()[:, None] * tau + g).masked_fill(~valid, float("-inf"))
            out[idx] = torch.sort(torch.topk(logits, self.k, dim=1).indices, dim=1).values
            s = e
        return out

    def rows(self, nodes, r, generator):
        if self.cache_mode == "resample":
            return self.draw(nodes, r, generator)
        slots = self.slots(nodes, r)
        uniq, inv = torch.unique(slots, return_inverse=True)
        first = torch.zeros(uniq.numel(), dtype=torch.long, device=slots.device)
        first.scatter_(0, inv.flip(0), torch.arange(slots.numel() - 1, -1, -1, device=slots.device))
        need = ~self.filled[uniq]
        if bool(need.any()):
            idx = first[need]
            self.cache[uniq[need]] = self.draw(nodes[idx], r[idx], generator).int()
            self.filled[uniq[need]] = True
        return self.cache[slots].long()

    def state_dict(self) -> dict:
        if self.cache_mode == "frozen":  # part of the training state: exact resume needs the same frozen draws
            return {"cache": self.cache.cpu().clone(), "filled": self.filled.cpu().clone()}
        return {}

    def load_state_dict(self, sd: dict) -> None:
        if self.cache_mode == "frozen" and sd:
            self.cache.copy_(sd["cache"].to(self.cache.device))
            self.filled.copy_(sd["filled"].to(self.filled.device))


class TableSampler(_SlotSampler):
    """GAS lookup: `table[slot(u, r)]` holds the precomputed top-K relative positions (sorted by time)."""

    name = "gas"

    def __init__(self, csr: TemporalCSR, k: int, table: torch.Tensor):
        super().__init__(csr, k)
        if table.shape != (csr.num_slots, self.k):
            raise DataError(f"GAS table shape {tuple(table.shape)} does not match the graph "
                             f"({csr.num_slots} slots × K={self.k}); recompute it for this graph")
        self.table = table.to(csr.device)

    def rows(self, nodes, r, generator):
        return self.table[self.slots(nodes, r)].long()


def build_sampler(kind: str, csr: TemporalCSR, k: int, **kw):
    if kind == "uniform":
        return UniformSampler(csr, k)
    if kind == "recent":
        return RecentSampler(csr, k)
    if kind == "tds":
        return TimeDecaySampler(csr, k, **kw)
    if kind == "gas":
        return TableSampler(csr, k, **kw)
    raise ValueError(f"unknown sampler {kind!r}")


def pyg_subgraph(sampler, nodes: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None):
    """One hop of any sampler as a PyG-style subgraph (like `torch_geometric.loader` outputs):
    returns (n_id, edge_index, e_id, t_edge) where n_id lists the global ids (roots first, then new
    neighbours), edge_index [2, M] holds local (neighbour -> root) indices, e_id the global edge ids and t_edge
    the neighbour-event times; padding is dropped. Feed it to any PyG message-passing layer."""
    nb, e, ts = sampler(nodes, t, generator)
    nodes = nodes.to(nb.device).long()
    keep = nb != 0
    rows = torch.arange(nodes.numel(), device=nb.device)[:, None].expand_as(nb)[keep]
    n_id, inv = torch.unique(torch.cat([nodes, nb[keep]]), return_inverse=True)
    # order: roots first (in their given order), then the other neighbours
    is_root = torch.zeros(n_id.numel(), dtype=torch.bool, device=nb.device)
    is_root[inv[: nodes.numel()]] = True
    order = torch.cat([_first_seen(inv[: nodes.numel()]),
                       torch.nonzero(~is_root).squeeze(1)])
    remap = torch.empty_like(order)
    remap[order] = torch.arange(order.numel(), device=nb.device)
    local = remap[inv]
    edge_index = torch.stack([local[nodes.numel():], local[rows]])
    return n_id[order], edge_index, e[keep], ts[keep]


def _first_seen(x: torch.Tensor) -> torch.Tensor:
    """Unique values of x in order of first appearance."""
    uniq, inv = torch.unique(x, return_inverse=True)
    first = torch.full((uniq.numel(),), x.numel(), dtype=torch.long, device=x.device)
    first.scatter_reduce_(0, inv, torch.arange(x.numel(), device=x.device), reduce="amin")
    return uniq[torch.argsort(first)]
