"""`run_teacher(cfg)`: train a teacher on a data set or a class subset (train_scratch.py: SGD 0.1, momentum 0.9,
wd 1e-4, cosine per iteration, crop+flip), exported as `<out>/teacher.pt` + `teacher.json` for model.teacher."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from tenfold.data import data_root
from tenfold.loop import Trainer
from tenfold.runtime import autocast, grad_scaler, optimizer_step

from .common import Timer, evaluate, export_model, setup_run
from .config import TeacherConfig
from .data import BatchStream, load_split, normalizer_for
from .game import cosine
from .nets import build_classifier

__all__ = ["run_teacher"]


def run_teacher(cfg: TeacherConfig, resume: str | None = None, stop_at: int | None = None) -> dict:
    timer = Timer()
    device = setup_run(cfg)
    t = cfg.teacher
    root = data_root(cfg.data_root)
    kw = dict(root=root, img_size=t.img_size, channels=t.channels, classes=t.classes, remap=True,
              synthetic_n=t.synthetic_n)
    train = load_split(t.dataset, True, per_class=t.per_class, **kw)
    test = load_split(t.dataset, False, per_class=t.test_per_class, **kw)
    num_classes = len(t.classes) if t.classes else int(train.labels.max()) + 1
    norm_name = t.norm or t.dataset
    norm = normalizer_for(norm_name, t.channels)
    model = build_classifier(t.arch, num_classes, t.channels).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    stream = BatchStream(train, t.batch_size, seed=cfg.seed, normalizer=norm, augment=t.augment, device=device,
                         drop_last=len(train) >= t.batch_size)
    total = t.steps or t.epochs * stream.batches_per_epoch()
    sched = cosine(opt, total)
    out = Path(cfg.out)
    trainer = Trainer(out, kind="mosaickd-teacher", config=cfg, stateful={"model": model, "opt": opt, "sched": sched},
                      total_steps=total, batches=lambda e, s: stream.epoch_batches(e, s), ckpt_every=cfg.ckpt_every,
                      log_every=cfg.log_every, desc="teacher")
    resumed = trainer.maybe_resume(resume)
    labels = train.labels.to(device)
    prec = cfg.precision if t.amp else "fp32"
    scaler = grad_scaler(device, prec)

    def step(batch, st):
        x, idx = batch
        model.train()
        with autocast(device, prec):
            loss = F.cross_entropy(model(x).float(), labels[idx.to(device)])
        optimizer_step(loss, opt, scaler)
        sched.step()
        return {"loss": loss.detach(), "lr": sched.get_last_lr()[0]}

    trainer.run(step, stop_at=stop_at)
    acc = evaluate(model, test, norm, device, precision=prec)
    trainer.logger.log(trainer.state.step, split="test", **acc)
    summary = {"arch": t.arch, "num_classes": num_classes, "dataset": t.dataset, "classes": t.classes,
               "steps": trainer.state.step, "resumed": resumed, "test_top1": acc["top1"],
               "wall_s": round(timer.seconds, 2)}
    if trainer.state.step >= total:
        mean, std = norm.mean.flatten().tolist(), norm.std.flatten().tolist()
        export_model(model, out / "teacher.pt", t.arch, num_classes, dataset=t.dataset, classes=t.classes,
                     norm=norm_name, in_chans=t.channels, test_top1=acc["top1"] / 100,
                     input=f"in [0,1], normalized with mean {tuple(round(m, 4) for m in mean)} "
                           f"std {tuple(round(s, 4) for s in std)}")
        summary["teacher"] = str(out / "teacher.pt")
    trainer.logger.summary(**summary)
    return summary
