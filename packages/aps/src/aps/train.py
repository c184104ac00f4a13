"""APS pre-training: data -> model -> K optimizer steps per batch (spec §2.5) on tenfold's Trainer."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from tenfold import config as config_mod
from tenfold import distributed, runtime
from tenfold.data import make_loader, steps_per_epoch
from tenfold.data import root as data_root_mod
from tenfold.loop import Trainer, assert_finite
from tenfold.meters import MetricLogger
from torch import nn

from .augment import TwoViewAPSTransform, eval_transform
from .config import PretrainConfig
from .data import build_splits
from .evaluate import knn_monitor, linear_probe_monitor
from .method import aps_loss, lr_factor
from .model import APSModel, build_backbone

__all__ = ["build_model", "build_optimizer", "pretrain_step", "run", "CKPT_KIND"]

CKPT_KIND = "aps-pretrain"


def build_model(cfg: PretrainConfig) -> APSModel:
    return APSModel(build_backbone(cfg.model), cfg.model.hidden_dim, cfg.model.out_dim)


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
                  full_tokens: bool, lr_of=None, amp: bool = True, step: int = 0) -> dict:
    """One loader batch = K optimizer steps, one per (I1[k], I2[k]) pair on the same images (pitfall 5)."""
    (x1, i1, x2, i2), _ = batch
    x1, x2 = x1.to(device, non_blocking=True), x2.to(device, non_blocking=True)
    i1, i2 = i1.to(device), i2.to(device)
    k_steps = 1 if full_tokens else i1.shape[1]
    losses, sims = [], []
    for k in range(k_steps):
        if lr_of is not None:
            lr = lr_of(k)
            for g in opt.param_groups:
                g["lr"] = lr
        idx1, idx2 = (None, None) if full_tokens else (i1[:, k], i2[:, k])
        with runtime.autocast(device, amp):
            p1, p2, z1, z2 = model(x1, idx1, x2, idx2)
        loss, sim = aps_loss(p1, p2, z1, z2, tau)
        assert_finite(loss, step + 1)  # before the update: parameters and last.pt stay good
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        sims.append(sim)
    return {"loss": torch.stack(losses).mean(), "loss_last": losses[-1], "pos_cos": torch.stack(sims).mean(),
            "lr": opt.param_groups[0]["lr"]}


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
    ddp = distributed.wrap(model, device)
    base_lr = cfg.optim.lr_base * cfg.optim.batch_size / 256
    full = cfg.sampling.mode == "full"
    k_steps = 1 if full else cfg.sampling.num_subsets
    total = cfg.optim.epochs * spe if cfg.optim.max_steps <= 0 else min(cfg.optim.max_steps, cfg.optim.epochs * spe)
    timing = {"train_s": 0.0, "opt_steps": 0}

    trainer = Trainer(out, kind=CKPT_KIND, config=cfg, stateful={"model": model, "opt": opt}, total_steps=total,
                      batches=lambda epoch, start: make_loader(splits.train, per_rank, seed=cfg.seed, epoch=epoch,
                                                               start_batch=start,
                                                               num_workers=cfg.data.num_workers),
                      ckpt_every=cfg.ckpt_every, log_every=cfg.log_every, desc=f"aps-train[{cfg.sampling.mode}]")
    trainer.maybe_resume(resume)

    def lr_of_state(state):
        if cfg.optim.schedule_unit == "epoch":
            f = lr_factor(state.epoch, cfg.optim.warmup_epochs, cfg.optim.epochs)
            return lambda k: base_lr * f
        warm = cfg.optim.warmup_epochs * spe * k_steps
        return lambda k: base_lr * lr_factor(state.step * k_steps + k, warm, total * k_steps)

    def step_fn(batch, state):
        t0 = time.perf_counter()
        m = pretrain_step(ddp, opt, batch, device=device, tau=cfg.optim.tau, full_tokens=full,
                          lr_of=lr_of_state(state), amp=cfg.amp, step=state.step)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timing["train_s"] += time.perf_counter() - t0
        timing["opt_steps"] += k_steps
        return m

    logger = MetricLogger(out)
    nc = splits.num_classes

    def on_step_end(state, metrics):
        if cfg.eval.knn_every and state.batch_in_epoch == spe and (state.epoch + 1) % cfg.eval.knn_every == 0:
            res = knn_monitor(model.backbone, splits.bank, splits.test, device, cfg.eval.knn_k, cfg.eval.knn_t,
                              cfg.eval.batch_size, nc, cfg.amp)
            logger.log(state.step, epoch=state.epoch, knn_top1=res["knn_top1"])

    t_start = time.perf_counter()
    trainer.run(step_fn, stop_at=stop_at, on_step_end=on_step_end if distributed.is_main() else None)
    summary = {"mode": cfg.sampling.mode, "batches": trainer.state.step,
               "optimizer_steps": trainer.state.step * k_steps,
               "epochs_done": trainer.state.epoch, "wall_s": time.perf_counter() - t_start,
               "s_per_opt_step": timing["train_s"] / max(timing["opt_steps"], 1),
               **{k: v for k, v in getattr(trainer, "last_metrics", {}).items()}}
    if stop_at is None and distributed.is_main() and cfg.eval.final_knn:
        res = knn_monitor(model.backbone, splits.bank, splits.test, device, cfg.eval.knn_k, cfg.eval.knn_t,
                          cfg.eval.batch_size, nc, cfg.amp)
        summary.update(knn_top1=res["knn_top1"], knn_top5=res["knn_top5"])
        if cfg.eval.linear_probe:
            summary.update(linear_probe_monitor(res["_features"], cfg.seed, num_classes=nc, ecfg=cfg.eval))
    if distributed.is_main():
        logger.summary(**summary)
    return summary
