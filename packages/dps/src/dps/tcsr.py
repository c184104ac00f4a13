"""Temporal neighbour index (spec §2.1): a temporal CSR over every node's incident events, built once with
vectorised tensor ops, answering batched strictly-before-t prefix queries with one `searchsorted`.

Edges are undirected for neighbourhoods: event i = (u, v, t) enters u's list as (v, i, t) and v's as (u, i, t).
Within a node, entries are in edge-id (= chronological) order. A query (u, t) sees the prefix
`[offset[u], offset[u] + r)` with r = #{events of u with time < t} (pitfall 1: same-time events excluded).
"""
from __future__ import annotations

import torch
from tenfold.errors import DataError

__all__ = ["TemporalCSR"]


class TemporalCSR:
    def __init__(self, src: torch.Tensor, dst: torch.Tensor, t: torch.Tensor, num_nodes: int,
                 eid: torch.Tensor | None = None, device: torch.device | str = "cpu"):
        src, dst, t = src.long().cpu(), dst.long().cpu(), t.double().cpu()
        e = int(src.numel())
        eid = torch.arange(1, e + 1) if eid is None else eid.long().cpu()
        self.num_nodes = int(num_nodes)
        if e and int(max(src.max(), dst.max())) > self.num_nodes:
            raise DataError(f"node id {int(max(src.max(), dst.max()))} exceeds num_nodes={self.num_nodes}")
        node = torch.cat([src, dst])
        # sort by (node, edge id, side): one stable key, no per-node Python loop
        side = torch.cat([torch.zeros(e, dtype=torch.long), torch.ones(e, dtype=torch.long)])
        order = torch.argsort(node * (2 * (int(eid.max()) + 1 if e else 1)) + 2 * torch.cat([eid, eid]) + side)
        node = node[order]
        self.nbr = torch.cat([dst, src])[order]
        self.eid = torch.cat([eid, eid])[order]
        self.ts = torch.cat([t, t])[order]
        counts = torch.bincount(node, minlength=self.num_nodes + 1)
        self.offset = torch.zeros(self.num_nodes + 2, dtype=torch.long)
        self.offset[1:] = torch.cumsum(counts, 0)
        self.degree = counts
        # globally sorted integer key node*stride + time value: a batched prefix search is one searchsorted.
        # Integer timestamps (seconds) are used directly; other timestamps go through their rank among the
        # unique times (one more searchsorted per query batch).
        self.times = torch.unique(t) if e else torch.zeros(1, dtype=torch.float64)
        span = float(self.times[-1] - self.times[0]) if e else 0.0
        self.integer_time = bool(e) and bool(torch.all(self.times == torch.round(self.times))) and \
            (span + 2) * (self.num_nodes + 1) < 2 ** 62
        if self.integer_time:
            self.t0 = float(self.times[0])
            self.stride = int(span) + 2
            self.key = node * self.stride + (self.ts - self.t0).long()
        else:
            self.stride = int(self.times.numel()) + 1
            self.key = node * self.stride + torch.searchsorted(self.times, self.ts)
        self.t_min = float(t.min()) if e else 0.0
        self.t_max = float(t.max()) if e else 0.0
        self.to(device)

    def to(self, device) -> TemporalCSR:
        self.device = torch.device(device)
        for k in ("nbr", "eid", "ts", "offset", "degree", "times", "key"):
            setattr(self, k, getattr(self, k).to(self.device))
        # gather tables with a trailing all-zero sentinel row: padding slots point at it, so a sample is
        # two plain gathers (no per-array masking)
        self.pad_pos = int(self.nbr.numel())
        zero = torch.zeros(1, dtype=torch.long, device=self.device)
        self._ne = torch.stack([torch.cat([self.nbr, zero]), torch.cat([self.eid, zero])], 1)
        self._ts = torch.cat([self.ts, zero.double()])
        return self

    @property
    def num_slots(self) -> int:
        """Number of (node, prefix length) keys: Σ_u (deg(u) + 1). Slot of (u, r) = offset[u] + u + r."""
        return int(self.nbr.numel()) + self.num_nodes + 1

    def check_nodes(self, nodes: torch.Tensor) -> None:
        if nodes.numel() and (int(nodes.min()) < 0 or int(nodes.max()) > self.num_nodes):
            bad = int(nodes.max()) if int(nodes.max()) > self.num_nodes else int(nodes.min())
            raise DataError(f"unknown node id {bad} (this graph has ids 1..{self.num_nodes}; 0 is padding)")

    def prefix(self, nodes: torch.Tensor, t: torch.Tensor):
        """(start, r): CSR offset of each node and r = its number of events strictly before the query time."""
        nodes = nodes.to(self.device).long()
        if self.device.type == "cpu":  # on accelerators this check would force a sync per query batch
            self.check_nodes(nodes)
        t = t.to(self.device, torch.float64)
        if self.integer_time:  # t_e < t  <=>  t_e < ceil(t) for integer t_e
            qrank = torch.clamp(torch.ceil(t - self.t0), 0, self.stride - 1).long()
        else:
            qrank = torch.searchsorted(self.times, t, side="left")
        end = torch.searchsorted(self.key, nodes * self.stride + qrank, side="left")
        start = self.offset.index_select(0, nodes.reshape(-1)).view(nodes.shape)
        return start, end - start

    def prefix_len(self, nodes: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.prefix(nodes, t)[1]

    def window(self, nodes: torch.Tensor, r: torch.Tensor, max_len: int | None = None):
        """Positions of each query's last min(r, W) history entries, W = max r (or `max_len`), as a padded
        [B, W] matrix plus a validity mask; entries are chronological, padding at the end."""
        w = int(r.max()) if r.numel() else 0
        if max_len is not None:
            w = min(w, int(max_len))
        w = max(w, 1)
        n = torch.clamp(r, max=w)
        start = self.offset[nodes] + r - n
        ar = torch.arange(w, device=self.device)
        valid = ar[None, :] < n[:, None]
        pos = torch.where(valid, start[:, None] + ar[None, :], torch.zeros_like(start)[:, None])
        return pos, valid

    def gather(self, pos: torch.Tensor, valid: torch.Tensor):
        """(neighbour ids, edge ids, times) at CSR positions, zero where not valid (padding id 0)."""
        p = torch.where(valid, pos, self.pad_pos)
        shape, p = p.shape, p.reshape(-1)
        # index_select, not advanced indexing: 3-4x faster on CPU for these flat row gathers
        ne = self._ne.index_select(0, p).view(*shape, 2)
        return ne[..., 0], ne[..., 1], self._ts.index_select(0, p).view(shape)

    def history(self, node: int, t: float):
        """One node's strict history (for inspection and tests)."""
        r = int(self.prefix_len(torch.tensor([node]), torch.tensor([t], dtype=torch.float64))[0])
        o = int(self.offset[node])
        return self.nbr[o:o + r], self.eid[o:o + r], self.ts[o:o + r]
