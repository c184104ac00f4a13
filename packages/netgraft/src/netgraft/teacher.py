"""Teacher training with labels (the reference ships no recipe; spec §2.7 suggests a standard one)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from tenfold import config as config_mod
from tenfold import data as tfdata
from tenfold import runtime
from tenfold.data import transforms
from tenfold.loop import Trainer

from .config import TeacherConfig
from .models import build_teacher

__all__ = ["TeacherConfig", "train_teacher"]


def train_teacher(cfg: TeacherConfig, resume: str | None = None) -> dict:
    device = runtime.select_device(cfg.device)
    runtime.seed_everything(cfg.seed)
    out = Path(cfg.out)
    config_mod.save(cfg, out / "config.yaml")
    mean, std = transforms.CIFAR10_MEAN, transforms.CIFAR10_STD
    aug = transforms.cifar_train(mean, std, cfg.image_size)
    if cfg.data == "synthetic":
        tr = tfdata.synthetic_shapes(cfg.synthetic_train, cfg.image_size, cfg.num_classes, seed=1, transform=aug)
        te = tfdata.synthetic_shapes(cfg.synthetic_test, cfg.image_size, cfg.num_classes, seed=2)
    else:
        load = tfdata.cifar10 if cfg.data == "cifar10" else tfdata.cifar100
        tr, te = load(cfg.data_root, train=True, transform=aug), load(cfg.data_root, train=False)
    model = build_teacher(cfg.arch, cfg.num_classes, cfg.blocks).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay}],
                          lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    spe = tfdata.steps_per_epoch(len(tr), cfg.batch_size)
    total, warm = cfg.epochs * spe, cfg.warmup_epochs * spe
    def warmup_cosine(s: int) -> float:
        return (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(total - warm, 1)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine)
    trainer = Trainer(out, kind="netgraft-teacher", config=cfg, stateful={"model": model, "opt": opt, "sched": sched},
                      total_steps=total, ckpt_every=spe, log_every=max(spe // 4, 1),
                      batches=lambda e, s: tfdata.make_loader(tr, cfg.batch_size, seed=cfg.seed, epoch=e,
                                                              start_batch=s))
    trainer.maybe_resume(resume)

    def step(batch, _):
        x, y = batch
        with runtime.autocast(device):
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return {"loss": loss.detach(), "lr": sched.get_last_lr()[0]}

    model.train()
    trainer.run(step)
    model.eval()
    x, y = te.tensors()
    x = transforms.normalize_batch(x, mean, std)
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 500].to(device)).argmax(1).cpu() for i in range(0, len(x), 500)])
    acc = (pred == y).float().mean().item()
    torch.save(model.state_dict(), out / "teacher.pt")
    meta = {"arch": cfg.arch, "blocks": cfg.blocks, "num_classes": cfg.num_classes, "dataset": cfg.data,
            "test_top1": acc, "epochs": cfg.epochs}
    (out / "teacher.json").write_text(json.dumps(meta, indent=1))
    trainer.logger.summary(**meta)
    return meta
