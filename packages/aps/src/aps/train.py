"""APS pre-training: data -> model -> K optimizer steps per batch (spec §2.5) on tenfold's Trainer."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from tenfold import config as config_mod
from tenfold import distributed, runtime
from tenfold.data import make_loader, steps_per_epoch
from tenfold.data import root as data_root_mod
from tenfold.loop import Trainer
from tenfold.meters import MetricLogger
from torch import nn

from .augment import TwoViewAPSTransform, eval_transform
from .config import PretrainConfig
from .data import build_splits
from .evaluate import knn_monitor, linear_probe_monitor
from .method import aps_loss, lr_factor
from .model import APSModel, build_backbone

__all__ = ["build_model", "build_optimizer", "pretrain_step", "pretrain_forward", "batch_to_device", "maybe_compile",
           "StepTimer", "run", "CKPT_KIND"]

CKPT_KIND = "aps-pretrain"


def build_model(cfg: PretrainConfig) -> APSModel:
    return APSModel(build_backbone(cfg.model), cfg.model.hidden_dim, cfg.model.out_dim)


def maybe_compile(module: nn.Module, mcfg) -> nn.Module:
    """torch.compile the module used for the forward passes when model.compile is set; checkpoints keep the
    uncompiled module's keys (the compiled wrapper shares its parameters)."""
    if not getattr(mcfg, "compile", False):
        return module
    return torch.compile(module, backend=mcfg.compile_backend, dynamic=False)


def build_optimizer(model: nn.Module, ocfg) -> torch.optim.AdamW:
    """AdamW at lr_base·batch/256. Official: weight decay on every parameter; the flag excludes 1-D/pos/cls."""
    lr = ocfg.lr_base * ocfg.batch_size / 256
    if not ocfg.wd_exclude_norm_bias:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    else:
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            skip = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token"))
            (no_decay if skip else decay).append(p)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(ocfg.betas), eps=ocfg.eps,
                             weight_decay=ocfg.weight_decay)


def pretrain_step(model: nn.Module, opt: torch.optim.Optimizer, batch, *, device: torch.device, tau: float,
                  full_tokens: bool, lr_of=None, amp: bool = True, step: int = 0, precision: str = "bf16",
                  scaler: torch.amp.GradScaler | None = None) -> dict:
    """One loader batch = K optimizer steps, one per (I1[k], I2[k]) pair on the same images (pitfall 5).

    No host synchronisation inside: the returned "loss" is the mean of the K sub-step losses, a device tensor
    that is non-finite when any sub-step was, so the caller's once-per-batch NaN guard (tenfold's Trainer) stops
    the run before any checkpoint holds the damaged parameters."""
    x1, i1, x2, i2 = batch_to_device(batch, device)
    k_steps = 1 if full_tokens else i1.shape[1]
    losses, sims = [], []
    for k in range(k_steps):
        if lr_of is not None:
            lr = lr_of(k)
            for g in opt.param_groups:
                g["lr"] = lr
        idx1, idx2 = (None, None) if full_tokens else (i1[:, k], i2[:, k])
        loss, sim = pretrain_forward(model, x1, idx1, x2, idx2, device=device, tau=tau, amp=amp,
                                     precision=precision)
        runtime.optimizer_step(loss, opt, scaler)  # scaled backward only for fp16 on CUDA (the official AMP)
        losses.append(loss.detach())
        sims.append(sim)
    return {"loss": torch.stack(losses).mean(), "loss_last": losses[-1], "pos_cos": torch.stack(sims).mean(),
            "lr": opt.param_groups[0]["lr"]}


def pretrain_forward(model: nn.Module, x1, idx1, x2, idx2, *, device: torch.device, tau: float, amp: bool = True,
                     precision: str = "bf16") -> tuple[torch.Tensor, torch.Tensor]:
    """The forward half of one optimizer sub-step: (loss, mean positive cosine) under the run's autocast."""
    with runtime.autocast(device, precision, enabled=amp):
        p1, p2, z1, z2 = model(x1, idx1, x2, idx2)
    return aps_loss(p1, p2, z1, z2, tau)


def batch_to_device(batch, device: torch.device):
    """(x1, I1, x2, I2) of a loader batch on the device (non-blocking from pinned memory); images become float
    there, after the copy."""
    (x1, i1, x2, i2), _ = batch
    x1, x2 = x1.to(device, non_blocking=True), x2.to(device, non_blocking=True)
    i1, i2 = i1.to(device, non_blocking=True), i2.to(device, non_blocking=True)
    return _to_float(x1), i1, _to_float(x2), i2


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.float()


class StepTimer:
    """Seconds spent in training steps without a host sync per step: CUDA events whose elapsed times are read
    only once they are `lag` steps old (long finished by then), perf_counter on other devices."""

    def __init__(self, device: torch.device, lag: int = 64):
        self.cuda = device.type == "cuda"
        self.lag, self.pending, self.total, self._t0 = lag, [], 0.0, None

    def start(self):
        if self.cuda:
            self._t0 = torch.cuda.Event(enable_timing=True)
            self._t0.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self):
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.pending.append((self._t0, end))
            while len(self.pending) > self.lag:
                self._collect(*self.pending.pop(0))
        else:
            self.total += time.perf_counter() - self._t0

    def _collect(self, a, b):
        b.synchronize()
        self.total += a.elapsed_time(b) / 1000.0

    def seconds(self) -> float:
        while self.pending:
            self._collect(*self.pending.pop(0))
        return self.total


