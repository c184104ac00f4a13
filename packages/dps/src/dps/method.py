"""The paper's building blocks as modules / pure functions on tensors (spec §2.3–2.6).

- `TimeEncode`: Φ(Δt) = cos(Δt·ω + φ), ω_i = 10^(−9i/(D_t−1)), learnable ω and φ (§2.4; Δt in raw time units).
- `TemporalAttention`: TGAT's AttnModel with `attn_mode=prod` (§2.5), one per sampler per layer; optional
  Gumbel-softmax weights for the GAS fine-tune (§2.3 step 2).
- `Fusion`: AM-GCN style softmax attention over the per-sampler embeddings (§2.6).
- `MergeLayer`: the TGAT two-layer MLP on a concatenation (also the link-prediction affinity head, §2.7).
- `gumbel_softmax`, `anneal_temp`: the GAS fine-tune's relaxation and temperature schedule.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TimeEncode", "MergeLayer", "TemporalAttention", "Fusion", "gumbel_noise", "gumbel_softmax",
           "anneal_temp", "PAD_LOGIT"]

PAD_LOGIT = -1e10  # pitfall 13: not -inf, so all-padding rows give a uniform softmax instead of NaN


class TimeEncode(nn.Module):
    """Φ(Δt) ∈ R^{D_t} (§2.4). Φ(0) = 1 at init."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.basis_freq = nn.Parameter(torch.from_numpy(1.0 / 10 ** np.linspace(0, 9, dim)).float())
        self.phase = nn.Parameter(torch.zeros(dim))

    def forward(self, dt: torch.Tensor) -> torch.Tensor:
        return torch.cos(dt.float().unsqueeze(-1) * self.basis_freq + self.phase)


class MergeLayer(nn.Module):
    """z = W_2 ReLU(W_1 [x1 ‖ x2] + b_1) + b_2, xavier-normal weights (TGAT's MergeLayer)."""

    def __init__(self, dim1: int, dim2: int, hidden: int, out: int):
        super().__init__()
        self.fc1 = nn.Linear(dim1 + dim2, hidden)
        self.fc2 = nn.Linear(hidden, out)
        nn.init.xavier_normal_(self.fc1.weight)
        nn.init.xavier_normal_(self.fc2.weight)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(torch.cat([x1, x2], dim=-1))))


def gumbel_noise(shape, generator=None, device=None) -> torch.Tensor:
    """g = −log(−log(U + 1e-20) + 1e-20), U ~ U(0, 1) (the official constants)."""
    u = torch.rand(shape, generator=generator, device=device)
    return -torch.log(-torch.log(u + 1e-20) + 1e-20)


def gumbel_softmax(logits: torch.Tensor, tau: float, noise: torch.Tensor | None = None, dim: int = -1):
    """y = softmax((ℓ + g) / τ_g) (§2.3 step 2); `noise` fixes g (tests), else it is drawn."""
    g = gumbel_noise(logits.shape, device=logits.device) if noise is None else noise
    return torch.softmax((logits + g) / tau, dim=dim)


def anneal_temp(tau: float, k: int, rate: float = 0.003, tau_min: float = 0.5) -> float:
    """After batch k: if k % 10 == 1, τ_g ← max(τ_g · exp(−rate·k), τ_min) (official `anneal_temp`)."""
    if k % 10 == 1:
        tau = max(tau * math.exp(-rate * k), tau_min)
    return tau


