"""NetGraft training (spec §2.4–2.5) and the baselines, with epoch-level exact resume.

The schedule is a flat list of phases — stage-1 block grafting of each unit, stage-2 chains of length
2..L (NetGraft), or one end-to-end phase (plain few-shot KD / scratch) — each with its own Adam.
A checkpoint is written every `checkpoint_every` epochs and at the end of every phase; `--resume` restores
units, optimizer, RNG and position and replays the epochs since, identically (loaders are seeded per epoch).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from tenfold import checkpoint, runtime, signals
from tenfold import config as config_mod
from tenfold import data as tfdata
from tenfold.data import transforms
from tenfold.errors import CheckpointError, ConfigError
from tenfold.loop import assert_finite
from tenfold.meters import MetricLogger, progress
from torch import nn

from .config import NetGraftConfig
from .fewshot import PrefixCache, Unlabeled, augmentation, crop_views, official_few_shot, split_val, validation_shots
from .method import Grafted, Student, build_units, graft_loss
from .models import build_student, build_teacher, copy_prefix_, load_teacher_weights, partition
from .prune import prune_init_

__all__ = ["Setup", "Phase", "build", "build_models", "phases", "phase_model", "step_loss", "train_step", "run",
           "evaluate_student", "default_teacher_path", "WHOLE_STUDENT"]

WHOLE_STUDENT = ("scratch", "kd_scratch")  # methods that train the whole student (no copied teacher prefix)

CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)


@dataclasses.dataclass
class Phase:
    kind: str  # block | net | kd | kd_scratch | scratch
    index: int  # unit index (block) or chain index (net: chain of units 0..index+1)
    epochs: int


def default_teacher_path() -> Path | None:
    root = os.environ.get("TENFOLD_MODELS")
    p = Path(root) / "cifar10_vgg16_blockwise.pt" if root else None
    return p if p is not None and p.is_file() else None


def phases(cfg: NetGraftConfig) -> list[Phase]:
    if cfg.method == "netgraft":
        return ([Phase("block", g, e) for g, e in enumerate(cfg.stage1.epochs)]
                + [Phase("net", i, e) for i, e in enumerate(cfg.stage2.epochs)])
    total = cfg.baseline.epochs or (sum(cfg.stage1.epochs) + sum(cfg.stage2.epochs))
    return [Phase(cfg.method, 0, total)]


def dataset_stats(name: str) -> tuple[tuple, tuple]:
    """Normalisation mean/std (synthetic data uses CIFAR-10's)."""
    return (CIFAR100_MEAN, CIFAR100_STD) if name == "cifar100" else (transforms.CIFAR10_MEAN, transforms.CIFAR10_STD)


def load_split(cfg: NetGraftConfig, train: bool, data_root=None):
    d = cfg.data
    if d.name == "synthetic":
        n = d.synthetic_train if train else d.synthetic_test
        return tfdata.synthetic_shapes(n, d.image_size, cfg.model.num_classes, seed=1 if train else 2)
    load = tfdata.cifar10 if d.name == "cifar10" else tfdata.cifar100
    return load(data_root or cfg.data_root, train=train)


def _load_images(cfg: NetGraftConfig):
    return (load_split(cfg, True), load_split(cfg, False), *dataset_stats(cfg.data.name))


@dataclasses.dataclass
class Setup:
    device: torch.device
    teacher: nn.Module
    tpart: object
    student: nn.Module
    spart: object
    units: nn.ModuleList
    prefix_end: int
    precision: str = "fp32"  # autocast dtype on CUDA (cfg.precision); CPU runs fp32
    scaler: object = None  # torch.amp.GradScaler, enabled only for fp16 on CUDA
    train_set: object = None
    val_set: object = None
    test_x: torch.Tensor | None = None  # normalised test images, or their cached prefix outputs
    test_y: torch.Tensor | None = None
    cached: bool = False
    mean: tuple = ()
    std: tuple = ()
    val_x: torch.Tensor | None = None  # labelled validation images (or their cached prefix outputs)
    val_y: torch.Tensor | None = None


def test_subset(n_total: int, limit: int) -> torch.Tensor | None:
    """A fixed random subset of the test set (the CIFAR-10 pack is sorted by class: never take the first N)."""
    if not limit or limit >= n_total:
        return None
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(0))[:limit].sort().values