def _setup(cfg) -> torch.device:
    if getattr(cfg, "threads", 0) > 0:
        torch.set_num_threads(cfg.threads)
    device = runtime.select_device(cfg.device)
    distributed.init(device)
    runtime.seed_everything(cfg.seed + distributed.rank())
    runtime.set_deterministic(cfg.deterministic)
    return device


def run(cfg: PretrainConfig, resume: str | None = None, stop_at: int | None = None) -> dict:
    device = _setup(cfg)
    out = Path(cfg.out)
    if distributed.is_main():
        config_mod.save(cfg, out / "config.yaml")
    world = distributed.world_size()
    root = data_root_mod.data_root(cfg.data_root)
    two_view = TwoViewAPSTransform(cfg.aug, cfg.sampling, cfg.model.img_size, cfg.model.patch_size)
    splits = build_splits(cfg.data, root, two_view, eval_transform(cfg.aug.mean, cfg.aug.std, cfg.model.img_size,
                                                                   cfg.data.dataset == "folder"),
                          cfg.model.img_size)
    per_rank = cfg.optim.batch_size // world
    spe = steps_per_epoch(len(splits.train), per_rank)
    if spe == 0:
        raise ValueError(f"{len(splits.train)} training images are fewer than one batch of {per_rank}")

    model = build_model(cfg).to(device)
    if world > 1 and device.type == "cuda":  # SyncBN as the official DDP runs (SyncBN is CUDA-only)
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    opt = build_optimizer(model, cfg.optim)
    scaler = runtime.grad_scaler(device, cfg.precision if cfg.amp else "fp32")
    ddp = maybe_compile(distributed.wrap(model, device), cfg.model)
    base_lr = cfg.optim.lr_base * cfg.optim.batch_size / 256
    full = cfg.sampling.mode == "full"
    k_steps = 1 if full else cfg.sampling.num_subsets
    total = cfg.optim.epochs * spe if cfg.optim.max_steps <= 0 else min(cfg.optim.max_steps, cfg.optim.epochs * spe)
    timing = {"opt_steps": 0}
    timer = StepTimer(device)
    stateful = {"model": model, "opt": opt}
    if scaler.is_enabled():  # fp16 only; bf16/fp32 checkpoints keep their keys
        stateful["scaler"] = scaler

    trainer = Trainer(out, kind=CKPT_KIND, config=cfg, stateful=stateful, total_steps=total,
                      batches=lambda epoch, start: make_loader(splits.train, per_rank, seed=cfg.seed, epoch=epoch,
                                                               start_batch=start, device=device,
                                                               num_workers=cfg.data.num_workers),
                      ckpt_every=cfg.ckpt_every, log_every=cfg.log_every, desc=f"aps-train[{cfg.sampling.mode}]")
    trainer.maybe_resume(resume)

    def lr_of_state(state):
        if cfg.optim.schedule_unit == "epoch":
            f = lr_factor(state.epoch, cfg.optim.warmup_epochs, cfg.optim.epochs)
            return lambda k: base_lr * f
        return lambda k: base_lr * lr_factor(state.step * k_steps + k, warm, total * k_steps)

    # warm-up in optimizer steps: warmup_steps when set (equal for arms with different K), else warmup_epochs
    # epochs of this arm (K·steps_per_epoch optimizer steps each)
    warm = cfg.optim.warmup_steps if cfg.optim.warmup_steps > 0 else cfg.optim.warmup_epochs * spe * k_steps

    def step_fn(batch, state):
        timer.start()
        m = pretrain_step(ddp, opt, batch, device=device, tau=cfg.optim.tau, full_tokens=full,
                          lr_of=lr_of_state(state), amp=cfg.amp, step=state.step, precision=cfg.precision,
                          scaler=scaler)
        timer.stop()
        timing["opt_steps"] += k_steps
        return m

    logger = MetricLogger(out)
    nc = splits.num_classes

    def on_step_end(state, metrics):
        if cfg.eval.knn_every and state.batch_in_epoch == spe and (state.epoch + 1) % cfg.eval.knn_every == 0:
            res = knn_monitor(model.backbone, splits.bank, splits.test, device, cfg.eval.knn_k, cfg.eval.knn_t,
                              cfg.eval.batch_size, nc, cfg.amp, cfg.precision, cfg.data.num_workers)
            if distributed.is_main():
                logger.log(state.step, epoch=state.epoch, knn_top1=res["knn_top1"])

    t_start = time.perf_counter()
    # every rank runs the monitors: each extracts its shard of the features (tenfold's loop calls on_step_end on
    # every rank in lockstep)
    trainer.run(step_fn, stop_at=stop_at, on_step_end=on_step_end)
    summary = {"mode": cfg.sampling.mode, "batches": trainer.state.step,
               "optimizer_steps": trainer.state.step * k_steps,
               "epochs_done": trainer.state.epoch, "wall_s": time.perf_counter() - t_start,
               "s_per_opt_step": timer.seconds() / max(timing["opt_steps"], 1),
               **{k: v for k, v in getattr(trainer, "last_metrics", {}).items()}}
    if stop_at is None and cfg.eval.final_knn:  # all ranks: sharded extraction, identical results
        res = knn_monitor(model.backbone, splits.bank, splits.test, device, cfg.eval.knn_k, cfg.eval.knn_t,
                          cfg.eval.batch_size, nc, cfg.amp, cfg.precision, cfg.data.num_workers)
        summary.update(knn_top1=res["knn_top1"], knn_top5=res["knn_top5"])
        if cfg.eval.linear_probe:
            summary.update(linear_probe_monitor(res["_features"], cfg.seed, num_classes=nc, ecfg=cfg.eval,
                                                device=device))
    if distributed.is_main():
        logger.summary(**summary)
    return summary
