"""The losses and small modules of CMI (spec §2.4, §2.6, §2.9) as pure functions on tensors.

Equation numbers refer to /work/shared/specs/cmi.md.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tenfold.errors import ConfigError
from torch import nn

__all__ = ["bn_stat_loss", "contrastive_loss", "masked_adversarial_loss", "kldiv", "jsdiv", "tv_l1",
           "class_balance_loss", "activation_loss", "MLPHead", "MemoryBank"]


def bn_stat_loss(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor) -> torch.Tensor:
    """§2.2(1): r_l = ||running_var - var_biased(x)||_2 + ||running_mean - mean(x)||_2 on the BN *input* x.

    Plain (unsquared) L2 norms over channels, biased variance over (B, H, W)."""
    dims = [0] + list(range(2, x.dim()))
    mean = x.mean(dims)
    var = x.var(dims, unbiased=False)
    return torch.linalg.vector_norm(running_var - var) + torch.linalg.vector_norm(running_mean - mean)


def contrastive_loss(q: torch.Tensor, k: torch.Tensor, batch: int, tau: float,
                     split_means: bool = True) -> torch.Tensor:
    """§2.4 steps 4-6. q, k: (B+K, d) L2-normalised rows; row i's positive is column i.

    The key side is detached (stop-gradient). With cached rows (K > 0) the loss is the *sum of two
    means*, mean over the B current rows + mean over the K bank rows, so the current batch is not
    drowned by K >> B cached rows (pitfall 3). `split_means=False` gives the single mean (ablation)."""
    logits = q @ k.detach().t() / tau
    target = torch.arange(q.shape[0], device=q.device)
    ce = F.cross_entropy(logits, target, reduction="none")
    if q.shape[0] > batch and split_means:
        return ce[:batch].mean() + ce[batch:].mean()
    return ce.mean()


def masked_adversarial_loss(s_logits: torch.Tensor, t_logits: torch.Tensor) -> torch.Tensor:
    """§2.4: L_adv = -(1/B) sum_i m_i KL(softmax(t_i) || softmax(s_i)), m_i = [argmax s_i == argmax t_i].

    The mask keeps samples the student already gets wrong near the teacher's decision (pitfall 10)."""
    mask = (s_logits.argmax(1) == t_logits.argmax(1)).float()
    kl = F.kl_div(F.log_softmax(s_logits, 1), F.log_softmax(t_logits, 1), reduction="none",
                  log_target=True).sum(1)
    return -(mask * kl).mean()


def kldiv(s_logits: torch.Tensor, t_logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """KD loss: T^2 * KL(softmax(t/T) || softmax(s/T)) with 'batchmean' reduction (§2.7)."""
    return F.kl_div(F.log_softmax(s_logits / T, 1), F.log_softmax(t_logits / T, 1), reduction="batchmean",
                    log_target=True) * (T * T)


def jsdiv(s_logits: torch.Tensor, t_logits: torch.Tensor, T: float = 3.0) -> torch.Tensor:
    """DeepInversion's Jensen-Shannon term (§2.9): P, Q, M clamped to [0.01, 0.99], written in F.kl_div's form."""
    p = F.softmax(s_logits / T, 1).clamp(0.01, 0.99)
    q = F.softmax(t_logits / T, 1).clamp(0.01, 0.99)
    m = (0.5 * (p + q)).clamp(0.01, 0.99)
    return 0.5 * F.kl_div(p.log(), m, reduction="batchmean") + 0.5 * F.kl_div(q.log(), m, reduction="batchmean")


def tv_l1(x: torch.Tensor) -> torch.Tensor:
    """TV prior: mean |difference| over 4 neighbour directions (right, down, two diagonals), summed."""
    d1 = x[:, :, :, :-1] - x[:, :, :, 1:]
    d2 = x[:, :, :-1, :] - x[:, :, 1:, :]
    d3 = x[:, :, 1:, :-1] - x[:, :, :-1, 1:]
    d4 = x[:, :, :-1, :-1] - x[:, :, 1:, 1:]
    return d1.abs().mean() + d2.abs().mean() + d3.abs().mean() + d4.abs().mean()


def class_balance_loss(logits: torch.Tensor) -> torch.Tensor:
    """DAFL's information-entropy term: sum_c p̄_c log p̄_c (minimum -log C at a uniform mean prediction)."""
    p = F.softmax(logits, 1).mean(0)
    return (p * torch.log(p.clamp_min(1e-12))).sum()


def activation_loss(features: torch.Tensor) -> torch.Tensor:
    """DAFL's activation term: -mean |penultimate feature|."""
    return -features.abs().mean()


class MLPHead(nn.Module):
    """§2.5 projection head: Linear(D, D) -> ReLU -> Linear(D, dim) -> L2-normalise rows."""

    def __init__(self, in_dim: int, dim: int = 256, hidden: int | None = None):
        super().__init__()
        hidden = hidden or in_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=1)


