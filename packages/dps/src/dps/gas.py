"""Gumbel Attention Sampling (spec §2.3): a 1-layer, single-head TGAT with its own node table (pitfall 11),
pretrained on link prediction with uniform sampling, optionally Gumbel fine-tuned over full histories, then
frozen; its softmax attention over each node's *full* history prefix picks the top-K neighbours per (u, r).
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from tenfold.errors import ConfigError

from .method import PAD_LOGIT, anneal_temp
from .metrics import EarlyStopMonitor
from .model import LinkModel, TemporalEncoder
from .samplers import TableSampler, UniformSampler
from .tcsr import TemporalCSR

__all__ = ["build_gas_model", "pretrain_gas", "FullHistorySampler", "finetune_backward", "gumbel_finetune",
           "gas_logits", "GASScorer", "LazyGASSampler", "gas_sampler", "gas_precompute_cost", "precompute_topk"]


def build_gas_model(num_nodes: int, dim: int, num_edges: int, edge_feat=None, dropout: float = 0.1,
                    freeze_node_feat: bool = False) -> LinkModel:
    enc = TemporalEncoder(num_nodes, dim, n_layer=1, n_head=1, dropout=dropout, n_samplers=1,
                          edge_feat=edge_feat, num_edges=num_edges, freeze_node_feat=freeze_node_feat)
    return LinkModel(enc)


def pretrain_gas(model: LinkModel, csr: TemporalCSR, train, val, cfg, run_epoch, evaluate, log=print):
    """Phase 1: plain 1-layer TGAT training (uniform K=20 with replacement), early stopping on val AUC,
    restore the best epoch. `run_epoch(model, samplers, opt, events, batch_size)` and
    `evaluate(model, samplers, events)` are the package's link-prediction loops."""
    sampler = UniformSampler(csr, cfg.n_degree)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    mon = EarlyStopMonitor(cfg.patience, cfg.tol)
    best = copy.deepcopy(model.state_dict())
    for epoch in range(cfg.epochs):
        loss = run_epoch(model, [sampler], opt, train, cfg.batch_size)
        m = evaluate(model, [sampler], val)
        log(f"GAS pretrain epoch {epoch}: loss {loss:.4f} val auc {m['auc']:.4f}")
        stop = mon.step(m["auc"])
        if mon.best_epoch == epoch:
            best = copy.deepcopy(model.state_dict())
        if stop:
            break
    model.load_state_dict(best)
    return {"epochs": mon.epoch_count, "best_epoch": mon.best_epoch, "best_val_auc": mon.last_best}


class FullHistorySampler:
    """Every event strictly before t (optionally the last `max_len`), as one padded [B, W] block."""

    name = "full"

    def __init__(self, csr: TemporalCSR, max_len: int | None = None):
        self.csr, self.max_len = csr, max_len

    def __call__(self, nodes, t, generator=None):
        nodes = nodes.to(self.csr.device).long()
        r = self.csr.prefix_len(nodes, t)
        pos, valid = self.csr.window(nodes, r, self.max_len)
        return self.csr.gather(pos, valid)


def finetune_backward(model: LinkModel, sampler: FullHistorySampler, src, dst, neg, t, chunk: int) -> torch.Tensor:
    """Backward of Σ_events BCE(pos) + BCE(neg) over full histories, in chunks of events whose 3 roots × history
    window hold ≤ `chunk` entries. The gradient of a sum is the sum of its chunks' gradients, so this is the
    unchunked result while activation memory is O(chunk · d_m) — O(batch × cap) with `finetune_max_history` —
    instead of [3 × batch, max degree, d_m] (≈ 60 GB at Reddit's max degree). A batch that fits runs as one
    chunk in event order (bitwise the reference computation, same random numbers)."""
    r = sampler.csr.prefix_len(torch.cat([src, dst, neg]), torch.cat([t, t, t])).view(3, -1).amax(0)
    w = r if sampler.max_len is None else torch.clamp(r, max=sampler.max_len)
    w_host = torch.clamp(w, min=1).cpu().numpy()
    if 3 * src.numel() * int(w_host.max()) <= chunk:
        plan = [torch.arange(src.numel(), device=src.device)]
    else:
        order, chunks = _plan(w_host, 3, chunk)
        order = torch.from_numpy(order).to(src.device)
        plan = [order[a:e] for a, e, _ in chunks]
    total = torch.zeros((), device=src.device)
    for idx in plan:
        pos_l, neg_l = model(src[idx], dst[idx], neg[idx], t[idx], [sampler])
        loss = (F.binary_cross_entropy_with_logits(pos_l, torch.ones_like(pos_l), reduction="sum")
                + F.binary_cross_entropy_with_logits(neg_l, torch.zeros_like(neg_l), reduction="sum"))
        loss.backward()
        total = total + loss.detach()
    return total


