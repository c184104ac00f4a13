"""FedMGD as pure functions on tensors; section numbers refer to the spec (shared/specs/fedmgd.md)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from tenfold.runtime import optimizer_step
from torch import nn

__all__ = ["bce", "r1_penalty", "discriminator_loss", "realistic_scores", "route", "routed_generator_loss",
           "client_generator_loss", "gan_lr_multiplier", "weighted_average", "filter_mask", "server_enhance_step",
           "fedprox_term", "fedlc_logits", "scaffold_correct", "scaffold_control_update", "client_batch_indices"]


def bce(p: torch.Tensor, target: float) -> torch.Tensor:
    """Mean binary cross-entropy on probabilities (nn.BCELoss semantics, log clamped at -100)."""
    return F.binary_cross_entropy(p, torch.full_like(p, target))


def r1_penalty(d_real: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
    """R1 = mean_b ||d D(x_b)/d x_b||^2 on the post-sigmoid output of real samples, no 1/2 (§2.3).
    `x_real` must require grad and `d_real = D(x_real)`; the graph is kept for the D update."""
    (g,) = torch.autograd.grad(d_real.sum(), x_real, create_graph=True)
    return g.pow(2).flatten(1).sum(1).mean()


def discriminator_loss(D: nn.Module, x_real: torch.Tensor, x_fake: torch.Tensor, lambda_d: float = 0.1,
                       lambda_reg: float = 10.0) -> tuple[torch.Tensor, dict]:
    """L_D^k = lambda_d [BCE(D(x), 1) + BCE(D(x_hat), 0)] + lambda_reg R1 (§2.3); x_hat is detached."""
    x_real = x_real.detach().requires_grad_(True)
    d_real = D(x_real)
    d_fake = D(x_fake.detach())
    adv = bce(d_real, 1.0) + bce(d_fake, 0.0)
    r1 = r1_penalty(d_real, x_real)
    return lambda_d * adv + lambda_reg * r1, {"d_adv": adv.detach(), "r1": r1.detach()}


@torch.no_grad()
def realistic_scores(d: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """S_k(b) = D_k(x_b) + log softmax(C_k(x_b))[y_b] = D - CE (§2.3). d: (..., B[,1]), logits: (..., B, N_c)."""
    if d.shape[-1] == 1 and d.dim() == logits.dim():
        d = d.squeeze(-1)
    logp = torch.log_softmax(logits.float(), -1)
    idx = y.expand(logp.shape[:-1]).unsqueeze(-1)
    return d.float() + logp.gather(-1, idx).squeeze(-1)


@torch.no_grad()
def route(scores: torch.Tensor) -> torch.Tensor:
    """k*(b) = argmax_k S_k(b) over scores (K, B); ties go to the lowest client index."""
    k = scores.shape[0]
    best = scores.max(0, keepdim=True).values
    ids = torch.arange(k, device=scores.device).unsqueeze(1).expand_as(scores)
    return torch.where(scores == best, ids, torch.full_like(ids, k)).min(0).values


def client_generator_loss(d_k: torch.Tensor, logits_k: torch.Tensor, y: torch.Tensor, mask_k: torch.Tensor,
                          batch: int) -> torch.Tensor:
    """Client k's share of L_G: its routed samples' BCE(D,1) + CE, normalised by the full batch B so
    that the shares of all clients sum to L_G (what a real client returns as a gradient, §2.4)."""
    d_k = d_k.reshape(-1)
    if not bool(mask_k.any()):
        return d_k.sum() * 0.0 + logits_k.sum() * 0.0
    adv = F.binary_cross_entropy(d_k[mask_k], torch.ones_like(d_k[mask_k]), reduction="sum")
    cls = F.cross_entropy(logits_k[mask_k], y[mask_k], reduction="sum")
    return (adv + cls) / batch


def routed_generator_loss(d: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
                          k_star: torch.Tensor) -> torch.Tensor:
    """L_G = mean_b BCE(D_{k*(b)}(x_b), 1) + mean_b CE(C_{k*(b)}(x_b), y_b) from stacked outputs
    d (K, B[,1]) and logits (K, B, N_c); only the selected entries carry gradient (§2.3)."""
    b = torch.arange(y.shape[0], device=y.device)
    d_sel = d.reshape(d.shape[0], -1)[k_star.detach(), b]
    c_sel = logits[k_star.detach(), b]
    return bce(d_sel, 1.0) + F.cross_entropy(c_sel, y)


def gan_lr_multiplier(epoch: int, niter: int = 200, niter_decay: int = 200) -> float:
    """m(e) = max(0.1, 1 - max(0, e + 1 - niter) / (niter_decay + 1)) for G and every D_k (§2.4)."""
    return max(0.1, 1.0 - max(0, epoch + 1 - niter) / float(niter_decay + 1))


@torch.no_grad()
def weighted_average(states: Sequence[dict], weights: Sequence[float]) -> dict:
    """FedAvg over state dicts with w_k = n_k / sum n (every entry; integer buffers are rounded)."""
    w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
    if len(states) == 0 or float(w.sum()) <= 0:
        raise ValueError("weighted_average needs at least one state with positive weight")
    w = w / w.sum()
    out = {}
    for key, ref in states[0].items():
        acc = sum(float(wk) * s[key].double() for wk, s in zip(w, states))
        out[key] = acc.round().to(ref.dtype) if not ref.is_floating_point() else acc.to(ref.dtype)
    return out


@torch.no_grad()
def filter_mask(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Self-consistency filter of §2.5: keep b where argmax S(x_b) == y_b."""
    return logits.argmax(1) == y