class MemoryBank:
    """§2.6 ring buffer of raw teacher features [f_local || f_global] (2D wide) of past best iterates.

    Kept on the compute device and sampled with torch (pitfall 13). The reference returns *zero*
    negatives in the round the bank is exactly full (ptr wrapped to 0); that is fixed here, and
    `reference_full_bug=True` restores it."""

    def __init__(self, capacity: int, device: torch.device | str = "cpu", reference_full_bug: bool = False):
        if capacity <= 0:
            raise ConfigError(f"memory bank capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.reference_full_bug = reference_full_bug
        self.data: torch.Tensor | None = None
        self.ptr = 0
        self.n_updates = 0

    @property
    def n_stored(self) -> int:
        return min(self.n_updates, self.capacity)

    def add(self, rows: torch.Tensor) -> None:
        b = rows.shape[0]
        if self.capacity % b != 0:
            raise ConfigError(f"memory bank capacity {self.capacity} is not a multiple of the synthesis batch {b}; "
                              f"choose synth.bank_size as a multiple of synth.batch_size")
        if self.data is None:
            self.data = torch.zeros(self.capacity, rows.shape[1], device=self.device, dtype=rows.dtype)
        self.data[self.ptr:self.ptr + b] = rows.detach().to(self.device)
        self.ptr = (self.ptr + b) % self.capacity
        self.n_updates += b

    def get_data(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """k distinct random rows (fewer if fewer are stored); None if none are available."""
        if self.data is None:
            return None
        if self.reference_full_bug:
            n = self.capacity if self.n_updates > self.capacity else self.ptr
        else:
            n = self.n_stored
        k = min(k, n)
        if k <= 0:
            return None
        idx = torch.randperm(n, generator=generator)[:k].to(self.device)
        return self.data[idx]

    def state_dict(self) -> dict:
        data = None if self.data is None else self.data[: self.n_stored].cpu().clone()
        return {"capacity": self.capacity, "ptr": self.ptr, "n_updates": self.n_updates, "data": data,
                "width": None if self.data is None else self.data.shape[1]}

    def load_state_dict(self, sd: dict) -> None:
        if sd["capacity"] != self.capacity:
            raise ConfigError(f"checkpoint bank capacity {sd['capacity']} != configured {self.capacity}")
        self.ptr, self.n_updates = sd["ptr"], sd["n_updates"]
        self.data = None
        if sd["data"] is not None:
            self.data = torch.zeros(self.capacity, sd["width"], device=self.device, dtype=sd["data"].dtype)
            self.data[: sd["data"].shape[0]] = sd["data"].to(self.device)


def high_t_limit(s_logits: torch.Tensor, t_logits: torch.Tensor) -> torch.Tensor:
    """sum over the batch of ||centered (s - t)||^2 / (2 C N): the T -> inf limit of kldiv (§2.7)."""
    d = s_logits - t_logits
    d = d - d.mean(1, keepdim=True)
    n, c = d.shape
    return (d ** 2).sum() / (2 * c * n)

