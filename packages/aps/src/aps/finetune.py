"""Full fine-tuning of an APS backbone (spec §2.7): all tokens + Linear head, RandAugment, MixUp/CutMix,
random erasing, label smoothing, optional drop-path / EMA / layer-wise lr decay, best and final top-1."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from tenfold import checkpoint, distributed, runtime
from tenfold import config as config_mod
from tenfold.data import make_loader, steps_per_epoch
from tenfold.data import root as data_root_mod
from tenfold.errors import CheckpointError
from tenfold.loop import Trainer
from tenfold.meters import MetricLogger
from torch import nn

from .augment import eval_transform, finetune_train_transform, mix_batch, soft_target_cross_entropy
from .config import FinetuneConfig
from .data import build_splits
from .evaluate import evaluate_top1
from .model import APSViT, build_backbone, finetune_state_from_pretrain
from .train import CKPT_KIND, _setup

__all__ = ["ModelEMA", "param_groups", "finetune_lr", "load_pretrained_backbone", "evaluate_top1", "run",
           "FT_KIND"]

FT_KIND = "aps-finetune"


class ModelEMA(nn.Module):
    """Exponential moving average of weights and buffers (timm ModelEmaV2 semantics)."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        self.decay = decay
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for e, m in zip(self.module.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.mul_(self.decay).add_(m.detach(), alpha=1.0 - self.decay)
            else:
                e.copy_(m)


def _layer_id(name: str, depth: int) -> int:
    if name.startswith(("patch_embed", "cls_token", "pos_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def param_groups(model: APSViT, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """No decay on 1-D params, biases, pos_embed, cls_token; lr scale layer_decay^(L+1−layer)."""
    depth = len(model.blocks)
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_wd = p.ndim <= 1 or name in ("pos_embed", "cls_token")
        lid = _layer_id(name, depth)
        key = (lid, no_wd)
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": 0.0 if no_wd else weight_decay,
                           "lr_scale": layer_decay ** (depth + 1 - lid)}
        groups[key]["params"].append(p)
    return list(groups.values())


def finetune_lr(epoch: int, cfg: FinetuneConfig) -> float:
    """timm CosineLRScheduler (t_initial=epochs, linear warm-up from warmup_lr, no warm-up prefix), per epoch;
    with lr_lag the value of epoch e−1 is used during epoch e, as the official step-after-epoch call does."""
    base = cfg.lr_base * cfg.batch_size / 512
    t = max(epoch - 1, 0) if cfg.lr_lag else epoch
    if t < cfg.warmup_epochs:
        return cfg.warmup_lr + t * (base - cfg.warmup_lr) / cfg.warmup_epochs
    return cfg.min_lr + 0.5 * (base - cfg.min_lr) * (1 + math.cos(math.pi * t / cfg.epochs))


def load_pretrained_backbone(model: APSViT, path: str) -> None:
    """From an aps-train run (dir or last.pt) or a bare backbone state dict; only head.* may be missing."""
    p = Path(path)
    if p.is_dir():
        state = checkpoint.load(p, kind=CKPT_KIND)["state"]["model"]
    elif not p.is_file():
        raise CheckpointError(f"pretrained weights not found: {p}")
    else:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=False)
        except Exception as e:
            msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            raise CheckpointError(f"{p} is corrupt or not a checkpoint ({msg})") from None
        if isinstance(obj, dict) and obj.get("format") == checkpoint.FORMAT:
            if obj.get("kind") != CKPT_KIND:
                raise CheckpointError(f"{p} was written by '{obj.get('kind')}', not by aps-train")
            state = obj["state"]["model"]
        elif isinstance(obj, dict):
            state = obj.get("state_dict", obj)
        else:
            raise CheckpointError(f"{p} does not hold a state dict")
    sd = finetune_state_from_pretrain(state)
    own = model.state_dict()
    missing = sorted(k for k in own if k not in sd and not k.startswith("head."))
    unexpected = sorted(k for k in sd if k not in own)
    if missing or unexpected:
        raise CheckpointError(f"{p}: backbone does not match model.* settings ({len(missing)} missing, e.g. "
                              f"{missing[:1]}; {len(unexpected)} unexpected, e.g. {unexpected[:1]})")
    bad = [k for k in sd if tuple(sd[k].shape) != tuple(own[k].shape)]
    if bad:
        raise CheckpointError(f"{p}: shape mismatch for '{bad[0]}': {tuple(sd[bad[0]].shape)} vs "
                              f"{tuple(own[bad[0]].shape)}; set model.* to the pre-training architecture")
    model.load_state_dict(sd, strict=False)


def finetune_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: FinetuneConfig, num_classes: int,
                  device) -> torch.Tensor:
    """The forward half of one fine-tuning step: MixUp/CutMix with label smoothing, soft-target CE."""
    x, target, _ = mix_batch(x, y, num_classes, cfg.mixup, cfg.cutmix, cfg.mix_prob, cfg.switch_prob,
                             cfg.smoothing)
    with runtime.autocast(device, cfg.precision, enabled=cfg.amp):
        logits = model(x)
    return soft_target_cross_entropy(logits, target)


def run(cfg: FinetuneConfig, resume: str | None = None, stop_at: int | None = None) -> dict:
    device = _setup(cfg)
    out = Path(cfg.out)
    if distributed.is_main():
        config_mod.save(cfg, out / "config.yaml")
    root = data_root_mod.data_root(cfg.data_root)
    folder = cfg.data.dataset == "folder"
    splits = build_splits(cfg.data, root, finetune_train_transform(cfg, folder),
                          eval_transform(cfg.mean, cfg.std, cfg.model.img_size, folder), cfg.model.img_size)
    nc = cfg.num_classes or splits.num_classes
    model = build_backbone(cfg.model, nc, cfg.drop_path)
    if cfg.pretrained:
        load_pretrained_backbone(model, cfg.pretrained)
    model.to(device)
    world = distributed.world_size()
    per_rank = cfg.batch_size // world
    spe = steps_per_epoch(len(splits.train), per_rank)
    if spe == 0:
        raise ValueError(f"{len(splits.train)} training images are fewer than one batch of {per_rank}")
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.layer_decay), lr=cfg.lr_base)
    ddp = distributed.wrap(model, device)
    scaler = runtime.grad_scaler(device, cfg.precision if cfg.amp else "fp32")
    ema = ModelEMA(model, cfg.ema_decay) if cfg.ema else None
    total = cfg.epochs * spe if cfg.max_steps <= 0 else min(cfg.max_steps, cfg.epochs * spe)
    record = {"best_top1": -1.0, "best_epoch": -1, "final_top1": None, "ema_top1": None}
    stateful = {"model": model, "opt": opt, **({"ema": ema} if ema is not None else {}),
                **({"scaler": scaler} if scaler.is_enabled() else {})}
    trainer = Trainer(out, kind=FT_KIND, config=cfg, stateful=stateful, total_steps=total,
                      batches=lambda e, s: make_loader(splits.train, per_rank, seed=cfg.seed, epoch=e, start_batch=s,
                                                       num_workers=cfg.data.num_workers, device=device),
                      ckpt_every=cfg.ckpt_every, log_every=cfg.log_every, desc="aps-finetune",
                      extra_state=lambda: dict(record), load_extra_state=record.update)
    trainer.maybe_resume(resume)

    def step_fn(batch, state):
        x, y = batch
        x, y = x.to(device, non_blocking=True), torch.as_tensor(y).to(device, non_blocking=True)
        lr = finetune_lr(state.epoch, cfg)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        # no NaN check here (a host sync): the Trainer checks the returned loss before anything is saved
        loss = finetune_loss(ddp, x, y, cfg, nc, device)
        runtime.optimizer_step(loss, opt, scaler)  # scaled backward only for fp16 on CUDA (the official AMP)
        if ema is not None:
            ema.update(model)
        return {"loss": loss.detach(), "lr": lr}

    logger = MetricLogger(out)

    def on_step_end(state, metrics):
        last = state.step == total
        epoch_end = state.batch_in_epoch == spe and (state.epoch + 1) % cfg.eval_every == 0
        if not (epoch_end or last):
            return
        acc = evaluate_top1(model, splits.test, device, cfg.eval_batch_size, cfg.amp, cfg.precision,
                            cfg.data.num_workers)
        rec = {"top1": acc}
        if acc > record["best_top1"]:
            record.update(best_top1=acc, best_epoch=state.epoch)
        record["final_top1"] = acc
        if ema is not None and cfg.ema_eval:
            record["ema_top1"] = rec["ema_top1"] = evaluate_top1(ema.module, splits.test, device,
                                                                 cfg.eval_batch_size, cfg.amp, cfg.precision,
                                                                 cfg.data.num_workers)
        if distributed.is_main():
            logger.log(state.step, epoch=state.epoch, **rec)

    # every rank evaluates its shard (the counts are summed), so every rank holds the same record
    trainer.run(step_fn, stop_at=stop_at, on_step_end=on_step_end)
    summary = {"steps": trainer.state.step, "epochs_done": trainer.state.epoch, **record,
               "note": "best_top1 is the official metric (best test epoch); final_top1 is the last evaluation"}
    if distributed.is_main():
        logger.summary(**summary)
    return summary