def server_enhance_step(S: nn.Module, opt: torch.optim.Optimizer, G: nn.Module, n_classes: int, gen_batch: int,
                        n_z: int, device: torch.device, use_filter: bool = True,
                        filter_eval_mode: bool = False, scaler=None) -> dict:
    """One server step (§2.5 step 2): sample (z, y), x = G(z, y) under no_grad with G in eval mode,
    keep what the *current* S labels as y, and take an Adam step on CE(S(x_keep), y_keep) if > 1 kept."""
    G.eval()
    z = torch.randn(gen_batch, n_z, device=device)
    y = torch.randint(0, n_classes, (gen_batch,), device=device)
    with torch.no_grad():
        x = G(z, F.one_hot(y, n_classes).float())
        if use_filter:
            if filter_eval_mode:
                S.eval()
            keep = filter_mask(S(x), y)
            S.train()
        else:
            keep = torch.ones_like(y, dtype=torch.bool)
    n_keep = int(keep.sum())
    S.train()
    if n_keep <= 1:
        return {"kept": n_keep, "loss": None, "stepped": False}
    loss = F.cross_entropy(S(x[keep]).float(), y[keep])
    optimizer_step(loss, opt, scaler)  # scaled backward only for fp16 on CUDA
    return {"kept": n_keep, "loss": loss.detach(), "stepped": True}


def fedprox_term(params: Iterable[torch.Tensor], anchor: Iterable[torch.Tensor], mu: float) -> torch.Tensor:
    """mu/2 * sum ||w - w_g||^2 (FedProx, reference mu = 0.01)."""
    terms = [(p - a.detach()).pow(2).sum() for p, a in zip(params, anchor)]
    return 0.5 * mu * torch.stack(terms).sum()


def fedlc_logits(logits: torch.Tensor, class_counts: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """FedLC calibration logits - tau * n_c^(-1/4). Counts are clamped at 1: the reference's count^(-0.25)
    is inf for a class the client lacks, which makes the loss NaN."""
    return logits - tau * class_counts.clamp(min=1).to(logits.dtype).pow(-0.25)


@torch.no_grad()
def scaffold_correct(params: Sequence[torch.Tensor], c_global: Sequence[torch.Tensor],
                     c_local: Sequence[torch.Tensor], lr: float) -> None:
    """SCAFFOLD correction after each local optimizer step: w <- w - lr * (c - c_k)."""
    for p, c, ck in zip(params, c_global, c_local):
        p.sub_(lr * (c - ck))


@torch.no_grad()
def scaffold_control_update(c_global, c_local, w_global, w_local, steps: int, lr: float) -> list[torch.Tensor]:
    """c_k+ = c_k - c + (w_g - w_k) / (steps * lr)."""
    return [ck - c + (wg - wk) / (steps * lr) for c, ck, wg, wk in zip(c_global, c_local, w_global, w_local)]


def client_batch_indices(global_idx: torch.Tensor, sizes: Sequence[int], legacy_folding: bool = False
                         ) -> list[torch.Tensor]:
    """Rows read by every client for a batch of loader indices i in [0, max_k n_k).

    Intended behaviour: client k reads i mod n_k (small clients cycle independently). With
    `legacy_folding` the reference bug (§5 quirk 0) is reproduced: the reduced index of an earlier
    client is reused for every later client, so client k only reads rows < min_{j<=k} n_j."""
    out = []
    idx = global_idx.clone()
    for n in sizes:
        if legacy_folding:
            idx = torch.where(idx >= n, idx % n, idx)
            out.append(idx.clone())
        else:
            out.append(global_idx % n)
    return out

