"""`run_mosaic(cfg)`: MosaicKD end to end (data -> players -> game loop -> evaluation -> summary), on the spine's
Trainer (one Trainer step = one outer iteration; exact resume includes the KD stream's position)."""
from __future__ import annotations

from pathlib import Path

import torch
from tenfold.data import data_root
from tenfold.loop import Trainer, assert_finite

from .common import (
    Timer,
    apply_ood_subset,
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
from .config import MosaicConfig
from .data import BatchStream
from .game import MosaicGame
from .nets import UpsampleGenerator, build_classifier, build_discriminator

__all__ = ["run_mosaic", "build_mosaic"]


def build_mosaic(cfg: MosaicConfig, device: torch.device):
    """Everything a MosaicKD run needs, built deterministically from the config."""
    d = cfg.data
    root = data_root(cfg.data_root)
    teacher, num_classes = build_teacher(cfg.model, device)
    test = in_domain_test(d, root)
    ood = ood_pool(d, root)
    norm_id, norm_kd = norms(d)
    if d.ood_subset:
        ood = apply_ood_subset(d, ood, teacher, cfg.model.teacher, norm_kd, device, root)
    G = UpsampleGenerator(cfg.generator.nz, cfg.generator.ngf, d.img_size, d.channels, cfg.generator.width_mult)
    D = build_discriminator(cfg.discriminator.kind, d.channels, cfg.discriminator.ndf, d.img_size)
    S = build_classifier(cfg.model.student, num_classes, d.channels)
    G, D, S = G.to(device), D.to(device), S.to(device)
    B = cfg.train.batch_size
    # x' : no augmentation, in-domain normalisation; x'': crop+flip, OOD normalisation (spec §2.4)
    real = BatchStream(ood, B, seed=cfg.seed, normalizer=norm_id, augment=False, device=device)
    kd = BatchStream(ood, B, seed=cfg.seed + 1, normalizer=norm_kd, augment=d.kd_ood_augment, device=device)
    ipe = real.batches_per_epoch()
    total = cfg.train.iters or cfg.train.epochs * ipe
    L, O = cfg.loss, cfg.optim
    game = MosaicGame(G, D, S, teacher, norm_id, total_iters=total, local=L.local, align=L.align, adv=L.adv,
                      balance=L.balance, tau=L.T, kd_steps=cfg.train.kd_steps, kd_use_ood=cfg.train.kd_use_ood,
                      lr=O.lr, momentum=O.momentum, weight_decay=O.weight_decay, lr_g=O.lr_g, betas=O.betas,
                      device=device, precision=cfg.precision if cfg.train.amp else "fp32")
    t_cache = teacher_logits(teacher, ood, norm_kd, device, precision=game.precision) if d.cache_teacher_ood else None
    return game, real, kd, test, norm_id, t_cache, ipe, total


def run_mosaic(cfg: MosaicConfig, resume: str | None = None, stop_at: int | None = None) -> dict:
    timer = Timer()
    device = setup_run(cfg)
    game, real, kd, test, norm_id, t_cache, ipe, total = build_mosaic(cfg, device)
    out = Path(cfg.out)
    track = {"best_top1": -1.0, "best_step": 0, "last": {}}
    eval_every = cfg.train.eval_every or ipe

    def next_ood():
        x, idx = kd.next()
        return x, (t_cache[idx.to(t_cache.device)] if t_cache is not None else None)

    def load_extra(extra):
        kd.load_position(extra["kd_stream"])
        track.update(extra["track"])

    B, k = cfg.train.batch_size, cfg.train.kd_steps
    trainer = Trainer(out, kind="mosaickd", config=cfg, stateful=game.stateful(), total_steps=total,
                      batches=lambda e, s: real.epoch_batches(e, s), ckpt_every=cfg.train.ckpt_every,
                      log_every=cfg.train.log_every, desc="mosaickd",
                      batch_size_of=lambda b: k * (2 * b[0].shape[0] if cfg.train.kd_use_ood else b[0].shape[0]),
                      extra_state=lambda: {"kd_stream": kd.position, "track": dict(track)},
                      load_extra_state=load_extra)
    resumed = trainer.maybe_resume(resume)

    def step(batch, st):
        x_real, _ = batch
        m = game.outer_step(x_real, next_ood)
        for key in ("g_total", "d_loss"):
            if key in m:
                assert_finite(m[key], st.step + 1, trainer.ckpt_path if trainer.ckpt_path.is_file() else None)
        return {"loss": m.pop("kd_loss"), **m}

    def on_step_end(st, last):
        if st.step % eval_every and st.step != total and st.batch_in_epoch != ipe:
            return
        acc = evaluate(game.S, test, norm_id, device, precision=game.precision)
        track["last"] = {"step": st.step, **acc}
        if acc["top1"] > track["best_top1"]:
            track.update(best_top1=acc["top1"], best_step=st.step)
        trainer.logger.log(st.step, split="test", **acc, best_top1=track["best_top1"])
        save_synthetic(game.G, grid_path(out, st.step), device)
        if not cfg.train.ckpt_every:
            trainer.save()

    trainer.run(step, stop_at=stop_at, on_step_end=on_step_end)
    summary = {"method": "mosaickd", "steps": trainer.state.step, "total_steps": total,
               "student_steps": trainer.state.step * k, "batch_size": B, "resumed": resumed,
               "best_top1": track["best_top1"], "best_step": track["best_step"],
               "last_top1": track["last"].get("top1"), "last_top5": track["last"].get("top5"),
               "student_images_per_s": round(getattr(trainer, "samples_per_s", 0.0), 2),
               "wall_s": round(timer.seconds, 2), "device": str(device)}
    if trainer.state.step >= total:
        if cfg.train.eval_teacher:
            summary["teacher_top1"] = evaluate(game.T, test, norm_id, device, precision=game.precision)["top1"]
        export_model(game.S, out / "student.pt", cfg.model.student, game.S.fc.out_features,
                     norm=cfg.data.in_domain_norm or cfg.data.in_domain, in_chans=cfg.data.channels,
                     test_top1=summary["last_top1"])
        save_synthetic(game.G, out / "synthetic.png", device)
    trainer.logger.summary(**summary)
    return summary
