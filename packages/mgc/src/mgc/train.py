"""MGC pre-training on the tenfold step loop (spec 2.5, 2.6): exact resume, DDP, cfg.precision on CUDA."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from tenfold import config as config_mod
from tenfold import data as tdata
from tenfold import distributed, runtime
from tenfold.loop import Trainer
from tenfold.meters import MetricLogger
from torch import nn

from .config import TrainConfig
from .method import clip_per_parameter, lr_at, momentum_at
from .model import MGC
from .views import MGCViews, TwoViewBoxTransform, render

__all__ = ["build", "param_groups", "train", "optimize_step", "maybe_compile", "KIND"]

KIND = "mgc"


def param_groups(model: nn.Module, weight_decay: float, decay_norm_bias: bool) -> list[dict]:
    """Trainable parameters (the momentum branch has none). Official: one group, all decayed."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if decay_norm_bias:
        return [{"params": [p for _, p in named], "weight_decay": weight_decay}]
    no = [p for n, p in named if p.ndim <= 1 or n.endswith("cls_token") or n.endswith("pos_embed")]
    yes = [p for n, p in named if not (p.ndim <= 1 or n.endswith("cls_token") or n.endswith("pos_embed"))]
    return [{"params": yes, "weight_decay": weight_decay}, {"params": no, "weight_decay": 0.0}]


def optimize_step(ddp: nn.Module, opt: torch.optim.Optimizer, scaler, trainable: list, x1, x2, corr, m: float,
                  cfg: TrainConfig, device: torch.device) -> tuple[torch.Tensor, dict]:
    """One MGC update (also what bench/gpu.py times): forward under cfg.precision's autocast (fp32 when
    cfg.amp is false), backward through the fp16 loss scaler where needed, per-parameter clip after unscaling
    (pitfall 11), optimizer step. No host sync: the loss stays a device tensor."""
    with runtime.autocast(device, cfg.precision, enabled=cfg.amp):
        loss, info = ddp(x1, x2, corr, m)
    clip = (lambda: clip_per_parameter(trainable, cfg.optim.clip_grad)) if cfg.optim.clip_grad > 0 else None
    runtime.optimizer_step(loss, opt, scaler, before_step=clip)  # the clip sees unscaled gradients
    return loss.detach(), info


def maybe_compile(model: MGC, cfg: TrainConfig) -> MGC:
    """cfg.compile: torch.compile the whole MGC forward in place (Module.compile keeps the state_dict names, so
    checkpoints and exports are unchanged); cfg.compile_backend picks the backend (inductor on GPU)."""
    if cfg.compile:
        model.compile(backend=cfg.compile_backend)
    return model


def build(cfg: TrainConfig, device: torch.device):
    """Model, optimizer, data set and schedule lengths for a config."""
    from .data import pretrain_images

    model = MGC(cfg.model, cfg.loss).to(device)
    if distributed.world_size() > 1 and device.type == "cuda":
        # BN over all ranks' rows of a view (SyncBN needs CUDA; gloo/CPU runs keep per-rank BN)
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    o = cfg.optim
    world = distributed.world_size()
    if o.batch_size % world:
        from tenfold.errors import ConfigError

        raise ConfigError(f"optim.batch_size {o.batch_size} is not divisible by the {world} processes")
    lr = o.lr_base * o.batch_size / 256  # linear scaling rule
    opt = torch.optim.AdamW(param_groups(model, o.weight_decay, o.decay_norm_bias), lr=lr, betas=tuple(o.betas))
    base = pretrain_images(cfg.data, cfg.data_root, cfg.seed)
    ds = MGCViews(base, TwoViewBoxTransform(cfg.model, cfg.views, cfg.augment))
    per_rank = o.batch_size // world
    spe = tdata.steps_per_epoch(len(ds), per_rank)
    if spe == 0 and o.steps <= 0:
        from tenfold.errors import DataError

        raise DataError(f"{len(ds)} images are fewer than one batch of {per_rank}; lower optim.batch_size")
    total = o.steps if o.steps > 0 else o.epochs * spe
    warm = o.warmup_steps if o.warmup_steps >= 0 else int(round(o.warmup_epochs * spe))
    return model, opt, ds, per_rank, total, min(warm, total), lr


