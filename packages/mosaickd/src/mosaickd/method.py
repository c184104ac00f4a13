"""MosaicKD's losses as pure functions on tensors (spec §2.2, equations reconstructed from the official code).

Notation: D(.) patch logits (B,1,h,w); T(.), S(.) teacher/student logits (B,C); p_T = softmax(T).
    L_D       = lam_local * [sum BCE(D(x_syn.detach()), 0) / B_fake + sum BCE(D(x_real), 1) / B_real] / 2
    L_local   = sum BCE(D(x_syn), 1) / B                                   (Eq. 3, fool the patch D)
    L_align   = mean_i H(p_T(x_syn_i))   in nats                            (Eq. 4, label-space alignment)
    L_adv     = - KL(p_T || p_S)  at temperature 1, batchmean               (Eq. 7, G maximises the KD gap)
    L_balance = sum_c pbar_c log2 pbar_c,  pbar = mean_i p_T(x_syn_i)       (appendix, class balance)
    L_G       = adv*L_adv + align*L_align + local*L_local + balance*L_balance
    L_S       = tau^2 * KL(softmax(T(X)/tau) || softmax(S(X)/tau)),  X = concat(synthetic, OOD)
Patch losses are sums over the B*h*w logits divided by the batch size, not means (pitfall 2).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["kldiv", "patch_bce_sum", "discriminator_loss", "local_loss", "entropy", "align_loss",
           "balance_loss", "adv_loss", "GeneratorLoss", "generator_loss", "student_kd_loss",
           "select_high_entropy", "BNStatsHook", "bn_stats_loss", "pseudo_label_ce", "datafree_generator_loss"]


def kldiv(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), summed over classes and averaged over the batch."""
    log_q = F.log_softmax(student_logits / T, dim=1)
    p = F.softmax(teacher_logits / T, dim=1)
    return F.kl_div(log_q, p, reduction="batchmean") * (T * T)


def patch_bce_sum(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Sum of BCE-with-logits over every patch logit of the batch (not a mean: pitfall 2)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target), reduction="sum")


def discriminator_loss(d_fake: torch.Tensor, d_real: torch.Tensor, lam_local: float = 1.0) -> torch.Tensor:
    """Patch discrimination: per-image sums, averaged over the fake and the real batch (equal sizes: / 2B)."""
    fake = patch_bce_sum(d_fake, 0.0) / d_fake.shape[0]
    real = patch_bce_sum(d_real, 1.0) / d_real.shape[0]
    return lam_local * 0.5 * (fake + real)


def local_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator patch loss: sum BCE(D(x_syn), 1) / B."""
    return patch_bce_sum(d_fake, 1.0) / d_fake.shape[0]


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample prediction entropy in nats, (B,)."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(1)


def align_loss(teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean per-sample teacher entropy (minimise: each image confidently in-domain; pitfall 6)."""
    return entropy(teacher_logits).mean()


def balance_loss(teacher_logits: torch.Tensor) -> torch.Tensor:
    """Negative entropy in bits of the batch class marginal (minimise: diverse classes; pitfall 6).
    `xlogy` makes 0*log 0 = 0, so a collapsed batch gives exactly 0, not NaN."""
    p_bar = F.softmax(teacher_logits, dim=1).mean(0)
    return torch.special.xlogy(p_bar, p_bar).sum() / math.log(2.0)


def adv_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """-KL(p_T || p_S) at temperature 1 whatever the KD temperature (code quirk 2); G *maximises* the KL
    (pitfall 3)."""
    return -kldiv(student_logits, teacher_logits, T=1.0)


@dataclass
class GeneratorLoss:
    total: torch.Tensor
    local: torch.Tensor
    align: torch.Tensor
    adv: torch.Tensor
    balance: torch.Tensor

    def scalars(self) -> dict[str, float]:
        return {f"g_{k}": float(getattr(self, k).detach()) for k in ("total", "local", "align", "adv", "balance")}


