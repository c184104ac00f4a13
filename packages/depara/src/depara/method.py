"""DEPARA's equations as pure functions on tensors (spec section 2).

    A_i  = x_i * d s(y_i)/d x_i,  s(y) = sum_k y_k          (2.2, gradient x input of ALL units)
    v_i  = mean_c |A_i[c]|  or  mean_c A_i[c]               (2.2, channel_reduce abs_mean | mean)
    S_V  = 1/n sum_i cos(v_i^1, v_i^2)                      (2.2, node similarity)
    e_ij = cos(y~_i, y~_j), i<j, y~ optionally centred      (2.3, edges, upper triangle row-major)
    S_E  = Spearman(E^1, E^2)                               (2.3, edge similarity)
    S    = S_V + lambda * S_E                               (2.4)
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from tenfold.errors import ConfigError

from .config import ATTRIBUTIONS, CHANNEL_REDUCE  # with the config, which the CLIs load without torch

__all__ = ["ATTRIBUTIONS", "CHANNEL_REDUCE", "attribute", "reduce_channels", "elrp_rules", "edge_vector",
           "rsa_vector", "edge_rsa_streamed", "rankdata", "spearman", "node_similarity", "edge_similarity",
           "depara_score", "no_inplace"]


def _check(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {list(allowed)}")


class _ELRPReLU(torch.autograd.Function):
    """DeepExplain's epsilon-LRP rule for a ReLU: grad_in = grad_out * out / (in + eps*sign(in))."""

    @staticmethod
    def forward(ctx, x, eps):
        out = x.clamp_min(0)
        ctx.save_for_backward(x, out)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        denom = x + ctx.eps * torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
        return g * out / denom, None


@contextlib.contextmanager
def elrp_rules(eps: float = 1e-4):
    """Route every F.relu / nn.ReLU through the eLRP gradient while active (ReLU is the only
    nonlinearity of the zoo's nets; other activations keep their plain gradients)."""
    original = F.relu

    def relu(x, inplace=False):
        return _ELRPReLU.apply(x, eps)

    F.relu = relu
    try:
        yield
    finally:
        F.relu = original


@contextlib.contextmanager
def no_inplace(model: torch.nn.Module | None):
    """In-place ReLUs after a tapped layer would overwrite its output and silently re-route its gradient
    (the tap would then attribute relu(conv) instead of conv): switch them off during extraction."""
    mods = [m for m in (model.modules() if model is not None else []) if getattr(m, "inplace", False) is True]
    for m in mods:
        m.inplace = False
    try:
        yield
    finally:
        for m in mods:
            m.inplace = True


