"""The four-player game of MosaicKD (spec §2.2, §2.6): generator G, patch discriminator D and student S are
trained, the teacher T is frozen. One outer iteration = one D step, one G step, `kd_steps` student steps, then
every cosine schedule steps once (pitfall 7).

    game = MosaicGame(G, D, S, T, normalizer_in_domain, total_iters=..., ...)
    metrics = game.outer_step(x_real_ood, next_ood_batch)
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from tenfold.runtime import autocast, grad_scaler, optimizer_step
from torch import nn

from .method import discriminator_loss, generator_loss, student_kd_loss

__all__ = ["MosaicGame", "frozen", "make_student_optimizer", "cosine"]


@contextlib.contextmanager
def frozen(*modules: nn.Module | None):
    """Let gradients flow *through* modules without computing gradients *for* their parameters, so the G
    step leaves no stale gradients in D and S (pitfall 9) and skips their weight-gradient work."""
    mods = [m for m in modules if m is not None]
    saved = [[p.requires_grad for p in m.parameters()] for m in mods]
    for m in mods:
        m.requires_grad_(False)
    try:
        yield
    finally:
        for m, flags in zip(mods, saved):
            for p, f in zip(m.parameters(), flags):
                p.requires_grad_(f)


def make_student_optimizer(student: nn.Module, lr: float, momentum: float, weight_decay: float):
    return torch.optim.SGD(student.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def cosine(opt, total: int):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(int(total), 1))


class MosaicGame:
    def __init__(self, generator: nn.Module, discriminator: nn.Module | None, student: nn.Module,
                 teacher: nn.Module, normalizer: nn.Module, *, total_iters: int, local: float = 1.0,
                 align: float = 1.0, adv: float = 1.0, balance: float = 10.0, tau: float = 1.0, kd_steps: int = 5,
                 kd_use_ood: bool = True, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 1e-4,
                 lr_g: float = 1e-3, betas=(0.5, 0.999), device: torch.device | str = "cpu", precision: str = "bf16"):
        self.device = torch.device(device)
        self.G, self.S, self.T = generator, student, teacher
        # lam_local = 0 removes the patch game entirely (the spec's data-free ablation)
        self.D = discriminator if local > 0 else None
        self.norm = normalizer.to(self.device)
        self.T.eval().requires_grad_(False)  # pitfall 8: BN running stats frozen, no teacher gradients
        self.w = {"local": local, "align": align, "adv": adv, "balance": balance}
        self.tau, self.kd_steps, self.kd_use_ood, self.precision = tau, kd_steps, kd_use_ood, precision
        self.scaler = grad_scaler(self.device, precision)  # one scaler, updated after every optimizer step
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=lr_g, betas=tuple(betas))
        self.opt_s = make_student_optimizer(self.S, lr, momentum, weight_decay)
        self.sched_g, self.sched_s = cosine(self.opt_g, total_iters), cosine(self.opt_s, total_iters)
        if self.D is not None:
            self.opt_d = torch.optim.Adam(self.D.parameters(), lr=lr_g, betas=tuple(betas))
            self.sched_d = cosine(self.opt_d, total_iters)

    def stateful(self) -> dict:
        out = {"generator": self.G, "student": self.S, "opt_g": self.opt_g, "opt_s": self.opt_s,
               "sched_g": self.sched_g, "sched_s": self.sched_s}
        if self.D is not None:
            out.update(discriminator=self.D, opt_d=self.opt_d, sched_d=self.sched_d)
        if self.scaler.is_enabled():  # fp16 on CUDA: the loss scale resumes too
            out["scaler"] = self.scaler
        return out

    def _ac(self):
        return autocast(self.device, self.precision)

    def synthesize(self, n: int) -> torch.Tensor:
        """x_syn = N_id(G(z)), z ~ N(0, I); G stays in train mode as in the code."""
        z = torch.randn(n, self.G.nz, device=self.device)
        with self._ac():
            return self.norm(self.G(z).float())

    def d_step(self, x_syn: torch.Tensor, x_real: torch.Tensor) -> float:
        """Patch discrimination on the detached fakes vs in-domain-normalised OOD images (separate forwards:
        D's BN sees each batch alone, as in the code)."""
        with self._ac():
            d_fake, d_real = self.D(x_syn.detach()).float(), self.D(x_real).float()
        loss = discriminator_loss(d_fake, d_real, self.w["local"])
        optimizer_step(loss, self.opt_d, self.scaler)
        return loss.detach()

    def g_step(self, x_syn: torch.Tensor):
        """Same x_syn as the D step, D already updated; S in train mode (its BN stats see the fakes)."""
        with frozen(self.D, self.S), self._ac():
            t = self.T(x_syn).float()
            s = self.S(x_syn).float()
            d = self.D(x_syn).float() if self.D is not None else None
            loss = generator_loss(d, t, s, **self.w)
        optimizer_step(loss.total, self.opt_g, self.scaler)
        return loss

    def student_step(self, n_syn: int, x_ood: torch.Tensor | None = None,
                     t_ood: torch.Tensor | None = None) -> torch.Tensor:
        """KD on concat(synthetic, OOD) (pitfall 5). `t_ood`: cached teacher logits of x_ood (optional)."""
        with torch.no_grad():
            x_syn = self.synthesize(n_syn)
            with self._ac():
                if x_ood is None:
                    x, t = x_syn, self.T(x_syn).float()
                elif t_ood is None:
                    x = torch.cat([x_syn, x_ood])
                    t = self.T(x).float()
                else:
                    x, t = torch.cat([x_syn, x_ood]), torch.cat([self.T(x_syn).float(), t_ood.float()])
        with self._ac():
            s = self.S(x).float()
        loss = student_kd_loss(s, t, self.tau)
        optimizer_step(loss, self.opt_s, self.scaler)
        return loss.detach()

    def outer_step(self, x_real: torch.Tensor,
                   next_ood: Callable[[], tuple[torch.Tensor, torch.Tensor | None]] | None = None) -> dict:
        """One iteration of spec §2.6. `next_ood()` -> (x'' batch, cached teacher logits or None)."""
        self.S.train()
        self.G.train()
        b = x_real.shape[0]  # z has the real batch's size (fixes code quirk 3: mismatched partial batches)
        x_syn = self.synthesize(b)
        out = {}
        if self.D is not None:
            self.D.train()
            out["d_loss"] = self.d_step(x_syn, x_real)
        g = self.g_step(x_syn)
        out.update({k: v for k, v in g.__dict__.items()})
        out = {("g_" + k if k in g.__dict__ else k): (v.detach() if torch.is_tensor(v) else v) for k, v in out.items()}
        s_losses = []
        for _ in range(self.kd_steps):
            if self.kd_use_ood and next_ood is not None:
                x_ood, t_ood = next_ood()
                s_losses.append(self.student_step(b, x_ood, t_ood))
            else:
                s_losses.append(self.student_step(b))
        self.sched_s.step()
        self.sched_g.step()
        if self.D is not None:
            self.sched_d.step()
        out["kd_loss"] = torch.stack(s_losses).mean()
        out["lr"] = self.sched_s.get_last_lr()[0]
        return out
