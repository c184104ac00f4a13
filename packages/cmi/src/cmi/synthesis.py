"""Synthesizers with one interface (`synthesize()` -> dict, `sample(n)` for GAN methods):
CMI (spec §2.4-2.6), DeepInversion and the generative baselines DAFL/ZSKT/DFQ/DFAD (§2.9)."""
from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F
from tenfold.runtime import autocast
from torch import nn

from .augment import Normalizer, global_view, local_view
from .generator import Generator, LargeGenerator
from .hooks import TeacherTaps, feature_dim
from .method import (
    MemoryBank,
    MLPHead,
    activation_loss,
    class_balance_loss,
    contrastive_loss,
    jsdiv,
    kldiv,
    masked_adversarial_loss,
    tv_l1,
)

__all__ = ["CMISynthesizer", "DeepInvSynthesizer", "GenerativeSynthesizer", "BestIterate", "frozen"]


@contextlib.contextmanager
def frozen(*models: nn.Module):
    """eval() and no parameter grads for the duration (pitfall 6); previous modes restored after."""
    saved = [(m.training, [p.requires_grad for p in m.parameters()]) for m in models]
    for m in models:
        m.eval()
        m.requires_grad_(False)
    try:
        yield
    finally:
        for m, (tr, flags) in zip(models, saved):
            m.train(tr)
            for p, f in zip(m.parameters(), flags):
                p.requires_grad_(f)


class BestIterate:
    """Keeps a *clone* of the lowest-cost iterate (pitfall 8); `alias=True` reproduces the reference
    DeepInversion bug (keeps a reference to the live tensor, so the final iterate comes out)."""

    def __init__(self, alias: bool = False):
        self.alias = alias
        self.cost = float("inf")
        self.images = None
        self.extra = None
        self.step = -1

    def update(self, cost: float, step: int, images: torch.Tensor, extra: torch.Tensor | None = None) -> bool:
        if self.images is None or cost < self.cost:
            self.cost, self.step = cost, step
            self.images = images.data if self.alias else images.detach().clone()
            self.extra = None if extra is None else extra.detach().clone()
            return True
        return False


def _targets(b: int, num_classes: int, device) -> torch.Tensor:
    return torch.randint(num_classes, (b,)).sort().values.to(device)


class CMISynthesizer:
    """Generator + learnable latents re-initialised per round, a persistent head (+ its Adam) and bank."""

    def __init__(self, teacher: nn.Module, student: nn.Module | None, num_classes: int, cfg, normalizer: Normalizer,
                 device, img_size: int = 32, channels: int = 3, arch: str | None = None, precision: str = "bf16"):
        self.teacher, self.student, self.num_classes, self.cfg = teacher, student, num_classes, cfg
        self.normalizer, self.device, self.img_size = normalizer, torch.device(device), img_size
        self.precision = precision  # autocast dtype on CUDA (bf16 | fp16 | fp32); CPU runs fp32
        self.generator = Generator(cfg.nz, cfg.ngf, img_size, channels).to(self.device)
        self.taps = TeacherTaps(teacher, list(cfg.feature_layers) or None, arch)
        self.feat_dim = feature_dim(teacher, self.taps, img_size, channels)
        self.head = MLPHead(self.feat_dim, cfg.head_dim).to(self.device)
        self.head_opt = torch.optim.Adam(self.head.parameters(), lr=cfg.lr_g)
        self.bank = MemoryBank(cfg.bank_size, self.device, reference_full_bug=cfg.bank_full_bug)
        self.cost_fn = None  # test seam: cost_fn(step, loss) -> value used for best-iterate selection
        self.record_iterates = False
        self.iterates: list[torch.Tensor] = []

    # one synthesis iteration's losses, exposed for tests (§2.4)
    def losses(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        c = self.cfg
        with autocast(self.device, self.precision):
            xg = global_view(x, self.normalizer)
            t = self.teacher(xg)
        t = t.float()
        l_bn = self.taps.bn_loss() if c.bn > 0 else t.new_zeros(())
        fg = self.taps.features().float()  # read before the local forward overwrites the hooks
        l_oh = F.cross_entropy(t, y)
        l_adv = t.new_zeros(())
        if c.adv > 0 and self.student is not None:
            with autocast(self.device, self.precision):
                s = self.student(xg)
            l_adv = masked_adversarial_loss(s.float(), t)
        out = {"bn": l_bn, "oh": l_oh, "adv": l_adv, "fg": fg}
        loss = c.bn * l_bn + c.oh * l_oh + c.adv * l_adv
        if c.cr > 0:
            xl = local_view(x, self.normalizer)
            self.taps.enabled_bn = False  # L_bn is defined on the global view only (pitfall 7)
            try:
                with autocast(self.device, self.precision):
                    self.teacher(xl)
            finally:
                self.taps.enabled_bn = True
            fl = self.taps.features().float()
            cached = self.bank.get_data(c.n_neg)
            b = x.shape[0]
            if cached is not None:
                d = self.feat_dim
                ql, qg = torch.cat([fl, cached[:, :d]]), torch.cat([fg, cached[:, d:]])
            else:
                ql, qg = fl, fg
            proj = self.head(torch.cat([ql, qg]))
            q, k = proj[: ql.shape[0]], proj[ql.shape[0]:].detach()
            l_cr = contrastive_loss(q, k, b, c.cr_T, split_means=c.split_means)
            loss = loss + c.cr * l_cr
            out.update(cr=l_cr, fl=fl, q=q, k=k, cached=cached)
        else:
            out["cr"] = t.new_zeros(())
        out["loss"] = loss
        return out

    def synthesize(self) -> dict:
        c, dev = self.cfg, self.device
        t0 = time.perf_counter()
        models = [self.teacher] + ([self.student] if self.student is not None else [])
        with frozen(*models):
            z = torch.randn(c.batch_size, c.nz, device=dev).requires_grad_(True)
            y = _targets(c.batch_size, self.num_classes, dev)
            if c.reset_generator:
                self.generator.reset()
            self.generator.train()
            opt = torch.optim.Adam([*self.generator.parameters(), z], lr=c.lr_g, betas=(0.5, 0.999))
            best = BestIterate()
            self.iterates = []
            last = {}
            for it in range(c.g_steps):
                x = self.generator(z)
                terms = self.losses(x, y)
                loss = terms["loss"]
                value = float(loss.detach())
                cost = value if self.cost_fn is None else float(self.cost_fn(it, value))
                feats = torch.cat([terms["fl"], terms["fg"]], 1) if c.cr > 0 else None
                best.update(cost, it, x, feats)
                if self.record_iterates:
                    self.iterates.append(x.detach().clone())
                opt.zero_grad(set_to_none=True)
                self.head_opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if c.cr > 0:
                    self.head_opt.step()
                last = {k: float(v.detach()) for k, v in terms.items() if k in ("bn", "oh", "adv", "cr", "loss")}
        if best.extra is not None:
            self.bank.add(best.extra)
        return {"images": best.images.float().clamp(0, 1), "best_step": best.step, "best_cost": best.cost,
                "seconds": time.perf_counter() - t0, **{f"syn_{k}": v for k, v in last.items()}}

    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "head": self.head.state_dict(),
                "head_opt": self.head_opt.state_dict(), "bank": self.bank.state_dict()}

    def load_state_dict(self, sd: dict) -> None:
        self.generator.load_state_dict(sd["generator"])
        self.head.load_state_dict(sd["head"])
        self.head_opt.load_state_dict(sd["head_opt"])
        self.bank.load_state_dict(sd["bank"])


