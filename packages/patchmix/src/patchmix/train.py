"""PatchMix pre-training: one step (spec §2.6) and the resumable run around it."""
from __future__ import annotations

import random

import torch
from tenfold import config as config_mod
from tenfold import distributed, runtime
from tenfold.data import make_loader, steps_per_epoch
from tenfold.loop import Trainer

from .augment import ViewSpec, make_view
from .config import PretrainConfig
from .data import CropSpec, load_split, to_unit
from .method import MixDraw, PatchMixer, patch_mix
from .models import MomentumEncoder, Online, build_models, ema_update, export_backbone, momentum_at
from .objective import mocov3_terms, patchmix_terms, src_terms, step_targets, weighted_loss
from .schedules import lr_at, param_groups, temp_at, wd_at

__all__ = ["StepFn", "step_seed", "view_specs", "loader_crops", "build_optimizer", "maybe_compile", "pretrain", "KIND"]

KIND = "patchmix"
_MASK = (1 << 63) - 1


def step_seed(seed: int, step: int, salt: int) -> int:
    """Seed of the step's augmentation/mixing generator: a function of (seed, step, salt) only (exact resume)."""
    h = (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + salt * 0x94D049BB133111EB) & _MASK
    return h ^ (h >> 29)


def view_specs(a) -> tuple[ViewSpec, ViewSpec, ViewSpec]:
    common = dict(jitter=tuple(a.jitter), jitter_p=a.jitter_p, gray_p=a.gray_p, flip_p=a.flip_p, rrc=a.rrc,
                  jitter_order=a.jitter_order)
    v1 = ViewSpec(a.input_size, tuple(a.global_scale), a.blur_p[0], a.solarize_p[0], **common)
    v2 = ViewSpec(a.input_size, tuple(a.global_scale), a.blur_p[1], a.solarize_p[1], **common)
    local = ViewSpec(a.local_size, tuple(a.local_scale), a.local_blur_p, 0.0, **common)
    return v1, v2, local


def loader_crops(a) -> list[CropSpec]:
    """The RandomResizedCrops an image folder's loader takes per sample from the full-resolution image (view 1,
    view 2, then the local crops), in the order StepFn.compute reads them."""
    return [CropSpec(a.input_size, tuple(a.global_scale))] * 2 + \
        [CropSpec(a.local_size, tuple(a.local_scale))] * a.local_crops


def maybe_compile(module: torch.nn.Module, mcfg) -> torch.nn.Module:
    """torch.compile for the forward passes when model.compile is set (checkpoints keep the plain module)."""
    if not getattr(mcfg, "compile", False):
        return module
    return torch.compile(module, backend=mcfg.compile_backend, dynamic=False)


def build_optimizer(cfg: PretrainConfig, online: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(online), lr=0.0, betas=tuple(cfg.optim.betas))


