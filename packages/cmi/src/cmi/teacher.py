"""cmi-teacher: train a classifier on real data (the reference train_scratch.py: SGD 0.1, momentum 0.9,
wd 1e-4, MultiStep [120,150,180] x0.1, crop+flip). Writes <out>/teacher.pt (plain state_dict) and
<out>/teacher.json in the ../shared/models format, so `teacher.path` can point at it."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from tenfold import config as config_mod
from tenfold import distributed, runtime
from tenfold.data import make_loader, steps_per_epoch
from tenfold.data.transforms import cifar_train
from tenfold.loop import Trainer
from tenfold.meters import write_json

from .augment import Normalizer
from .config import TeacherTrainConfig
from .data import dataset, evaluate
from .models import build

KIND = "cmi-teacher"


def train_teacher(cfg: TeacherTrainConfig, resume=None, stop_at: int | None = None) -> dict:
    device = runtime.select_device(cfg.device)
    distributed.init(device)
    runtime.set_deterministic(cfg.deterministic)
    runtime.seed_everything(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():
        config_mod.save(cfg, out / "config.yaml")
    train = dataset(cfg.data, cfg.data_root, train=True, num_classes=cfg.num_classes)
    test = dataset(cfg.data, cfg.data_root, train=False, num_classes=cfg.num_classes)
    train.transform = cifar_train(tuple(cfg.data.mean), tuple(cfg.data.std), size=cfg.data.image_size)
    model = build(cfg.arch, cfg.num_classes).to(device)
    net = distributed.wrap(model, device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    spe = steps_per_epoch(len(train), cfg.batch_size)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [m * spe for m in cfg.milestones], cfg.gamma)
    trainer = Trainer(out, kind=KIND, config=cfg, stateful={"model": model, "opt": opt, "sched": sched},
                      total_steps=cfg.epochs * spe, ckpt_every=spe,
                      batches=lambda ep, start: make_loader(train, cfg.batch_size, seed=cfg.seed, epoch=ep,
                                                            start_batch=start))
    trainer.maybe_resume(resume)

    def step(batch, state):
        x, y = (t.to(device) for t in batch)
        with runtime.autocast(device, cfg.precision):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return {"loss": loss}

    trainer.run(step, stop_at=stop_at)
    if stop_at is not None and trainer.state.step < trainer.total_steps:
        return {"step": trainer.state.step}
    norm = Normalizer(cfg.data.mean, cfg.data.std)
    x, y = test.tensors()
    acc = evaluate(model, x, y, norm, device)
    summary = {"arch": cfg.arch, "num_classes": cfg.num_classes, "test_top1": acc["top1"] / 100.0,
               "dataset": cfg.data.dataset, "mean": list(cfg.data.mean), "std": list(cfg.data.std),
               "epochs": cfg.epochs}
    if distributed.is_main():
        torch.save(model.state_dict(), out / "teacher.pt")
        (out / "teacher.json").write_text(json.dumps(summary, indent=1))
        write_json(out / "summary.json", summary)
        print(f"teacher {cfg.arch}: test top-1 {acc['top1']:.2f}% -> {out / 'teacher.pt'}")
    return summary