def gumbel_finetune(model: LinkModel, csr: TemporalCSR, train, dst_pool: torch.Tensor, cfg, log=print):
    """Phase 2 (1 epoch): attention weights = softmax((ℓ + g)/τ_g) over the full history; per-event
    BCE(pos) + BCE(neg) summed over a batch, one Adam step (lr 5e-7 by default) per batch; τ_g annealed.
    Memory is bounded by `cfg.finetune_chunk` (see `finetune_backward`)."""
    sampler = FullHistorySampler(csr, cfg.finetune_max_history)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.finetune_lr)
    attn = model.encoder.attn[0][0]
    src, dst, t = train
    tau = cfg.temp
    model.train()
    for k, s in enumerate(range(0, src.numel(), cfg.batch_size)):
        b = slice(s, s + cfg.batch_size)
        neg = dst_pool[torch.randint(dst_pool.numel(), (src[b].numel(),), device=dst_pool.device)]
        attn.gumbel_tau = cfg.first_batch_temp if (k == 0 and cfg.first_batch_temp is not None) else tau
        opt.zero_grad()
        finetune_backward(model, sampler, src[b], dst[b], neg, t[b], cfg.finetune_chunk)
        opt.step()
        tau = anneal_temp(tau, k, cfg.anneal_rate, cfg.temp_min)
    attn.gumbel_tau = None
    return {"final_temp": tau}


def _window(csr: TemporalCSR, nodes, r, w: int):
    """Like `csr.window` with a fixed width `w` (no host sync): the last min(r, w) entries, padded at the end."""
    n = torch.clamp(r, max=w)
    start = csr.offset[nodes] + r - n
    ar = torch.arange(w, device=csr.device)
    valid = ar[None, :] < n[:, None]
    return torch.where(valid, start[:, None] + ar[None, :], csr.pad_pos), valid, n