def train(cfg: TrainConfig, resume: str | None = None, stop_at: int | None = None) -> dict:
    device = runtime.select_device(cfg.device)
    distributed.init(device)
    runtime.seed_everything(cfg.seed + distributed.rank())
    runtime.set_deterministic(cfg.deterministic)
    out = Path(cfg.out)
    if distributed.is_main():
        config_mod.save(cfg, out / "config.yaml")
    model, opt, ds, per_rank, total, warm, lr = build(cfg, device)
    ddp = distributed.wrap(maybe_compile(model, cfg), device)
    o = cfg.optim
    trainable = [p for p in model.parameters() if p.requires_grad]
    scaler = runtime.grad_scaler(device, cfg.precision if cfg.amp else "fp32")

    def batches(epoch: int, start: int):
        return tdata.make_loader(ds, per_rank, seed=cfg.seed, epoch=epoch, start_batch=start,
                                 num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda")

    def step_fn(batch, state):
        views, _ = batch
        step = state.step
        cur_lr = lr_at(step, total, warm, lr, o.min_lr)
        for g in opt.param_groups:
            g["lr"] = cur_lr
        m = momentum_at(step, total, o.momentum)
        x1, x2 = render(views, cfg.augment, device)
        corr = [tuple(t.to(device, non_blocking=True) for t in c) for c in views["corr"]]
        loss, info = optimize_step(ddp, opt, scaler, trainable, x1, x2, corr, m, cfg, device)
        return {"loss": loss, "lr": cur_lr, "momentum": m, **info}

    stateful = {"model": model, "opt": opt}
    if scaler.is_enabled():  # fp16 only: its loss scale is part of an exact resume
        stateful["scaler"] = scaler
    trainer = Trainer(out, kind=KIND, config=cfg, stateful=stateful, total_steps=total,
                      batches=batches, ckpt_every=cfg.ckpt_every, log_every=cfg.log_every, desc="mgc")
    resumed = trainer.maybe_resume(resume)
    monitor = _KnnMonitor(cfg, model, device) if _labelled(cfg) else None

    def on_step_end(state, metrics):
        if monitor is not None and cfg.monitor.knn_every and state.step % cfg.monitor.knn_every == 0:
            trainer.logger.log(state.step, **monitor())

    trainer.run(step_fn, stop_at=stop_at, on_step_end=on_step_end)
    summary = {"steps": trainer.state.step, "total_steps": total, "resumed": resumed,
               "final_loss": trainer.last_metrics.get("loss", math.nan),
               "pairs_per_s": trainer.samples_per_s, "seconds": trainer.elapsed_s, "device": str(device),
               "world_size": distributed.world_size(), "lr": lr}
    summary.update({k: v for k, v in trainer.last_metrics.items() if k.startswith("loss_c")})
    if monitor is not None and cfg.monitor.final_eval and trainer.state.step >= total:
        summary.update(monitor())
    if distributed.is_main():
        MetricLogger(out).summary(**summary)
    return summary


def _labelled(cfg: TrainConfig) -> bool:
    return cfg.data.dataset in ("cifar10", "cifar100", "stl10", "synthetic") and distributed.is_main()


class _KnnMonitor:
    """Online kNN of the base encoder on a small labelled bank (no RNG use, so resume stays exact)."""

    def __init__(self, cfg: TrainConfig, model: MGC, device):
        from .data import labelled_split

        self.cfg, self.model, self.device = cfg, model, device
        self.bank, self.test = labelled_split(cfg.data.dataset, cfg.data_root, cfg.monitor.bank, cfg.monitor.test,
                                              cfg.seed, cfg.data.synthetic_n)

    def __call__(self) -> dict:
        from .evaluate import knn_and_probe

        r = knn_and_probe(self.model.base_encoder, self.bank, self.test, self.cfg.augment, self.device,
                          probe_epochs=0)
        return {"knn_top1": r["knn_top1"], "feat_std_over_norm": r["feat_std_over_norm"]}