def jitter_and_flip(x: torch.Tensor, max_shift: int, flip: bool = True, per_sample: bool = False) -> torch.Tensor:
    """DeepInversion's jitter: one random roll (up to max_shift px) and one flip for the *whole batch*
    (reference behaviour); `per_sample=True` draws them per image."""
    if per_sample:
        return torch.cat([jitter_and_flip(x[i:i + 1], max_shift, flip) for i in range(x.shape[0])])
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,)))
    out = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if flip and bool(torch.rand(()) < 0.5):
        out = out.flip(3)
    return out


class DeepInvSynthesizer:
    """Pixels optimised directly in normalised space (§2.9): bn*L_bn + oh*CE + adv*(-JS_T3) + tv*TV + l2*||x||."""

    def __init__(self, teacher: nn.Module, student: nn.Module | None, num_classes: int, cfg, normalizer: Normalizer,
                 device, img_size: int = 32, channels: int = 3, arch: str | None = None, precision: str = "bf16"):
        self.teacher, self.student, self.num_classes, self.cfg = teacher, student, num_classes, cfg
        self.normalizer, self.device = normalizer, torch.device(device)
        self.precision = precision
        self.img_size, self.channels = img_size, channels
        self.taps = TeacherTaps(teacher, [], arch, features=False)
        self.cost_fn = None
        self.record_iterates = False
        self.iterates: list[torch.Tensor] = []

    def synthesize(self) -> dict:
        c, dev = self.cfg, self.device
        t0 = time.perf_counter()
        lo = self.normalizer(torch.zeros(1, self.channels, 1, 1, device=dev))
        hi = self.normalizer(torch.ones(1, self.channels, 1, 1, device=dev))
        models = [self.teacher] + ([self.student] if self.student is not None else [])
        with frozen(*models):
            inputs = torch.randn(c.batch_size, self.channels, self.img_size, self.img_size, device=dev)
            inputs.requires_grad_(True)
            y = _targets(c.batch_size, self.num_classes, dev)
            opt = torch.optim.Adam([inputs], lr=c.lr_g, betas=(0.5, 0.99))
            best = BestIterate(alias=c.alias_best_bug)
            self.iterates = []
            last = {}
            for it in range(c.g_steps):
                x = jitter_and_flip(inputs, max(self.img_size // 8, 1), per_sample=c.per_sample_jitter)
                with autocast(dev, self.precision):
                    t = self.teacher(x)
                t = t.float()
                l_bn = self.taps.bn_loss() if c.bn > 0 else t.new_zeros(())
                l_oh = F.cross_entropy(t, y)
                l_adv = t.new_zeros(())
                if c.adv > 0 and self.student is not None:
                    with autocast(dev, self.precision):
                        s = self.student(x)
                    l_adv = -jsdiv(s.float(), t, T=3.0)
                loss = c.bn * l_bn + c.oh * l_oh + c.adv * l_adv + c.tv * tv_l1(inputs) + c.l2 * inputs.norm()
                value = float(loss.detach())
                cost = value if self.cost_fn is None else float(self.cost_fn(it, value))
                best.update(cost, it, inputs)
                if self.record_iterates:
                    self.iterates.append(inputs.detach().clone())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    inputs.data = torch.max(torch.min(inputs, hi), lo)
                last = {"bn": float(l_bn.detach()), "oh": float(l_oh.detach()), "adv": float(l_adv.detach()),
                        "loss": value}
        images = self.normalizer(best.images.detach(), reverse=True).clamp(0, 1)
        return {"images": images, "best_step": best.step, "best_cost": best.cost, "best_raw": best.images,
                "seconds": time.perf_counter() - t0, **{f"syn_{k}": v for k, v in last.items()}}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, sd: dict) -> None:
        pass


class GenerativeSynthesizer:
    """DAFL / ZSKT / DFQ / DFAD: a persistent LargeGenerator trained adversarially/with priors (§2.9)."""

    def __init__(self, teacher: nn.Module, student: nn.Module | None, num_classes: int, cfg, normalizer: Normalizer,
                 device, img_size: int = 32, channels: int = 3, arch: str | None = None, precision: str = "bf16"):
        self.teacher, self.student, self.num_classes, self.cfg = teacher, student, num_classes, cfg
        self.normalizer, self.device = normalizer, torch.device(device)
        self.precision = precision
        self.generator = LargeGenerator(cfg.nz, cfg.ngf, img_size, channels).to(self.device)
        self.opt = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr_g, betas=(0.5, 0.999))
        self.taps = TeacherTaps(teacher, [], arch, features=False) if cfg.bn > 0 else None

    def crit(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(s, t) if self.cfg.gan_loss == "l1" else kldiv(s, t, T=1.0)

    def generator_losses(self, z: torch.Tensor) -> dict:
        c = self.cfg
        x = self.normalizer(self.generator(z))
        with autocast(self.device, self.precision):
            t, feat = self.teacher(x, return_features=True)
        t, feat = t.float(), feat.float()
        zero = t.new_zeros(())
        l_bn = self.taps.bn_loss() if self.taps is not None else zero
        l_oh = F.cross_entropy(t, t.argmax(1)) if c.oh > 0 else zero
        l_act = activation_loss(feat) if c.act > 0 else zero
        l_bal = class_balance_loss(t) if c.balance > 0 else zero
        l_adv = zero
        if c.adv > 0 and self.student is not None:
            with autocast(self.device, self.precision):
                s = self.student(x)
            l_adv = -self.crit(s.float(), t)
        loss = c.bn * l_bn + c.oh * l_oh + c.adv * l_adv + c.balance * l_bal + c.act * l_act
        return {"loss": loss, "bn": l_bn, "oh": l_oh, "adv": l_adv, "balance": l_bal, "act": l_act}

    def synthesize(self) -> dict:
        c = self.cfg
        t0 = time.perf_counter()
        models = [self.teacher] + ([self.student] if self.student is not None else [])
        last = {}
        with frozen(*models):
            self.generator.train()
            for _ in range(c.g_steps):
                z = torch.randn(c.batch_size, c.nz, device=self.device)
                terms = self.generator_losses(z)
                self.opt.zero_grad(set_to_none=True)
                terms["loss"].backward()
                self.opt.step()
                last = {k: float(v.detach()) for k, v in terms.items()}
        return {"images": None, "n_images": c.g_steps * c.batch_size, "seconds": time.perf_counter() - t0,
                **{f"syn_{k}": v for k, v in last.items()}}

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """normalize(G(z)) for fresh z, G in eval mode, no grad."""
        was = self.generator.training
        self.generator.eval()
        x = self.normalizer(self.generator(torch.randn(n, self.cfg.nz, device=self.device)))
        self.generator.train(was)
        return x

    @torch.no_grad()
    def preview(self, n: int, seed: int = 0) -> torch.Tensor:
        """G(z) in [0, 1] for a fixed z from its own RNG, G in eval mode: a picture that leaves the training RNG
        streams and BN statistics untouched (resume stays exact) and compares over the run."""
        z = torch.randn(n, self.cfg.nz, generator=torch.Generator().manual_seed(seed)).to(self.device)
        was = self.generator.training
        self.generator.eval()
        x = self.generator(z).float()
        self.generator.train(was)
        return x

    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, sd: dict) -> None:
        self.generator.load_state_dict(sd["generator"])
        self.opt.load_state_dict(sd["opt"])