def _plan(widths: np.ndarray, per_elem: int, budget: int):
    """Chunks over queries sorted by window width: power-of-two width buckets (padding wastes < half of a
    chunk) cut so that rows × width × per_elem ≤ budget. Planned once on the host: no sync per chunk."""
    order = np.argsort(widths, kind="stable")
    w = np.maximum(widths[order], 1)
    b = np.floor(np.log2(w)).astype(np.int64)
    cuts = np.r_[0, np.flatnonzero(np.diff(b)) + 1, w.size]
    chunks = []
    for s, e in zip(cuts[:-1], cuts[1:]):
        width = int(w[e - 1])
        step = max(1, budget // (width * per_elem))
        chunks += [(a, min(e, a + step), width) for a in range(int(s), int(e), step)]
    return order, chunks


class GASScorer:
    """The frozen GAS model G, decomposed for selection (spec §2.3 step 3). With a = (W_Q q_u) W_K:
    logit(u, m; t*) = (s_m + a_time,u · Φ(t* − t_m)) / sqrt(d_k), where s_m = a_u · [x_{v_m} ‖ x_{e_m}] depends on
    the index entry m only (its owner u is fixed) and is computed once, O(|index| · d). Only the time part
    depends on t*, so a selection costs O(history · D_t) and never materialises [queries, history, d_m]."""

    @torch.no_grad()
    def __init__(self, model: LinkModel, csr: TemporalCSR, chunk: int = 1 << 16):
        enc = model.encoder
        attn = enc.attn[0][0]
        d, de = enc.dim, attn.edge_dim
        dev = csr.device
        self.csr = csr
        nodes = torch.arange(csr.num_nodes + 1, device=dev)
        with torch.autocast(dev.type, enabled=False):
            phi0 = enc.time_enc(torch.zeros(1, dtype=torch.float64, device=dev))
            qk = attn.w_q(attn.query(enc.node_emb(nodes), phi0)) @ attn.w_k.weight  # [N+1, d_m]
            owner = torch.repeat_interleave(nodes, csr.degree)
            m = csr.nbr.numel()
            static = torch.zeros(m + 1, device=dev)  # + the padding sentinel
            for s in range(0, m, chunk):
                e = min(m, s + chunk)
                o = owner[s:e]
                v = (qk[o, :d] * enc.node_emb(csr.nbr[s:e])).sum(-1)
                if enc.edge_feat is not None:  # featureless graphs: the zero block adds nothing
                    v = v + (qk[o, d:d + de] * enc.edge_feat[csr.eid[s:e]]).sum(-1)
                static[s:e] = v
        self.static, self.a_time = static, qk[:, d + de:].contiguous()
        self.time_enc = copy.deepcopy(enc.time_enc).requires_grad_(False)
        self.scale = 1.0 / math.sqrt(attn.d_k)
        self.time_dim = self.a_time.shape[1]

    @torch.no_grad()
    def logits(self, nodes, pos, valid, t_star) -> torch.Tensor:
        """[P, W] logits of nodes' index entries `pos` (padding = csr.pad_pos) at selection times t_star [P]."""
        with torch.autocast(self.csr.device.type, enabled=False):  # selection in fp32 whatever the run's precision
            phi = self.time_enc(t_star.double()[:, None] - self.csr._ts[pos])
            lg = self.static[pos] + torch.einsum("pd,pwd->pw", self.a_time[nodes], phi)
        return (lg * self.scale).masked_fill(~valid, PAD_LOGIT)

    @torch.no_grad()
    def topk_rel(self, nodes, r, t_star, k: int, max_history: int | None = None, chunk_elems: int = 1 << 22,
                 stats: dict | None = None) -> torch.Tensor:
        """Top-K of each query's (last `max_history`) history at t_star, as positions relative to the node's
        offset, sorted by time. Every r must be ≥ K."""
        out = torch.empty(nodes.numel(), k, dtype=torch.long, device=self.csr.device)
        if nodes.numel() == 0:
            return out
        widths = r if max_history is None else torch.clamp(r, max=max_history)
        order, chunks = _plan(widths.cpu().numpy(), self.time_dim, chunk_elems)
        order = torch.from_numpy(order).to(self.csr.device)
        for a, e, w in chunks:
            idx = order[a:e]
            uu, rr = nodes[idx], r[idx]
            pos, valid, n = _window(self.csr, uu, rr, w)
            lg = self.logits(uu, pos, valid, t_star[idx])
            out[idx] = torch.sort(torch.topk(lg, k, dim=1).indices, dim=1).values + (rr - n)[:, None]
            if stats is not None:
                stats["elements"] = stats.get("elements", 0) + (e - a) * w * self.time_dim
        return out


class LazyGASSampler:
    """Leak-free GAS (the spec's `gas_mode="lazy"`, the default): the top-K of u's history by G's attention at
    t* = the query time t, for every node alike — positives, negatives and neighbours at lower layers.
    The official t* (u's next interaction, `precompute_topk`) embeds a true destination at t but a negative at
    its next, later event, so the two are selected by different rules and the selection uses the future."""

    name = "gas"

    def __init__(self, model: LinkModel, csr: TemporalCSR, k: int, max_history: int | None = None,
                 chunk_elems: int = 1 << 22):
        self.csr, self.k, self.max_history, self.chunk_elems = csr, int(k), max_history, chunk_elems
        self.scorer = GASScorer(model, csr)

    def __call__(self, nodes, t, generator=None):
        nodes = nodes.to(self.csr.device).long()
        t = t.to(self.csr.device, torch.float64)
        start, r = self.csr.prefix(nodes, t)
        ar = torch.arange(self.k, device=self.csr.device)
        rel = ar.expand(nodes.numel(), self.k).clone()  # short histories: all of it, padded at the end
        valid = ar[None, :] < r[:, None]
        big = torch.nonzero(r >= self.k).squeeze(1)
        if big.numel():
            rel[big] = self.scorer.topk_rel(nodes[big], r[big], t[big], self.k, self.max_history, self.chunk_elems)
        return self.csr.gather(start[:, None] + rel, valid)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, sd: dict) -> None:
        pass


def gas_precompute_cost(degree: torch.Tensor, k: int, max_history: int | None, time_dim: int) -> float:
    """Estimated work of the exact top-K table: Σ over (u, r ≥ K) of min(r, cap) history entries × D_t
    (the time-encoding part that dominates; O(Σ deg²) without a cap)."""
    g = degree.cpu().double().numpy()
    c = np.inf if max_history is None else float(max_history)
    top = np.minimum(g, c)  # Σ_{r=K}^{min(g,c)} r  +  (g − c)·c for the capped tail
    lin = np.where(top >= k, (top * (top + 1) - (k - 1) * k) / 2, 0.0)
    tail = np.where((g > c) & (g >= k), (g - np.maximum(c, k - 1)) * np.minimum(c, g), 0.0) if np.isfinite(c) else 0
    return float(np.sum(lin + tail) * time_dim)