class StepFn:
    """One PatchMix optimisation step; `__call__(batch, loop_state)` -> metrics (the Trainer's step_fn)."""

    def __init__(self, cfg: PretrainConfig, online, momentum: MomentumEncoder | None, opt, device,
                 iters_per_epoch: int, total_steps: int):
        self.cfg, self.online, self.momentum, self.opt, self.device = cfg, online, momentum, opt, device
        self.forward = maybe_compile(online, cfg.model)  # the query passes; EMA and keys use the plain module
        self.scaler = runtime.grad_scaler(device, cfg.precision if cfg.amp else "fp32")
        self.ipe, self.total = iters_per_epoch, total_steps
        self.world, self.rank = distributed.world_size(), distributed.rank()
        self.v1, self.v2, self.vl = view_specs(cfg.aug)
        self.mixer = PatchMixer(cfg.mix.mix_num, cfg.mix.mix_p, cfg.mix.patch_size or [cfg.model.patch_size])
        global_batch = cfg.optim.batch_size
        self.lr_eff = cfg.optim.base_lr * global_batch / 256
        self.warmup = round(cfg.optim.warmup_epochs * iters_per_epoch)

    # ---- pieces ------------------------------------------------------------------------------
    def schedule(self, step: int) -> dict:
        o = self.cfg.optim
        lr = lr_at(step, self.total, self.warmup, self.lr_eff, o.min_lr)
        wd = wd_at(step, self.total, o.weight_decay, o.weight_decay_end)
        for i, g in enumerate(self.opt.param_groups):
            g["lr"] = lr
            g["weight_decay"] = wd if i == 0 else 0.0
        out = {"lr": lr, "wd": wd,
               "temp": temp_at(step, self.ipe, self.cfg.loss.temp, self.cfg.loss.warmup_temp,
                               self.cfg.loss.warmup_temp_epochs)}
        if self.momentum is not None:
            out["mu"] = momentum_at(step, self.ipe, self.total / self.ipe, o.momentum,
                                    o.faithful_momentum_per_epoch)
        return out

    def mix(self, x: torch.Tensor, draw: MixDraw, g_local, g_global) -> torch.Tensor:
        """Mix within this device's batch (reference, Q8) or within the all-gathered global batch."""
        if not draw.apply:
            return x
        if self.cfg.mix.scope == "global" and self.world > 1:
            full = patch_mix(distributed.all_gather_nograd(x), draw.m, draw.patch_size, g_global)[0]
            n = x.shape[0]
            return full[self.rank * n:(self.rank + 1) * n]
        return patch_mix(x, draw.m, draw.patch_size, g_local)[0]

    def keys(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Momentum keys g_m(f_m(x)); without momentum, g(f(x)) of the online net (train mode) under no_grad."""
        with torch.no_grad():
            if self.momentum is not None:
                return self.momentum(xs)
            return distributed.unwrap(self.online)(xs, keys=True)

    # ---- the step ----------------------------------------------------------------------------
    def compute(self, x: torch.Tensor, step: int, temp: float) -> dict:
        cfg, lc = self.cfg, self.cfg.loss
        g = torch.Generator().manual_seed(step_seed(cfg.seed, step, 1 + self.rank))
        g_global = torch.Generator().manual_seed(step_seed(cfg.seed, step, 0))
        rng = random.Random(step_seed(cfg.seed, step, 0))  # m, p_mix, apply: same on every rank
        mean, std = tuple(cfg.aug.mean), tuple(cfg.aug.std)
        # x: one batch to crop here (array data sets), or the loader's per-view crops (image folders:
        # view 1, view 2, then the local crops; see loader_crops)
        cropped = isinstance(x, (list, tuple))

        def view(k: int, spec: ViewSpec) -> torch.Tensor:
            return make_view(x[k] if cropped else x, spec, g, mean, std, crop=not cropped)

        x1, x2 = view(0, self.v1), view(1, self.v2)
        n = x1.shape[0]
        gather = self.world > 1
        o2o = lc.o2o_smoothing
        with runtime.autocast(self.device, cfg.precision, enabled=cfg.amp):
            if lc.objective == "src_only":
                (q1,) = self.forward([x1])
                (k2,) = self.keys([x2])
                y_oo = step_targets(n, 1, self.rank, self.world, 0.0, o2o, x1.device).y_oo
                terms = src_terms(q1, k2, y_oo, temp, gather)
                return {"loss": weighted_loss(terms, w_src=lc.w_src), **terms}
            if lc.objective == "mocov3":
                q1, q2 = self.forward([x1, x2])
                k1, k2 = self.keys([x1, x2])
                y_oo = step_targets(n, 1, self.rank, self.world, 0.0, o2o, x1.device).y_oo
                terms = mocov3_terms(q1, q2, k1, k2, y_oo, temp, gather)
                return {"loss": terms["l_src"] + terms["l_src_rev"], **terms}
            draw = self.mixer.draw(rng)  # one m per step for both views and all local crops (fixes Q6)
            targets = step_targets(n, draw.m, self.rank, self.world, cfg.mix.smoothing, o2o, x1.device,
                                   scope=cfg.mix.scope)
            with torch.no_grad():
                x1m, x2m = self.mix(x1, draw, g, g_global), self.mix(x2, draw, g, g_global)
            batches = [x1, x2m]
            nl = cfg.aug.local_crops
            if nl:
                local = [view(2 + i, self.vl) for i in range(nl)]
                with torch.no_grad():
                    local_mix = [self.mix(v, draw, g, g_global) for v in local]
                batches += [torch.cat(local), torch.cat(local_mix)]
            qs = self.forward(batches)
            k1, k2, mk1 = self.keys([x1, x2, x1m])
            q_local, q_local_mix = (qs[2].chunk(nl), qs[3].chunk(nl)) if nl else ((), ())
            terms = patchmix_terms(qs[0], qs[1], k1, k2, mk1, targets, temp, q_local, q_local_mix, gather)
            loss = weighted_loss(terms, lc.w_src, lc.w_m2o, lc.w_m2m, lc.w_multi, lc.w_multi_mix)
            return {**terms, "m": float(draw.m), "loss": loss}

    def __call__(self, batch, state) -> dict:
        x = batch[0]  # uint8 over the bus, float on the device
        if isinstance(x, (list, tuple)):  # per-view crops from the loader (image folders)
            x = [to_unit(v.to(self.device, non_blocking=True)) for v in x]
        else:
            x = to_unit(x.to(self.device, non_blocking=True))
        sched = self.schedule(state.step)
        if self.momentum is not None:  # EMA before the forward, as the reference
            ema_update(self.momentum, distributed.unwrap(self.online), sched["mu"])
        out = self.compute(x, state.step, sched["temp"])
        runtime.optimizer_step(out["loss"], self.opt, self.scaler)  # scaled backward only for fp16 on CUDA
        return {**{k: (v.detach() if torch.is_tensor(v) else v) for k, v in out.items()}, **sched}


def pretrain(cfg: PretrainConfig, resume: str | None = None, stop_at: int | None = None) -> dict:
    """Build data, models and optimiser, run (or resume) pre-training, write last.pt, backbone.pt, summary."""
    from pathlib import Path

    from .evaluate import knn_monitor

    runtime.set_deterministic(cfg.deterministic)
    device = runtime.select_device(cfg.device)
    distributed.init(device)
    world = distributed.world_size()
    runtime.seed_everything(cfg.seed)
    out = Path(cfg.out)
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        config_mod.save(cfg, out / "config.yaml")
    train_ds = load_split(cfg.data, True, cfg.data_root, cfg.seed, crops=loader_crops(cfg.aug))
    if cfg.optim.batch_size % world:
        from tenfold.errors import ConfigError

        raise ConfigError(f"optim.batch_size {cfg.optim.batch_size} is not divisible by the world size {world}")
    bs = cfg.optim.batch_size // world
    ipe = steps_per_epoch(len(train_ds), bs)
    if ipe == 0:
        from tenfold.errors import ConfigError

        raise ConfigError(f"the training set ({len(train_ds)} images) is smaller than one batch ({bs}); "
                          f"lower optim.batch_size")
    total = cfg.optim.steps or max(1, round(cfg.optim.epochs * ipe))
    online, momentum = build_models(cfg.model, cfg.model.framework)
    if world > 1 and device.type == "cuda":  # SyncBatchNorm is CUDA-only; CPU/gloo runs keep per-process BN
        online = torch.nn.SyncBatchNorm.convert_sync_batchnorm(online)
        momentum = torch.nn.SyncBatchNorm.convert_sync_batchnorm(momentum) if momentum is not None else None
    online.to(device)
    if momentum is not None:
        momentum.to(device)
    opt = build_optimizer(cfg, online)
    online_run = distributed.wrap(online, device) if world > 1 else online
    stateful = {"online": online, "opt": opt}
    if momentum is not None:
        stateful["momentum"] = momentum
    trainer = Trainer(out, kind=KIND, config=cfg, stateful=stateful, total_steps=total,
                      batches=lambda epoch, start: make_loader(train_ds, bs, seed=cfg.seed, epoch=epoch,
                                                               start_batch=start, num_workers=cfg.data.num_workers,
                                                               device=device),
                      ckpt_every=cfg.ckpt_every, log_every=cfg.log_every, desc="patchmix")
    trainer.maybe_resume(resume)
    step_fn = StepFn(cfg, online_run, momentum, opt, device, ipe, total)

    def on_step_end(state, metrics):
        mon = cfg.monitor
        if mon.knn_every and state.step % mon.knn_every == 0 and state.step < total:
            res = knn_monitor(cfg, eval_backbone(online, momentum), device)
            trainer.logger.log(state.step, **{f"monitor_{k}": v for k, v in res.items()})

    online.train()
    state = trainer.run(step_fn, stop_at=stop_at, on_step_end=on_step_end)
    summary = {"steps": state.step, "total_steps": total, "iters_per_epoch": ipe, "world_size": world,
               "samples_per_s": trainer.samples_per_s, "device": str(device),
               **{f"final_{k}": v for k, v in trainer.last_metrics.items()}}
    if state.step >= total:
        bb = eval_backbone(online, momentum)
        if distributed.is_main():
            torch.save(export_backbone(bb), out / "backbone.pt")
        if cfg.monitor.knn_final:
            summary.update(knn_monitor(cfg, bb, device))
    if distributed.is_main():
        trainer.logger.summary(**summary)
    return summary


def eval_backbone(online: Online, momentum: MomentumEncoder | None):
    """The evaluated encoder: the momentum backbone when there is one (spec §3), else the online one."""
    return momentum.backbone if momentum is not None else distributed.unwrap(online).backbone