def generator_loss(d_fake: torch.Tensor | None, teacher_logits: torch.Tensor, student_logits: torch.Tensor, *,
                   local: float = 1.0, align: float = 1.0, adv: float = 1.0, balance: float = 10.0) -> GeneratorLoss:
    """L_G of spec §2.2; `d_fake=None` (no discriminator, the data-free ablation) makes L_local = 0."""
    zero = teacher_logits.new_zeros(())
    l_local = local_loss(d_fake) if d_fake is not None else zero
    l_align, l_bal = align_loss(teacher_logits), balance_loss(teacher_logits)
    l_adv = adv_loss(student_logits, teacher_logits)
    total = adv * l_adv + align * l_align + local * l_local + balance * l_bal
    return GeneratorLoss(total, l_local, l_align, l_adv, l_bal)


def student_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """L_S = tau^2 KL(softmax(t/tau) || softmax(s/tau)); MosaicKD uses tau = 1, vanilla KD tau = 5 (pitfall 12)."""
    return kldiv(student_logits, teacher_logits.detach(), T=tau)


def pseudo_label_ce(teacher_logits: torch.Tensor) -> torch.Tensor:
    """CE of the teacher with its own argmax (DFQ's 'one-hot' loss; the paper's pseudo-label form of L_align)."""
    return F.cross_entropy(teacher_logits, teacher_logits.argmax(1))


@torch.no_grad()
def select_high_entropy(images: torch.Tensor, teacher: Callable[[torch.Tensor], torch.Tensor], k: int,
                        batch_size: int = 512, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """Indices of the k images with the *highest* teacher entropy, most OOD first (spec §2.4, pitfall 10).

    `images` are the un-augmented OOD images (the code computes entropies under random augmentation, which
    makes the subset non-deterministic; here it is a function of the images and the teacher only)."""
    if not 0 < k <= len(images):
        raise ValueError(f"k must be in 1..{len(images)}, got {k}")
    ents = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device)
        if transform is not None:
            x = transform(x)
        ents.append(entropy(teacher(x).float()).cpu())
    h = torch.cat(ents)
    order = torch.sort(h, descending=True, stable=True).indices
    return order[:k]


def datafree_generator_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor,
                            hooks: list | None = None, *, adv: float = 1.0, oh: float = 1.0, ie: float = 20.0,
                            bn: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """kd_datafree.py (DFQ-style) generator loss, spec §2.7:
    -adv KL(T||S) + oh CE(T, argmax T) + ie sum_c pbar_c log10 pbar_c + bn (BN-statistics distance)."""
    p_bar = F.softmax(teacher_logits, dim=1).mean(0)
    terms = {"adv": -kldiv(student_logits, teacher_logits), "oh": pseudo_label_ce(teacher_logits),
             "ie": torch.special.xlogy(p_bar, p_bar).sum() / math.log(10.0),
             "bn": bn_stats_loss(hooks) if hooks else teacher_logits.new_zeros(())}
    weights = {"adv": adv, "oh": oh, "ie": ie, "bn": bn}
    return sum(weights[k] * v for k, v in terms.items()), terms


class BNStatsHook:
    """Forward hook on a BatchNorm2d: records the batch mean/variance of its *input* (DFQ/DeepInversion)."""

    def __init__(self, module: nn.BatchNorm2d):
        self.module = module
        self.mean = self.var = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        x = inputs[0]
        self.mean = x.mean(dim=(0, 2, 3))
        self.var = x.var(dim=(0, 2, 3), unbiased=False)

    def remove(self) -> None:
        self.handle.remove()


def bn_stats_loss(hooks: list[BNStatsHook]) -> torch.Tensor:
    """||cat mu_B - cat mu_run||_2 + ||cat var_B - cat var_run||_2 over all hooked BN layers (spec §2.7)."""
    mu = torch.cat([h.mean for h in hooks])
    var = torch.cat([h.var for h in hooks])
    mu_run = torch.cat([h.module.running_mean for h in hooks]).to(mu.dtype)
    var_run = torch.cat([h.module.running_var for h in hooks]).to(var.dtype)
    return torch.linalg.vector_norm(mu - mu_run) + torch.linalg.vector_norm(var - var_run)
