"""Baselines of the paper's table (spec §2.7), at the same teacher/student/data as MosaicKD:
  * vanilla  — "blind" KD on the OOD images (kd_vanilla.py: tau = 5, in-domain train augmentation);
  * balanced — the same, with the OOD set resampled so the teacher's pseudo-labels are class-balanced;
  * datafree — a generator trained against the teacher alone (kd_datafree.py, DFQ-style:
               adversarial + one-hot + information-entropy + BN-statistics terms; DFAD = adversarial only).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tenfold.data import data_root
from tenfold.errors import ConfigError
from tenfold.loop import Trainer, assert_finite
from tenfold.runtime import autocast, grad_scaler, optimizer_step
from torch import nn

from .common import (
    Timer,
    build_teacher,
    evaluate,
    export_model,
    grid_path,
    in_domain_test,
    norms,
    ood_pool,
    save_synthetic,
    setup_run,
    teacher_logits,
)
from .config import KDConfig
from .data import DATA_SEED, BatchStream
from .game import cosine, frozen
from .method import BNStatsHook, datafree_generator_loss, student_kd_loss
from .nets import UpsampleGenerator, build_classifier

__all__ = ["balanced_indices", "DataFreeGame", "run_kd"]


def balanced_indices(pseudo_labels: torch.Tensor, n: int, seed: int = DATA_SEED) -> torch.Tensor:
    """n indices drawn so that every pseudo-class the teacher predicts gets n / (#predicted classes) of them
    (with replacement inside a class; fixed seed)."""
    labels = pseudo_labels.cpu().numpy()
    present = np.unique(labels)
    rng = np.random.default_rng(seed)
    per = [n // len(present) + (1 if i < n % len(present) else 0) for i in range(len(present))]
    out = [rng.choice(np.flatnonzero(labels == c), size=k, replace=True) for c, k in zip(present, per)]
    return torch.from_numpy(np.sort(np.concatenate(out)))


class DataFreeGame:
    """One G step (z -> N(G(z)) against T and S), then `kd_steps` student steps on fresh synthetic batches."""

    def __init__(self, generator: nn.Module, student: nn.Module, teacher: nn.Module, normalizer: nn.Module,
                 opt_s, *, adv=1.0, oh=1.0, ie=20.0, bn=1.0, lr_g=1e-3, kd_steps=5, tau=1.0, device="cpu",
                 precision="bf16"):
        self.G, self.S, self.T, self.norm = generator, student, teacher.eval().requires_grad_(False), normalizer
        self.w = {"adv": adv, "oh": oh, "ie": ie, "bn": bn}
        self.kd_steps, self.tau, self.device, self.precision = kd_steps, tau, torch.device(device), precision
        self.norm = normalizer.to(self.device)  # run_kd hands over the CPU-built in-domain normaliser
        self.scaler = grad_scaler(self.device, precision)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=lr_g)
        self.opt_s = opt_s
        self.hooks = [BNStatsHook(m) for m in teacher.modules() if isinstance(m, nn.BatchNorm2d)] if bn > 0 else []

    def synthesize(self, n: int) -> torch.Tensor:
        z = torch.randn(n, self.G.nz, device=self.device)
        with autocast(self.device, self.precision):
            return self.norm(self.G(z).float())

    def step(self, batch_size: int) -> dict:
        self.G.train()
        self.S.train()
        x = self.synthesize(batch_size)
        with frozen(self.S), autocast(self.device, self.precision):
            t, s = self.T(x).float(), self.S(x).float()
        loss_g, terms = datafree_generator_loss(t, s, self.hooks, **self.w)
        optimizer_step(loss_g, self.opt_g, self.scaler)
        losses = []
        for _ in range(self.kd_steps):
            with torch.no_grad():
                xs = self.synthesize(batch_size)
                with autocast(self.device, self.precision):
                    t = self.T(xs).float()
            with autocast(self.device, self.precision):
                s = self.S(xs).float()
            loss = student_kd_loss(s, t, self.tau)
            optimizer_step(loss, self.opt_s, self.scaler)
            losses.append(loss.detach())
        return {"loss": torch.stack(losses).mean(), "g_total": loss_g.detach(),
                **{f"g_{k}": v.detach() for k, v in terms.items()}}


def _student_opt(cfg: KDConfig, student: nn.Module):
    if cfg.optimizer == "adam":
        return torch.optim.Adam(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(student.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def run_kd(cfg: KDConfig, resume: str | None = None, stop_at: int | None = None) -> dict:
    timer = Timer()
    device = setup_run(cfg)
    d = cfg.data
    root = data_root(cfg.data_root)
    teacher, num_classes = build_teacher(cfg.model, device)
    test = in_domain_test(d, root)
    norm_id, norm_ood = norms(d)
    student = build_classifier(cfg.model.student, num_classes, d.channels).to(device)
    opt = _student_opt(cfg, student)
    out = Path(cfg.out)
    track = {"best_top1": -1.0, "best_step": 0, "last": {}}
    stateful = {"student": student, "opt": opt}
    prec = cfg.precision if cfg.amp else "fp32"
    extra: dict = {}

    if cfg.method == "datafree":
        G = UpsampleGenerator(cfg.generator.nz, cfg.generator.ngf, d.img_size, d.channels,
                              cfg.generator.width_mult).to(device)
        df = cfg.datafree
        game = DataFreeGame(G, student, teacher, norm_id, opt, adv=df.adv, oh=df.oh, ie=df.ie, bn=df.bn,
                            lr_g=df.lr_g, kd_steps=df.kd_steps, tau=cfg.T, device=device, precision=prec)
        ipe = df.g_steps_per_epoch
        total = cfg.steps or cfg.epochs * ipe
        sched = cosine(opt, -(-total // ipe))  # the code steps the student schedule once per epoch
        stateful.update(generator=G, opt_g=game.opt_g, sched=sched)
        batches = lambda e, s: range(s, ipe)  # noqa: E731  (no data: one item per G step)
        per_step_images = df.kd_steps * cfg.batch_size

        def step(_, st):
            m = game.step(cfg.batch_size)
            assert_finite(m["g_total"], st.step + 1)
            if (st.step + 1) % ipe == 0:
                sched.step()
            return m
    else:
        pool = ood_pool(d, root)
        if cfg.augment == "ood":
            norm, augment = norm_ood, True
        else:
            norm, augment = norm_id, cfg.augment == "in_domain"
        if cfg.method == "balanced":
            pseudo = teacher_logits(teacher, pool, norm, device, precision=prec).argmax(1)
            pool = pool.subset(balanced_indices(pseudo, len(pool)))
        if d.cache_teacher_ood and augment:
            raise ConfigError("data.cache_teacher_ood needs augment=none (augmented images change the logits)")
        t_cache = teacher_logits(teacher, pool, norm, device, precision=prec) if d.cache_teacher_ood else None
        scaler = grad_scaler(device, prec)
        stream = BatchStream(pool, cfg.batch_size, seed=cfg.seed, normalizer=norm, augment=augment, device=device)
        ipe = stream.batches_per_epoch()
        total = cfg.steps or cfg.epochs * ipe
        sched = cosine(opt, total)  # kd_vanilla.py: cosine per iteration
        stateful["sched"] = sched
        batches = lambda e, s: stream.epoch_batches(e, s)  # noqa: E731
        per_step_images = None

        def step(batch, st):
            x, idx = batch
            student.train()
            with torch.no_grad(), autocast(device, prec):
                t = t_cache[idx.to(t_cache.device)] if t_cache is not None else teacher(x).float()
            with autocast(device, prec):
                s = student(x).float()
            loss = student_kd_loss(s, t, cfg.T)
            optimizer_step(loss, opt, scaler)
            sched.step()
            return {"loss": loss.detach(), "lr": sched.get_last_lr()[0]}

    eval_every = cfg.eval_every or ipe
    trainer = Trainer(out, kind=f"mosaickd-kd-{cfg.method}", config=cfg, stateful=stateful, total_steps=total,
                      batches=batches, ckpt_every=cfg.ckpt_every, log_every=cfg.log_every, desc=f"kd-{cfg.method}",
                      batch_size_of=(lambda b: per_step_images) if per_step_images else None,
                      extra_state=lambda: {"track": dict(track), **extra},
                      load_extra_state=lambda e: track.update(e["track"]))
    resumed = trainer.maybe_resume(resume)

    def on_step_end(st, last):
        if st.step % eval_every and st.step != total:
            return
        acc = evaluate(student, test, norm_id, device, precision=prec)
        track["last"] = {"step": st.step, **acc}
        if acc["top1"] > track["best_top1"]:
            track.update(best_top1=acc["top1"], best_step=st.step)
        trainer.logger.log(st.step, split="test", **acc, best_top1=track["best_top1"])
        if cfg.method == "datafree":
            save_synthetic(G, grid_path(out, st.step), device)
        if not cfg.ckpt_every:
            trainer.save()

    trainer.run(step, stop_at=stop_at, on_step_end=on_step_end)
    summary = {"method": f"kd-{cfg.method}", "steps": trainer.state.step, "total_steps": total,
               "student_steps": trainer.state.step * (cfg.datafree.kd_steps if cfg.method == "datafree" else 1),
               "batch_size": cfg.batch_size, "resumed": resumed, "best_top1": track["best_top1"],
               "best_step": track["best_step"], "last_top1": track["last"].get("top1"),
               "last_top5": track["last"].get("top5"), "student_images_per_s": round(trainer.samples_per_s, 2),
               "wall_s": round(timer.seconds, 2), "device": str(device)}
    if trainer.state.step >= total:
        if cfg.eval_teacher:
            summary["teacher_top1"] = evaluate(teacher, test, norm_id, device, precision=prec)["top1"]
        export_model(student, out / "student.pt", cfg.model.student, num_classes,
                     norm=d.in_domain_norm or d.in_domain, in_chans=d.channels, test_top1=summary["last_top1"])
        if cfg.method == "datafree":
            save_synthetic(G, out / "synthetic.png", device)
    trainer.logger.summary(**summary)
    return summary