def normalised(ds, mean, std, limit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = ds.tensors()
    idx = test_subset(len(x), limit)
    if idx is not None:
        x, y = x[idx], y[idx]
    return transforms.normalize_batch(x, mean, std), y


def _memo(memo: dict | None, key: tuple, make):
    """Reuse an expensive, deterministic tensor cache across runs of one process (e.g. a tuning sweep)."""
    if memo is None:
        return make()
    if key not in memo:
        memo[key] = make()
    return memo[key]


def build_models(cfg: NetGraftConfig, teacher_state: dict | None = None, device: torch.device | None = None
                 ) -> Setup:
    """Teacher (frozen), student and grafting units on the device, no data (the GPU benchmark times these;
    `device` overrides cfg.device, e.g. for fake-CUDA placement tests)."""
    device = device or runtime.select_device(cfg.device)
    runtime.seed_everything(cfg.seed)
    mc = cfg.model
    teacher = build_teacher(mc.teacher_arch, mc.num_classes, mc.teacher_blocks)
    if teacher_state is not None:
        teacher.load_state_dict(teacher_state)
    else:
        path = mc.teacher_ckpt or default_teacher_path()
        if path is None:
            raise CheckpointError("no teacher: set model.teacher_ckpt=PATH (a plain state_dict, e.g. "
                                  "../shared/models/cifar10_vgg16_blockwise.pt) or train one with netgraft-teacher")
        load_teacher_weights(teacher, path)
    teacher.to(device).eval().requires_grad_(False)  # frozen, but gradients still flow through it
    student = build_student(mc.student_arch, mc.num_classes, mc.student_blocks, mc.student_head_hidden,
                            mc.student_width).to(device)
    tpart, spart = partition(teacher), partition(student)
    prefix_end = mc.positions[0]
    if cfg.method not in WHOLE_STUDENT:
        copy_prefix_(tpart, spart, prefix_end)
    units = build_units(tpart, spart, mc.positions, mc.force_adapters).to(device)
    if mc.student_init == "prune":
        prune_init_(tpart, units, mc.positions)
    return Setup(device, teacher, tpart, student, spart, units, prefix_end, cfg.precision,
                 runtime.grad_scaler(device, cfg.precision))


def build(cfg: NetGraftConfig, teacher_state: dict | None = None, memo: dict | None = None) -> Setup:
    """`memo`: an optional dict shared by runs in one process to reuse the frozen-prefix caches (they depend
    only on the teacher and the data settings, and on the seed only when fewer than 81 crops are cached)."""
    m = build_models(cfg, teacher_state)
    device, tpart, prefix_end, mc = m.device, m.tpart, m.prefix_end, cfg.model
    train_ds, test_ds, mean, std = _load_images(cfg)
    pick = official_few_shot(train_ds.labels, cfg.data.n_shot, cfg.data.few_shot_seed, cfg.data.pool_per_class)
    pick, val_pick = split_val(pick, train_ds.labels, cfg.data.val_per_class)
    aug = augmentation(cfg.data.augment, mean, std, cfg.data.image_size)
    few = tfdata.ArrayImageDataset(train_ds.images[pick], train_ds.labels[pick], aug)
    val = tfdata.ArrayImageDataset(train_ds.images[val_pick], train_ds.labels[val_pick]) if len(val_pick) else None
    test_x, test_y = normalised(test_ds, mean, std, cfg.data.test_limit)
    lab_pick = validation_shots(train_ds.labels, cfg.data.n_shot, cfg.data.val_labelled_per_class,
                                cfg.data.few_shot_seed, cfg.data.pool_per_class)
    val_x, val_y = normalised(tfdata.ArrayImageDataset(train_ds.images[lab_pick], train_ds.labels[lab_pick]),
                              mean, std) if len(lab_pick) else (None, None)
    cached = cfg.data.cache_prefix and cfg.method not in WHOLE_STUDENT  # units see cached prefix outputs
    prefix_fn = lambda x: tpart.forward_prefix(x.to(device), prefix_end)  # noqa: E731
    tail_fn = lambda h: tpart.forward(h, start=prefix_end)  # noqa: E731

    @torch.no_grad()
    def prefix_all(x):
        return torch.cat([prefix_fn(x[i:i + 500]) for i in range(0, len(x), 500)])

    d = cfg.data
    key = (str(mc.teacher_ckpt), id(teacher_state), d.name, d.n_shot, d.few_shot_seed, d.pool_per_class,
           d.val_per_class, d.augment, d.cache_crops, cfg.seed if d.cache_crops < 81 else None)
    if cfg.data.cache_prefix and cfg.method != "scratch":
        keep = cfg.method == "kd_scratch"  # the student trains its own prefix: keep the image views

        def make_cache():
            x01, _ = tfdata.ArrayImageDataset(few.images, few.labels).tensors()
            views = [transforms.normalize_batch(v, mean, std) for v in crop_views(x01, d.cache_crops, cfg.seed)]
            return PrefixCache(views, prefix_fn, tail_fn, flip=d.augment == "flip", keep_input=keep)
        train_set = _memo(memo, ("train", keep) + key, make_cache)
    else:
        train_set = few if cfg.method == "scratch" else Unlabeled(few)
    if cached:
        test_x = _memo(memo, ("test", d.test_limit) + key[:3], lambda: prefix_all(test_x))
        if val_x is not None:
            val_x = _memo(memo, ("val", d.val_labelled_per_class) + key[:7], lambda: prefix_all(val_x))
    val_set = None
    if val is not None:
        vx, _ = normalised(val, mean, std)
        val_set = vx
    return dataclasses.replace(m, train_set=train_set, val_set=val_set, test_x=test_x, test_y=test_y, cached=cached,
                               mean=mean, std=std, val_x=val_x, val_y=val_y)


# ---- one phase ------------------------------------------------------------------------------------

def _scale(cfg: NetGraftConfig) -> float:
    return cfg.factor if cfg.stage1.scale_lr_by_shots else 1.0


def phase_model(cfg: NetGraftConfig, s: Setup, ph: Phase) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The network trained in a phase and a fresh Adam over exactly its trainable parameters."""
    pos = cfg.model.positions
    if ph.kind == "block":
        u = s.units[ph.index]
        f = _scale(cfg)
        groups = [{"params": list(u.body.parameters()), "lr": cfg.stage1.lr_block[ph.index] * f},
                  {"params": list(u.t2s.parameters()), "lr": cfg.stage1.lr_t2s[ph.index] * f},
                  {"params": list(u.s2t.parameters()), "lr": cfg.stage1.lr_s2t[ph.index] * f}]
        groups = [g for g in groups if g["params"]]
        return Grafted(s.tpart, u, pos[ph.index], 1), torch.optim.Adam(groups)
    if ph.kind in ("net", "kd"):
        n = ph.index + 2 if ph.kind == "net" else len(pos)
        chain = nn.Sequential(*s.units[:n])
        lr = cfg.stage2.lr if ph.kind == "net" else cfg.baseline.lr
        return Grafted(s.tpart, chain, pos[0], pos[n - 1] - pos[0] + 1), torch.optim.Adam(chain.parameters(), lr=lr)
    if ph.kind in WHOLE_STUDENT:
        return s.student, torch.optim.Adam(s.student.parameters(), lr=cfg.baseline.lr)
    raise ValueError(ph.kind)


def step_loss(cfg, s: Setup, ph: Phase, model, batch) -> torch.Tensor:
    """The forward half of one training step of phase `ph` (under cfg.precision's autocast): the loss."""
    with runtime.autocast(s.device, s.precision):
        if ph.kind == "scratch":
            x, y = batch
            loss = F.cross_entropy(model(x.to(s.device)), torch.as_tensor(y).to(s.device))
        elif ph.kind == "kd_scratch":  # the whole student against the teacher's logits of the same view
            if isinstance(batch, (list, tuple)):  # cached views: (image, teacher logits)
                x, z_t = (t.to(s.device) for t in batch)
            else:
                x = batch.to(s.device)
                with torch.no_grad():
                    z_t = s.teacher(x)
            loss = graft_loss(model(x).float(), z_t.float(), cfg.loss, cfg.kl_temperature)
        else:
            if s.cached:
                h, z_t = (t.to(s.device) for t in batch)
            else:
                with torch.no_grad():
                    h = s.tpart.forward_prefix(batch.to(s.device), s.prefix_end)
                    z_t = s.tpart.forward(h, start=s.prefix_end)  # the un-grafted teacher, same batch
            z_g = model(h, start=s.prefix_end)
            loss = graft_loss(z_g.float(), z_t.float(), cfg.loss, cfg.kl_temperature)
    return loss


def train_step(cfg, s: Setup, ph: Phase, model, opt, batch) -> torch.Tensor:
    loss = step_loss(cfg, s, ph, model, batch)
    runtime.optimizer_step(loss, opt, s.scaler)  # scaled backward only for fp16 on CUDA
    return loss.detach()


@torch.no_grad()
def _logits(s: Setup, fn, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    with runtime.autocast(s.device, s.precision):
        return torch.cat([fn(x[i:i + batch].to(s.device)).float().cpu() for i in range(0, len(x), batch)])


def student_from_prefix(s: Setup):
    """The student as a function of the (possibly cached) test input."""
    chain = nn.Sequential(*s.units)

    def fn(x):
        h = x if s.cached else s.spart.forward_prefix(x, s.prefix_end)
        return chain(h)
    return fn


def _test_accuracy(s: Setup, fn, split: str = "test") -> float:
    """Top-1 % of `fn` on the (possibly cached) test or labelled-validation inputs, with the student's modules
    in eval mode meanwhile."""
    x, y = (s.test_x, s.test_y) if split == "test" else (s.val_x, s.val_y)
    s.units.eval()
    s.student.eval()
    try:
        logits = _logits(s, fn, x)
    finally:
        s.units.train()
        s.student.train()
    return (logits.argmax(1) == y).float().mean().item() * 100


def evaluate_student(s: Setup, method: str, split: str = "test") -> float:
    return _test_accuracy(s, s.student if method in WHOLE_STUDENT else student_from_prefix(s), split)


def evaluate_grafted(s: Setup, model: Grafted) -> float:
    """Test accuracy of a grafted hybrid network (the teacher with a unit or chain in place; logging only)."""
    start = s.prefix_end if s.cached else 0
    return _test_accuracy(s, lambda x: model(x, start=start))


def evaluate_teacher(s: Setup) -> float:
    return _test_accuracy(s, (lambda h: s.tpart.forward(h, start=s.prefix_end)) if s.cached else s.teacher)


@torch.no_grad()
def val_loss(cfg, s: Setup) -> float:
    """Label-free selection score: the grafting loss of the full chain on held-out few-shot images."""
    s.units.eval()
    h = s.tpart.forward_prefix(s.val_set.to(s.device), s.prefix_end)
    z_t = s.tpart.forward(h, start=s.prefix_end)
    z = nn.Sequential(*s.units)(h)
    s.units.train()
    return graft_loss(z.float(), z_t.float(), cfg.loss, cfg.kl_temperature).item() / len(h)


# ---- the schedule ---------------------------------------------------------------------------------

def _mix(*xs: int) -> int:
    h = 1469598103934665603
    for x in xs:
        h = ((h ^ int(x)) * 1099511628211) % (1 << 61)
    return h


def _trainable_state(cfg, s: Setup) -> dict:
    return s.student.state_dict() if cfg.method in WHOLE_STUDENT else s.units.state_dict()


def _load_trainable(cfg, s: Setup, sd: dict) -> None:
    target = s.student if cfg.method in WHOLE_STUDENT else s.units
    checkpoint.load_module_state(target, sd, what="student units")


def run(cfg: NetGraftConfig, resume: str | None = None, stop_after_epochs: int | None = None,
        teacher_state: dict | None = None, memo: dict | None = None) -> dict:
    """Train per `cfg.method`; returns the summary (also written to <out>/summary.json). `memo`: see `build`."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config_mod.save(cfg, out / "config.yaml")
    s = build(cfg, teacher_state, memo)
    plan = phases(cfg)
    log = MetricLogger(out)
    ckpt_path = out / "last.pt"
    pi, epoch, best, history = 0, 0, None, []
    opt_state = None
    if resume:
        ck = checkpoint.load(ckpt_path if resume == "auto" else resume, kind="netgraft")
        if ck["config"] != config_mod.to_dict(cfg) | {"out": ck["config"]["out"]}:
            raise CheckpointError("checkpoint was written with a different configuration; "
                                  "resume with the same config (see its config.yaml)")
        _load_trainable(cfg, s, ck["units"])
        pi, epoch, best, history, opt_state = ck["phase"], ck["epoch"], ck["best"], ck["history"], ck["opt"]
        runtime.set_rng_state(ck["rng"])
        log.truncate_after(len(history))  # epochs logged after this checkpoint are replayed and logged again
    done_epochs = 0
    total = sum(p.epochs for p in plan)
    bar = progress(total=total, initial=sum(p.epochs for p in plan[:pi]) + epoch, desc=f"netgraft[{cfg.method}]")
    # SIGTERM/SIGUSR1 (tenfold.signals): checkpoint at the next epoch boundary (a few-shot epoch is a few steps)
    with signals.polling():
        while pi < len(plan):
            ph = plan[pi]
            model, opt = phase_model(cfg, s, ph)
            if opt_state is not None:
                opt.load_state_dict(opt_state)
                opt_state = None
            s.units.train()
            while epoch < ph.epochs:
                if stop_after_epochs is not None and done_epochs >= stop_after_epochs:
                    bar.close()
                    return {"interrupted": True}
                best = _epoch(cfg, s, ph, pi, epoch, model, opt, best, history, log, ckpt_path,
                              last_of_net=ph.kind == "net" and pi == len(plan) - 1)
                epoch += 1
                done_epochs += 1
                bar.update(1)
                # where a resume continues: this phase's next epoch (with its Adam state) or the next phase
                at = (pi, epoch, opt) if epoch < ph.epochs else (pi + 1, 0, None)
                # not every epoch: Adam state is large (#17); a signal saves wherever the run stands
                periodic = at[0] != pi or epoch % cfg.checkpoint_every == 0
                save = functools.partial(_save, ckpt_path, cfg, s, *at, best, history)
                if periodic:
                    save()
                signals.check((lambda: ckpt_path) if periodic else save, f"epoch {len(history)}/{total}")
            pi, epoch = pi + 1, 0
    bar.close()
    if best is not None:
        _load_trainable(cfg, s, best["units"])
    return finish(cfg, s, history, best)


def _save(path: Path, cfg, s: Setup, phase: int, epoch: int, opt, best, history: list) -> Path:
    return checkpoint.save(path, {"phase": phase, "epoch": epoch, "units": _trainable_state(cfg, s),
                                  "opt": opt.state_dict() if opt is not None else None, "best": best,
                                  "history": history, "rng": runtime.rng_state(), "config": config_mod.to_dict(cfg)},
                           kind="netgraft")


def _epoch(cfg, s: Setup, ph: Phase, pi: int, epoch: int, model, opt, best, history: list, log, ckpt_path,
           last_of_net: bool):
    """One epoch over the few shots, its logging evaluations and (last chain) the selection; returns `best`."""
    loader = tfdata.make_loader(s.train_set, cfg.effective_batch, seed=_mix(cfg.seed, pi), epoch=epoch,
                                shuffle=True, drop_last=False, num_workers=cfg.num_workers)
    # losses stay on the device; one host sync per epoch (the NaN check and the logged mean), not per step
    losses = torch.stack([train_step(cfg, s, ph, model, opt, batch).float() for batch in loader])
    epoch_loss = float(losses.double().mean())
    assert_finite(epoch_loss, len(history) + 1, ckpt_path if ckpt_path.is_file() else None)
    rec = {"phase": f"{ph.kind}{ph.index}", "epoch": epoch, "loss": epoch_loss}
    if ph.kind == "block" and epoch == ph.epochs - 1:  # where stage 1 leaves each unit (spec §2.4 logs it)
        rec["grafted_acc"] = evaluate_grafted(s, model)
        if ph.index == len(s.units) - 1:  # the stage-1 blocks simply stacked: what stage 2 starts from
            rec["stacked_acc"] = evaluate_student(s, cfg.method)
    if cfg.eval_every and (epoch + 1) % cfg.eval_every == 0:
        rec["test_acc"] = evaluate_student(s, cfg.method) if ph.kind != "block" else None
    if last_of_net and cfg.stage2.select != "last":
        score = val_loss(cfg, s) if cfg.stage2.select == "best_on_val" else -evaluate_student(s, cfg.method)
        rec["select_score"] = score
        if best is None or score < best["score"]:
            best = {"score": score, "epoch": epoch, "units": copy.deepcopy(_trainable_state(cfg, s))}
    history.append(rec)
    log.log(len(history), **{k: v for k, v in rec.items() if v is not None})
    return best


def finish(cfg: NetGraftConfig, s: Setup, history: list, best: dict | None) -> dict:
    out = Path(cfg.out)
    student = Student(nn.ModuleList(list(s.spart.blocks[:s.prefix_end])), s.units) \
        if cfg.method not in WHOLE_STUDENT else None
    state = {"method": cfg.method, "config": config_mod.to_dict(cfg),
             "student": student.state_dict() if student is not None else s.student.state_dict()}
    checkpoint.save(out / "student.pt", state, kind="netgraft-student")
    acc = evaluate_student(s, cfg.method)
    val_acc = evaluate_student(s, cfg.method, "val") if s.val_x is not None else None
    summary = {"method": cfg.method, "n_shot": cfg.data.n_shot, "seed": cfg.seed, "test_acc": acc, "val_acc": val_acc,
               "teacher_acc": evaluate_teacher(s), "selected_epoch": best["epoch"] if best else "last",
               "select": cfg.stage2.select, "steps": sum(len(range(0, len(s.train_set), cfg.effective_batch))
                                                          * p.epochs for p in phases(cfg)),
               "stage1_grafted_acc": {h["phase"]: h["grafted_acc"] for h in history if "grafted_acc" in h},
               "stage1_stacked_acc": next((h["stacked_acc"] for h in history if "stacked_acc" in h), None),
               "first_loss": {h["phase"]: h["loss"] for h in history if h["epoch"] == 0},
               "last_loss": {h["phase"]: h["loss"] for h in history}}
    MetricLogger(out).summary(**summary)
    return summary


def check_method(cfg: NetGraftConfig) -> None:
    if cfg.method == "scratch" and cfg.data.cache_prefix:
        raise ConfigError("method=scratch trains the whole student: set data.cache_prefix=false")
