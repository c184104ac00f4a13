"""GAN training in one or two stages on the spine's loop (exact resume, NaN guard, metrics)."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from tenfold import config as config_mod
from tenfold import data as tfdata
from tenfold import runtime
from tenfold.loop import Trainer

from .config import OSGANConfig
from .data import RingData, gan_images, ring_quality
from .losses import get_loss
from .method import check_exactness, one_stage_step, two_stage_step
from .nets import DCDiscriminator, DCGenerator, MLPDiscriminator, MLPGenerator
from .timing import StepTimer

__all__ = ["build_gan", "run_gan", "make_optimizers"]


def build_gan(cfg: OSGANConfig, channels: int):
    m = cfg.model
    if m.arch == "mlp":
        return MLPGenerator(m.zdim), MLPDiscriminator()
    return (DCGenerator(m.zdim, channels, m.g_width, m.size, m.g_norm),
            DCDiscriminator(channels, m.d_width, m.size, m.d_norm))


def make_optimizers(cfg: OSGANConfig, G, D, steps_per_epoch: int):
    o = cfg.optim
    opt_g = torch.optim.Adam(G.parameters(), lr=o.lr_g, betas=tuple(o.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=o.lr_d, betas=tuple(o.betas))
    # MultiStepLR per epoch (reference), expressed per iteration so resume can land mid-epoch
    factor = lambda step: o.lr_gamma ** sum(step // steps_per_epoch >= m for m in o.milestones)  # noqa: E731
    return opt_g, opt_d, torch.optim.lr_scheduler.LambdaLR(opt_g, factor), \
        torch.optim.lr_scheduler.LambdaLR(opt_d, factor)


def _dataset(cfg: OSGANConfig):
    if cfg.data.name == "ring":
        return RingData(cfg.data.num_samples, seed=cfg.seed), 2
    return gan_images(cfg.data.name, cfg.model.size, cfg.data_root, True, cfg.data.path, cfg.data.num_samples,
                      seed=cfg.seed)


def run_gan(cfg: OSGANConfig, resume: str | None = None, stop_at: int | None = None) -> dict:
    device = runtime.select_device(cfg.device)
    runtime.seed_everything(cfg.seed)
    runtime.set_deterministic(cfg.deterministic)
    out = Path(cfg.out)
    config_mod.save(cfg, out / "config.yaml")
    loss = get_loss(cfg.loss)
    ds, channels = _dataset(cfg)
    G, D = build_gan(cfg, channels)
    G.to(device).train()
    D.to(device).train()
    if cfg.mode == "one":
        check_exactness(D, loss, cfg.bn_policy)
    spe = tfdata.steps_per_epoch(len(ds), cfg.batch_size)
    total = cfg.max_steps or cfg.epochs * spe
    opt_g, opt_d, sch_g, sch_d = make_optimizers(cfg, G, D, spe)
    trainer = Trainer(out, kind="osgan", config=cfg, total_steps=total, ckpt_every=cfg.ckpt_every,
                      log_every=cfg.log_every, desc=f"osgan[{cfg.mode}-stage {cfg.loss}]",
                      stateful={"G": G, "D": D, "opt_g": opt_g, "opt_d": opt_d, "sch_g": sch_g, "sch_d": sch_d},
                      batches=lambda e, s: tfdata.make_loader(ds, cfg.batch_size, seed=cfg.seed, epoch=e,
                                                              start_batch=s, num_workers=cfg.data.num_workers))
    trainer.maybe_resume(resume)
    zshape = lambda b: (b, cfg.model.zdim)  # noqa: E731
    clip = cfg.clip or None
    timer = StepTimer(device)
    scaler = runtime.grad_scaler(device, cfg.precision)  # only enabled for fp16 on CUDA
    scaler = scaler if scaler.is_enabled() else None

    def step(batch, _state):
        x = batch[0].to(device, non_blocking=True)
        b = x.shape[0]
        with timer, runtime.autocast(device, cfg.precision):  # fp32 = the paper's speed setting; CPU: always fp32
            if cfg.mode == "one":
                r = one_stage_step(G, D, opt_g, opt_d, x, torch.randn(zshape(b), device=device), loss,
                                   cfg.d_forward, cfg.form, clip, cfg.gamma_max, scaler, cfg.optim.r1)
            else:
                r = two_stage_step(G, D, opt_g, opt_d, x, torch.randn(zshape(b), device=device),
                                   torch.randn(zshape(b), device=device), loss, clip, scaler, cfg.optim.r1)
        sch_g.step()
        sch_d.step()
        return {"loss": r.loss_d, "loss_g": r.loss_g}

    every = cfg.sample_every or spe

    def on_step_end(st, _last):
        if st.step % every == 0 or st.step == total:
            _samples_png(cfg, G, device, ds, step_png(out, st.step))

    trainer.run(step, stop_at=stop_at, on_step_end=on_step_end)
    summary = {"mode": cfg.mode, "loss": cfg.loss, "steps": trainer.state.step,
               "step_s": timer.step_s, "step_cpu_s": timer.step_cpu_s}
    torch.save({"G": G.state_dict(), "config": config_mod.to_dict(cfg), "channels": channels}, out / "generator.pt")
    _samples_png(cfg, G, device, ds, out / "samples.png")
    if cfg.eval_samples and (stop_at is None or trainer.state.step >= total):
        summary.update(quality(cfg, G, device, channels))
    trainer.logger.summary(**summary)
    summary["G"], summary["D"] = G, D
    return summary


def step_png(out: Path, step: int) -> Path:
    """The progress picture written after iteration `step` (sorted by name = sorted by step)."""
    return out / "samples" / f"step_{step:07d}.png"


@contextlib.contextmanager
def untouched(module: torch.nn.Module):
    """Sampling in train mode updates BatchNorm running statistics: put them back afterwards, so a run that
    draws pictures mid-training ends bitwise equal to one that does not."""
    saved = {k: v.clone() for k, v in module.named_buffers()}
    try:
        yield module
    finally:
        with torch.no_grad():
            for k, v in module.named_buffers():
                v.copy_(saved[k])


def _samples_png(cfg: OSGANConfig, G, device, ds, path: Path) -> None:
    """What the generator makes now: real vs generated points for the 2-D ring, else a grid of 64 images
    (fixed noise, its own RNG: the training RNG streams are untouched)."""
    from tenfold import plot

    with untouched(G):
        if cfg.data.name == "ring":
            plot.save_scatter(ds.x[:2000], sample(G, 2000, cfg.model.zdim, device), path, title="ring: real vs G")
        else:
            plot.save_grid(sample(G, 64, cfg.model.zdim, device), path, nrow=8)


@torch.no_grad()
def sample(G, n: int, zdim: int, device, seed: int = 1234, batch: int = 500) -> torch.Tensor:
    # train-mode BN (batch statistics), as the generator was trained; batches of 500 keep them stable
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.cat([G(torch.randn(min(batch, n - i), zdim, generator=g).to(device)).float().cpu()
                      for i in range(0, n, batch)])


def quality(cfg: OSGANConfig, G, device, channels: int) -> dict:
    """The quality proxy of spec §7d (ring: mode metrics; images: classifier-feature Fréchet distance)."""
    xs = sample(G, cfg.eval_samples, cfg.model.zdim, device)
    if cfg.data.name == "ring":
        return ring_quality(xs)
    from .proxy import image_quality

    return image_quality(cfg, xs)
