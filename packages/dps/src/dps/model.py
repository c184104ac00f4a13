"""DPS / TGAT encoders and heads (spec §2.7, §2.8).

`TemporalEncoder` computes h_u^{(L)}(t) recursively: h^{(0)} = X[u]; at layer l each sampler s draws K
neighbours (strictly before t), embeds them with h^{(l−1)} *at their own event times* (pitfall 2), applies its
own attention layer Attn_s^{(l)}, and `Fusion^{(l)}` mixes the S outputs. S = 1 is TGAT (no fusion layer);
`fusion="concat"` merges all samplers' neighbours into one set for a single attention layer (the
"w/o fusion" ablation, official `ConcatBiNFinder`). Samplers are fixed objects passed in (pitfall 3): the
DPS loss never reaches them.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .method import Fusion, MergeLayer, TemporalAttention, TimeEncode

__all__ = ["TemporalEncoder", "LinkModel", "NodeMLP"]


class TemporalEncoder(nn.Module):
    def __init__(self, num_nodes: int, dim: int = 128, n_layer: int = 2, n_head: int = 2, dropout: float = 0.1,
                 n_samplers: int = 2, fusion: str = "attention", edge_feat: torch.Tensor | None = None,
                 num_edges: int = 0, freeze_node_feat: bool = False):
        super().__init__()
        if fusion not in ("attention", "concat"):
            raise ValueError(f"fusion must be 'attention' or 'concat', got {fusion!r}")
        self.dim, self.n_layer, self.n_samplers, self.fusion = dim, n_layer, n_samplers, fusion
        self.node_emb = nn.Embedding(num_nodes + 1, dim, padding_idx=0)
        if freeze_node_feat:  # node task (pitfall 15): frozen zeros
            nn.init.zeros_(self.node_emb.weight)
            self.node_emb.weight.requires_grad_(False)
        else:
            b = math.sqrt(6.0 / (2 * dim))
            nn.init.uniform_(self.node_emb.weight, -b, b)
        # featureless graphs: a zero block of width D (pitfall 10) — uninformative but part of d_m. It is made
        # per batch (`edge_rows`), not stored as an [E + 1, D] table of zeros.
        if edge_feat is not None:
            edge_feat = torch.cat([torch.zeros(1, edge_feat.shape[1]), edge_feat.float()], 0)
        self.register_buffer("edge_feat", edge_feat, persistent=False)
        edge_dim = dim if edge_feat is None else edge_feat.shape[1]
        self.edge_dim = edge_dim
        self.time_enc = TimeEncode(dim)  # D_t = D (the official time_dim flag is ignored)
        n_attn = 1 if (fusion == "concat" or n_samplers == 1) else n_samplers
        self.attn = nn.ModuleList([nn.ModuleList([TemporalAttention(dim, edge_dim, dim, n_head, dropout)
                                                  for _ in range(n_attn)]) for _ in range(n_layer)])
        self.fuse = (nn.ModuleList([Fusion(dim, n_samplers) for _ in range(n_layer)])
                     if (fusion == "attention" and n_samplers > 1) else None)
        self.last_beta = None

    def edge_rows(self, eid: torch.Tensor) -> torch.Tensor:
        """Edge features of edge ids (0 = padding row of zeros); zeros of width D for featureless graphs."""
        if self.edge_feat is None:
            return self.node_emb.weight.new_zeros(*eid.shape, self.edge_dim)
        return self.edge_feat[eid]

    def embed(self, nodes: torch.Tensor, t: torch.Tensor, samplers, layer: int | None = None, generator=None):
        """h_nodes^{(layer)}(t): nodes [B] long, t [B] float64 (raw units) -> [B, D]."""
        layer = self.n_layer if layer is None else layer
        if layer == 0:
            return self.node_emb(nodes)
        b = nodes.numel()
        h_self = self.embed(nodes, t, samplers, layer - 1, generator)
        draws = [s(nodes, t, generator) for s in samplers]
        nb = torch.cat([d[0] for d in draws], 1)
        eid = torch.cat([d[1] for d in draws], 1)
        tn = torch.cat([d[2] for d in draws], 1)
        k = nb.shape[1]
        # one recursive call for all samplers' neighbours, each at its own event time
        h_nbr = self.embed(nb.reshape(-1), tn.reshape(-1), samplers, layer - 1, generator).view(b, k, -1)
        phi_nbr = self.time_enc(t[:, None] - tn)  # Δt in float64 raw units, then fp32
        phi_self = self.time_enc(torch.zeros(1, device=nodes.device, dtype=torch.float64))
        e_nbr = self.edge_rows(eid)
        mask = nb == 0
        attn = self.attn[layer - 1]
        if len(attn) == 1:
            return attn[0](h_self, h_nbr, e_nbr, phi_self, phi_nbr, mask)[0]
        zs, start = [], 0
        for s, d in enumerate(draws):
            sl = slice(start, start + d[0].shape[1])
            start = sl.stop
            zs.append(attn[s](h_self, h_nbr[:, sl], e_nbr[:, sl], phi_self, phi_nbr[:, sl], mask[:, sl])[0])
        h, beta = self.fuse[layer - 1](zs)
        self.last_beta = beta.detach()
        return h


class LinkModel(nn.Module):
    """Encoder + asymmetric affinity head s(u, v, t) = MergeLayer(h_u, h_v) (§2.7)."""

    def __init__(self, encoder: TemporalEncoder):
        super().__init__()
        self.encoder = encoder
        d = encoder.dim
        self.affinity = MergeLayer(d, d, d, 1)

    def forward(self, src, dst, neg, t, samplers, generator=None):
        """Logits (pos [B], neg [B]); the three roots are embedded in one batched recursion."""
        b = src.numel()
        h = self.encoder.embed(torch.cat([src, dst, neg]), torch.cat([t, t, t]), samplers, generator=generator)
        hs, hd, hn = h[:b], h[b:2 * b], h[2 * b:]
        return self.affinity(hs, hd).squeeze(-1), self.affinity(hs, hn).squeeze(-1)


class NodeMLP(nn.Module):
    """Node-classification head (§2.8): D → D/2 → D/4 → 1, ReLU + dropout after the first two layers."""

    def __init__(self, in_dim: int, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, in_dim // 2), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(in_dim // 2, in_dim // 4), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(in_dim // 4, 1))

    def forward(self, h):
        return self.net(h).squeeze(-1)