def attribute(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, method: str = "grad_input",
              objective: str = "sum", eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Attribution maps A [B,C,H,W] of s(fn(x)) and the flattened outputs y [B,D], for one batch.

    The input is a fresh leaf each call and the gradient comes from torch.autograd.grad, so nothing
    accumulates across layers or models (the official code's `.grad` bug). In eval mode the samples
    are independent, so the gradient of the batch sum is the per-sample gradient."""
    _check("attribution", method, ATTRIBUTIONS)
    _check("objective", objective, ("sum", "mean"))
    xl = x.detach().clone().requires_grad_(True)
    ctx = elrp_rules(eps) if method == "elrp" else contextlib.nullcontext()
    with torch.enable_grad(), ctx:
        y = fn(xl)
        s = y.sum() if objective == "sum" else y.mean()
        (g,) = torch.autograd.grad(s, xl)
    A = g.abs() if method == "saliency" else g * xl.detach()
    return A.detach(), y.detach().flatten(1)


def reduce_channels(A: torch.Tensor, mode: str = "abs_mean") -> torch.Tensor:
    """[B,C,H,W] -> [B,H*W]: abs then channel mean (layer-selection code) or signed mean (Taskonomy)."""
    _check("channel_reduce", mode, CHANNEL_REDUCE)
    if mode == "abs_mean":
        A = A.abs().mean(1)
    elif mode == "mean":
        A = A.mean(1)
    return A.flatten(1)


def _unit_rows(F_: torch.Tensor) -> torch.Tensor:
    return F_ / F_.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _upper(S: torch.Tensor) -> torch.Tensor:
    n = S.shape[0]
    iu = torch.triu_indices(n, n, offset=1, device=S.device)
    return S[iu[0], iu[1]]


def edge_vector(feats: torch.Tensor, center: bool = True) -> torch.Tensor:
    """Cosine similarity of every probe pair, i<j in row-major order: n(n-1)/2 entries (float32)."""
    f = feats.flatten(1).double()
    if center:
        f = f - f.mean(0, keepdim=True)
    fn = _unit_rows(f)
    return _upper(fn @ fn.T).float()


def rsa_vector(feats: torch.Tensor, center: bool = True) -> torch.Tensor:
    """RSA baseline's RDM (Dwivedi & Roig 2019): correlation distance 1 - Pearson(y_i, y_j), i<j."""
    f = feats.flatten(1).double()
    if center:
        f = f - f.mean(0, keepdim=True)
    f = f - f.mean(1, keepdim=True)
    fn = _unit_rows(f)
    return (1.0 - _upper(fn @ fn.T)).float()


def edge_rsa_streamed(feats: torch.Tensor, center: bool = True, device=None, chunk: int = 1 << 16
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """`edge_vector` and `rsa_vector` of features [n, D] (e.g. on the host) without an fp64 copy of them.

    The features go to `device` in fp32 slices of `chunk` columns, each centred over the probes on its own
    (centring is per column), and only the n x n Gram matrix and the row sums are accumulated (fp64, n x n is
    small). The RSA rows are then centred through the Gram matrix: (f_i - m_i)(f_j - m_j) = G_ij - D m_i m_j."""
    n, d = feats.shape[0], feats[0].numel()
    feats = feats.reshape(n, d)
    device = device if device is not None else feats.device
    G = torch.zeros(n, n, dtype=torch.float64, device=device)
    s = torch.zeros(n, dtype=torch.float64, device=device)
    for c in range(0, d, chunk):
        f = feats[:, c:c + chunk].to(device, torch.float32)
        if center:
            f = f - f.mean(0, keepdim=True)
        G += (f @ f.T).double()
        s += f.sum(1, dtype=torch.float64)

    def cos(g):
        nrm = g.diagonal().clamp_min(0).sqrt().clamp_min(1e-12)
        return _upper(g / nrm[:, None] / nrm[None, :]).float()

    m = s / d
    return cos(G).cpu(), (1.0 - cos(G - d * m[:, None] * m[None, :])).cpu()


def rankdata(x: torch.Tensor) -> torch.Tensor:
    """Ascending ranks 0..m-1 with ties given their average rank (float64)."""
    x = x.flatten()
    sorted_x, order = torch.sort(x, stable=True)
    _, inverse, counts = torch.unique_consecutive(sorted_x, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    avg = ends - (counts.double() + 1) / 2  # mean of the 0-based positions start..end-1
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = avg[inverse]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor, ties: str = "average") -> torch.Tensor:
    """Spearman rank correlation (float64 scalar).

    ties="average": Pearson correlation of average ranks (= scipy.stats.spearmanr).
    ties="argsort": the reference code's 1 - 6 sum d^2 / (m (m^2 - 1)) on argsort ranks (ties broken by order)."""
    _check("spearman_ties", ties, ("average", "argsort"))
    if a.numel() != b.numel():
        raise ValueError(f"edge vectors differ in length ({a.numel()} vs {b.numel()}): same probe set?")
    m = a.numel()
    if ties == "argsort":
        ra = torch.argsort(torch.argsort(-a.flatten())).double()
        rb = torch.argsort(torch.argsort(-b.flatten())).double()
        return 1.0 - 6.0 * ((ra - rb) ** 2).sum() / (m * (m * m - 1.0))
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = (ra.norm() * rb.norm()).clamp_min(1e-300)
    return (ra * rb).sum() / den


def node_similarity(V1: torch.Tensor, V2: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """S_V = mean over probes of cos(v_i^1, v_i^2) (float32 accumulation, also for fp16 storage)."""
    if V1.shape[0] != V2.shape[0]:
        raise ValueError(f"graphs have {V1.shape[0]} and {V2.shape[0]} nodes: build both on the same probes")
    if V1.shape[1] != V2.shape[1]:
        raise ValueError(f"attribution maps differ in size ({V1.shape[1]} vs {V2.shape[1]}): same probe resolution?")
    total = torch.zeros((), dtype=torch.float64, device=V1.device)
    for i in range(0, V1.shape[0], chunk):
        a, b = V1[i:i + chunk].float(), V2[i:i + chunk].float()
        total += F.cosine_similarity(a, b, dim=1, eps=1e-12).double().sum()
    return total / V1.shape[0]


def edge_similarity(E1: torch.Tensor, E2: torch.Tensor, ties: str = "average") -> torch.Tensor:
    return spearman(E1, E2, ties)


def depara_score(sv: float | torch.Tensor, se: float | torch.Tensor, lam: float) -> float:
    """S = S_V + lambda * S_E (2.4); report lambda with this normalisation (S_V is a mean, not a sum)."""
    return float(sv) + float(lam) * float(se)
