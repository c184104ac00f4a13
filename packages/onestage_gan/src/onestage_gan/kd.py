"""Data-free adversarial distillation (DFAD-style) in one or two stages (spec §2.9).

The generator maximises and the student minimises L = mean |T(G(z)) − S(G(z))|₁ (teacher frozen): a
symmetric game, so one stage is x̃ = GradScale(G(z), −1) and ONE backward updates both.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from tenfold import config as config_mod
from tenfold import data as tfdata
from tenfold import nets, runtime
from tenfold.data import transforms
from tenfold.errors import CheckpointError
from tenfold.loop import Trainer

from .config import OSGANConfig
from .gradscale import ScaleSlot, grad_scale
from .method import _backward, _step
from .nets import DCGenerator
from .proxy import _cifar_input
from .timing import StepTimer

__all__ = ["dfad_loss", "kd_one_stage_step", "kd_two_stage_step", "run_kd"]


def dfad_loss(t_logits: torch.Tensor, s_logits: torch.Tensor) -> torch.Tensor:
    return (t_logits - s_logits).abs().mean()


def kd_one_stage_step(G, S, T, opt_g, opt_s, z, scaler=None) -> torch.Tensor:
    """scaler: a torch.amp.GradScaler for fp16 on CUDA, else None."""
    opt_g.zero_grad(set_to_none=True)
    opt_s.zero_grad(set_to_none=True)
    x = _cifar_input(grad_scale(G(z), ScaleSlot(-1.0)))  # G ascends, S descends the same loss
    loss = dfad_loss(T(x), S(x))
    _backward(loss, scaler)
    _step(opt_s, scaler)
    _step(opt_g, scaler)
    if scaler is not None:
        scaler.update()
    return loss.detach()


def kd_two_stage_step(G, S, T, opt_g, opt_s, z_s, z_g, student_steps: int = 1, scaler=None) -> torch.Tensor:
    for _ in range(student_steps):
        with torch.no_grad():
            x = _cifar_input(G(z_s))
            t = T(x)
        loss = dfad_loss(t, S(x))
        opt_s.zero_grad(set_to_none=True)
        _backward(loss, scaler)
        _step(opt_s, scaler)
    x = _cifar_input(G(z_g))
    loss_g = -dfad_loss(T(x), S(x))
    opt_g.zero_grad(set_to_none=True)
    _backward(loss_g, scaler)
    _step(opt_g, scaler)
    if scaler is not None:
        scaler.update()
    return loss.detach()


def _teacher_path(cfg: OSGANConfig) -> Path:
    if cfg.kd.teacher:
        return Path(cfg.kd.teacher)
    root = os.environ.get("TENFOLD_MODELS")
    if not root:
        raise CheckpointError("kd.teacher not set: point it at a teacher state_dict (e.g. "
                              "../shared/models/cifar10_wrn40_2.pt) or set TENFOLD_MODELS")
    return Path(root) / "cifar10_wrn40_2.pt"


@torch.no_grad()
def accuracy(model, x, y, device, batch: int = 500) -> float:
    was = model.training
    model.eval()
    correct = sum((model(x[i:i + batch].to(device)).argmax(1).cpu() == y[i:i + batch]).sum().item()
                  for i in range(0, len(x), batch))
    model.train(was)
    return 100.0 * correct / len(x)


def run_kd(cfg: OSGANConfig, resume: str | None = None, stop_at: int | None = None) -> dict:
    device = runtime.select_device(cfg.device)
    runtime.seed_everything(cfg.seed)
    out = Path(cfg.out)
    config_mod.save(cfg, out / "config.yaml")
    k = cfg.kd
    T = nets.load_teacher(_teacher_path(cfg)).to(device)
    S = nets.create(k.student, T.fc.out_features if hasattr(T, "fc") else 10).to(device).train()
    G = DCGenerator(k.zdim, 3, k.g_width, 32, "bn").to(device).train()
    opt_s = torch.optim.SGD(S.parameters(), lr=k.lr_s, momentum=k.momentum, weight_decay=k.weight_decay)
    opt_g = torch.optim.Adam(G.parameters(), lr=k.lr_g)
    spe = k.iters_per_epoch
    total = cfg.max_steps or cfg.epochs * spe
    factor = lambda step: cfg.optim.lr_gamma ** sum(step // spe >= m for m in cfg.optim.milestones)  # noqa: E731
    sch_s = torch.optim.lr_scheduler.LambdaLR(opt_s, factor)
    sch_g = torch.optim.lr_scheduler.LambdaLR(opt_g, factor)
    trainer = Trainer(out, kind="osgan-kd", config=cfg, total_steps=total, ckpt_every=cfg.ckpt_every,
                      log_every=cfg.log_every, desc=f"dfad[{cfg.mode}-stage]",
                      stateful={"G": G, "S": S, "opt_g": opt_g, "opt_s": opt_s, "sch_g": sch_g, "sch_s": sch_s},
                      batches=lambda e, s: range(spe - s), batch_size_of=lambda _: cfg.batch_size)
    trainer.maybe_resume(resume)
    timer = StepTimer(device)
    scaler = runtime.grad_scaler(device, cfg.precision)  # only enabled for fp16 on CUDA
    scaler = scaler if scaler.is_enabled() else None

    def step(_batch, _state):
        b = cfg.batch_size
        with timer, runtime.autocast(device, cfg.precision):
            if cfg.mode == "one":
                loss = kd_one_stage_step(G, S, T, opt_g, opt_s, torch.randn(b, k.zdim, device=device), scaler)
            else:
                loss = kd_two_stage_step(G, S, T, opt_g, opt_s, torch.randn(b, k.zdim, device=device),
                                         torch.randn(b, k.zdim, device=device), k.student_steps, scaler)
        sch_s.step()
        sch_g.step()
        return {"loss": loss}

    every = cfg.sample_every or spe

    def picture(path: Path) -> None:
        from tenfold import plot

        from .train import sample, untouched

        with untouched(G):  # fixed noise on its own RNG; BN statistics put back
            plot.save_grid(sample(G, 64, k.zdim, device), path, nrow=8)

    def on_step_end(st, _last):
        if st.step % every == 0 or st.step == total:
            from .train import step_png

            picture(step_png(out, st.step))

    trainer.run(step, stop_at=stop_at, on_step_end=on_step_end)
    picture(out / "samples.png")
    summary = {"task": "kd", "mode": cfg.mode, "steps": trainer.state.step,
               "step_s": timer.step_s, "step_cpu_s": timer.step_cpu_s}
    if stop_at is None or trainer.state.step >= total:
        te = tfdata.cifar10(cfg.data_root, train=False)
        x, y = te.tensors()
        if k.eval_limit and k.eval_limit < len(x):  # a fixed random subset: the CIFAR-10 pack is class-sorted
            idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:k.eval_limit]
            x, y = x[idx], y[idx]
        x = transforms.normalize()(x)  # the teachers' CIFAR-10 statistics
        summary["student_acc"] = accuracy(S, x, y, device)
        summary["teacher_acc"] = accuracy(T, x, y, device)
    torch.save(S.state_dict(), out / "student.pt")
    trainer.logger.summary(**summary)
    return summary

