"""Gumbel Attention Sampling (spec §2.3): a 1-layer, single-head TGAT with its own node table (pitfall 11),
pretrained on link prediction with uniform sampling, optionally Gumbel fine-tuned over full histories, then
frozen; its softmax attention over each node's *full* history prefix picks the top-K neighbours per (u, r).
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from .method import PAD_LOGIT, anneal_temp
from .metrics import EarlyStopMonitor
from .model import LinkModel, TemporalEncoder
from .samplers import UniformSampler
from .tcsr import TemporalCSR

__all__ = ["build_gas_model", "pretrain_gas", "FullHistorySampler", "gumbel_finetune", "gas_logits",
           "precompute_topk"]


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


def gumbel_finetune(model: LinkModel, csr: TemporalCSR, train, dst_pool: torch.Tensor, cfg, log=print):
    """Phase 2 (1 epoch): attention weights = softmax((ℓ + g)/τ_g) over the full history; per-event
    BCE(pos) + BCE(neg) summed over a batch, one Adam step (lr 5e-7 by default) per batch; τ_g annealed."""
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
        pos_l, neg_l = model(src[b], dst[b], neg, t[b], [sampler])
        loss = (F.binary_cross_entropy_with_logits(pos_l, torch.ones_like(pos_l), reduction="sum")
                + F.binary_cross_entropy_with_logits(neg_l, torch.zeros_like(neg_l), reduction="sum"))
        opt.zero_grad()
        loss.backward()
        opt.step()
        tau = anneal_temp(tau, k, cfg.anneal_rate, cfg.temp_min)
    attn.gumbel_tau = None
    return {"final_temp": tau}


@torch.no_grad()
def gas_logits(model: LinkModel, csr: TemporalCSR, nodes, pos, valid, t_star) -> torch.Tensor:
    """G's single-head attention logits of q_u = [x_u ‖ 0 ‖ Φ(0)] against keys [x_v ‖ x_e ‖ Φ(t* − t_m)] at
    CSR positions `pos` [P, W]. Uses Q·(W_K k) = (Q W_K)·k so no [P, W, d_m] projection is materialised."""
    enc = model.encoder
    attn = enc.attn[0][0]
    d, de = enc.dim, attn.edge_dim
    phi0 = enc.time_enc(torch.zeros(1, dtype=torch.float64, device=nodes.device))
    q = attn.w_q(attn.query(enc.node_emb(nodes), phi0))  # [P, d_m]
    qk = q @ attn.w_k.weight  # [P, d_m]
    nb, e, ts = csr.gather(pos, valid)
    lg = torch.einsum("pd,pwd->pw", qk[:, :d], enc.node_emb(nb))
    lg = lg + torch.einsum("pd,pwd->pw", qk[:, d:d + de], enc.edge_feat[e])
    lg = lg + torch.einsum("pd,pwd->pw", qk[:, d + de:], enc.time_enc(t_star[:, None] - ts))
    return (lg / math.sqrt(attn.d_k)).masked_fill(~valid, PAD_LOGIT)


@torch.no_grad()
def precompute_topk(model: LinkModel, csr: TemporalCSR, k: int, max_history: int | None = None,
                    chunk_elems: int = 1 << 23) -> torch.Tensor:
    """Top-K table [num_slots, K] (int32 relative positions, sorted by time) for every (u, r) with r ≥ K.
    t* = time of u's (r+1)-th interaction, or the last time + 1 for the final prefix (official)."""
    model.eval()
    dev = csr.device
    table = torch.zeros(csr.num_slots, k, dtype=torch.int32, device=dev)
    deg = csr.degree
    n_pairs = torch.clamp(deg - k + 1, min=0)
    total = int(n_pairs.sum())
    if total == 0:
        return table
    u = torch.repeat_interleave(torch.arange(deg.numel(), device=dev), n_pairs)
    first = torch.cumsum(n_pairs, 0) - n_pairs
    r = k + torch.arange(total, device=dev) - torch.repeat_interleave(first, n_pairs)
    nxt = torch.clamp(csr.offset[u] + r, max=csr.ts.numel() - 1)
    last = csr.ts[csr.offset[u] + deg[u] - 1]
    t_star = torch.where(r < deg[u], csr.ts[nxt], last + 1)
    width = model.encoder.dim
    s = 0
    while s < total:
        w = int(r[s]) if max_history is None else min(int(r[s]), max_history)
        # pairs are grouped by node with r increasing: grow the chunk while P·W·D stays in budget
        e = s + 1
        step = max(1, chunk_elems // max(1, width * max(w, 1)))
        e = min(total, s + step)
        while e > s + 1 and (int(r[s:e].max()) if max_history is None else min(int(r[s:e].max()), max_history)) \
                * (e - s) * width > chunk_elems:
            e = s + max(1, (e - s) // 2)
        uu, rr = u[s:e], r[s:e]
        pos, valid = csr.window(uu, rr, max_history)
        lg = gas_logits(model, csr, uu, pos, valid, t_star[s:e])
        n = valid.sum(1)
        idx = torch.sort(torch.topk(lg, k, dim=1).indices, dim=1).values
        table[csr.offset[uu] + uu + rr] = (idx + (rr - n)[:, None]).int()
        s = e
    return table