@torch.no_grad()
def precompute_topk(model: LinkModel, csr: TemporalCSR, k: int, max_history: int | None = None,
                    chunk_elems: int = 1 << 23, budget: float | None = None, allow_over_budget: bool = False,
                    log=None, stats: dict | None = None) -> torch.Tensor:
    """Official GAS table [num_slots, K] (int32 relative positions, sorted by time) for every (u, r) with r ≥ K,
    at t* = time of u's (r+1)-th interaction, or the last time + 1 for the final prefix (the reference's rule;
    it uses the future, see `LazyGASSampler`). All pairs are planned at once and run in width-bucketed chunks.
    Refuses (ConfigError) when the estimated cost exceeds `budget` unless `allow_over_budget`."""
    model.eval()
    dev = csr.device
    table = torch.zeros(csr.num_slots, k, dtype=torch.int32, device=dev)
    dt = model.encoder.time_enc.dim
    est = gas_precompute_cost(csr.degree, k, max_history, dt)
    say = log or (lambda *a: None)
    if budget is not None and est > budget and not allow_over_budget:
        raise ConfigError(f"the exact GAS top-K precompute would cost ≈ {est:.3g} element-ops (budget "
                          f"{budget:.3g}; O(Σ deg²)): set gas.max_history, use gas.mode=lazy, or allow it with "
                          f"gas.allow_over_budget=true")
    deg = csr.degree.cpu()
    n_pairs = torch.clamp(deg - k + 1, min=0)
    total = int(n_pairs.sum())
    if total == 0:
        return table
    t0 = time.perf_counter()
    u = torch.repeat_interleave(torch.arange(deg.numel()), n_pairs)
    first = torch.cumsum(n_pairs, 0) - n_pairs
    r = k + torch.arange(total) - torch.repeat_interleave(first, n_pairs)
    u, r = u.to(dev), r.to(dev)
    nxt = torch.clamp(csr.offset[u] + r, max=csr.ts.numel() - 1)
    last = csr.ts[csr.offset[u] + csr.degree[u] - 1]
    t_star = torch.where(r < csr.degree[u], csr.ts[nxt], last + 1)
    st = {} if stats is None else stats
    rel = GASScorer(model, csr).topk_rel(u, r, t_star, k, max_history, chunk_elems, st)
    table[csr.offset[u] + u + r] = rel.int()
    st.update(estimated=est, seconds=time.perf_counter() - t0)
    say(f"GAS precompute: estimated {est:.3g} element-ops, actual {st['elements']:.3g} (with padding) "
        f"in {st['seconds']:.1f}s for {total} (node, prefix) pairs")
    return table


def gas_sampler(model: LinkModel, csr: TemporalCSR, k: int, mode: str = "lazy", max_history: int | None = None,
                table: torch.Tensor | None = None, **precompute_kw):
    """GAS neighbour selection: mode "lazy" (leak-free, t* = query time; default) or "official" (the
    reference's precomputed (u, r) table at t* = the next interaction)."""
    if mode == "lazy":
        return LazyGASSampler(model, csr, k, max_history)
    if mode == "official":
        if table is None:
            table = precompute_topk(model, csr, k, max_history, **precompute_kw)
        return TableSampler(csr, k, table)
    raise ConfigError(f"gas.mode must be 'lazy' or 'official', got {mode!r}")


@torch.no_grad()
def gas_logits(model: LinkModel, csr: TemporalCSR, nodes, pos, valid, t_star) -> torch.Tensor:
    """Reference form of G's single-head logits of q_u = [x_u ‖ 0 ‖ Φ(0)] against keys [x_v ‖ x_e ‖ Φ(t* − t_m)]
    at CSR positions `pos` [P, W] (what `GASScorer` computes in decomposed form)."""
    enc = model.encoder
    attn = enc.attn[0][0]
    d, de = enc.dim, attn.edge_dim
    phi0 = enc.time_enc(torch.zeros(1, dtype=torch.float64, device=nodes.device))
    qk = attn.w_q(attn.query(enc.node_emb(nodes), phi0)) @ attn.w_k.weight  # [P, d_m]
    nb, e, ts = csr.gather(pos, valid)
    lg = torch.einsum("pd,pwd->pw", qk[:, :d], enc.node_emb(nb))
    if enc.edge_feat is not None:
        lg = lg + torch.einsum("pd,pwd->pw", qk[:, d:d + de], enc.edge_feat[e])
    lg = lg + torch.einsum("pd,pwd->pw", qk[:, d + de:], enc.time_enc(t_star[:, None] - ts))
    return (lg / math.sqrt(attn.d_k)).masked_fill(~valid, PAD_LOGIT)