class TemporalAttention(nn.Module):
    """One TGAT attention layer (§2.5): query [h_self ‖ 0_{D_e} ‖ Φ(0)], keys/values [h_nbr ‖ e ‖ Φ(t − t_m)],
    H heads of d_k = d_m/H, residual + LayerNorm on d_m, then MergeLayer([o ‖ h_self]) → D."""

    def __init__(self, dim: int, edge_dim: int, time_dim: int, n_head: int = 2, dropout: float = 0.1):
        super().__init__()
        self.dim, self.edge_dim, self.time_dim = dim, edge_dim, time_dim
        self.d_model = dim + edge_dim + time_dim
        if self.d_model % n_head:
            raise ValueError(f"n_head={n_head} must divide d_m = D + D_e + D_t = {self.d_model}")
        self.n_head, self.d_k = n_head, self.d_model // n_head
        self.w_q = nn.Linear(self.d_model, self.d_model, bias=False)
        self.w_k = nn.Linear(self.d_model, self.d_model, bias=False)
        self.w_v = nn.Linear(self.d_model, self.d_model, bias=False)
        std = math.sqrt(2.0 / (self.d_model + self.d_k))
        for w in (self.w_q, self.w_k, self.w_v):
            nn.init.normal_(w.weight, mean=0.0, std=std)
        self.fc = nn.Linear(self.d_model, self.d_model)
        nn.init.xavier_normal_(self.fc.weight)
        self.layer_norm = nn.LayerNorm(self.d_model)
        self.dropout = nn.Dropout(dropout)
        self.merger = MergeLayer(self.d_model, dim, dim, dim)
        self.gumbel_tau: float | None = None  # set during the GAS Gumbel fine-tune only

    def query(self, h_self: torch.Tensor, phi_self: torch.Tensor) -> torch.Tensor:
        zeros = h_self.new_zeros(h_self.shape[0], self.edge_dim)
        return torch.cat([h_self, zeros, phi_self.expand(h_self.shape[0], -1)], dim=-1)

    def logits(self, q_in: torch.Tensor, k_in: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked scaled dot-product logits [B, H, K]."""
        b, k = k_in.shape[:2]
        q = self.w_q(q_in).view(b, self.n_head, 1, self.d_k)
        kk = self.w_k(k_in).view(b, k, self.n_head, self.d_k).transpose(1, 2)
        att = (q @ kk.transpose(-1, -2)).squeeze(2) / math.sqrt(self.d_k)
        return att.masked_fill(mask[:, None, :], PAD_LOGIT)

    def forward(self, h_self, h_nbr, e_nbr, phi_self, phi_nbr, mask, gumbel_tau: float | None = None,
                noise: torch.Tensor | None = None):
        """Returns (z [B, D], attention weights [B, H, K])."""
        b, k = h_nbr.shape[:2]
        q_in = self.query(h_self, phi_self)
        kv_in = torch.cat([h_nbr, e_nbr, phi_nbr], dim=-1)
        logits = self.logits(q_in, kv_in, mask)
        gumbel_tau = self.gumbel_tau if gumbel_tau is None else gumbel_tau
        if gumbel_tau is None:
            attn = torch.softmax(logits, dim=-1)
        else:
            attn = gumbel_softmax(logits, gumbel_tau, noise)
        v = self.w_v(kv_in).view(b, k, self.n_head, self.d_k).transpose(1, 2)
        o = (self.dropout(attn).unsqueeze(2) @ v).squeeze(2).reshape(b, self.d_model)
        o = self.layer_norm(self.dropout(self.fc(o)) + q_in)
        return self.merger(o, h_self), attn


class Fusion(nn.Module):
    """w_s = qᵀ tanh(W_s z_s + b_s); β = softmax_s(w); h = LayerNorm(Σ_s β_s z_s) (§2.6)."""

    def __init__(self, dim: int, n_samplers: int = 2):
        super().__init__()
        self.proj = nn.ModuleList([nn.Linear(dim, dim) for _ in range(n_samplers)])
        self.q = nn.Linear(dim, 1, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, zs: list[torch.Tensor]):
        w = torch.cat([self.q(torch.tanh(p(z))) for p, z in zip(self.proj, zs)], dim=-1)  # [B, S]
        beta = torch.softmax(w, dim=-1)
        h = (beta.unsqueeze(-1) * torch.stack(zs, dim=1)).sum(1)
        return self.norm(h), beta
