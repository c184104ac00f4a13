"""Atomic, self-describing checkpoints.

A checkpoint is a dict saved with torch.save to a temporary file in the same directory, flushed,
fsynced and renamed over the target, so a crash never leaves a half-written `last.pt`.
It carries a format tag and the producer's `kind` (e.g. "mgc"), so loading the wrong file, a
truncated file or a file for another model fails with one clear line.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError

FORMAT = "tenfold-checkpoint-v1"
__all__ = ["save", "load", "latest", "load_module_state", "FORMAT"]


def save(path: str | os.PathLike, state: dict[str, Any], kind: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "kind": kind, **state}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load(path: str | os.PathLike, kind: str | None = None, map_location="cpu") -> dict[str, Any]:
    """Load a tenfold checkpoint; `kind` (if given) must match the producer's kind."""
    path = Path(path)
    if path.is_dir():
        found = latest(path)
        if found is None:
            raise CheckpointError(f"no checkpoint in {path} (expected {path}/last.pt)")
        path = found
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated zip, random bytes, pickle errors
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({msg}); "
                              f"delete it or resume from another file") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tenfold checkpoint (no '{FORMAT}' tag); "
                              f"plain state_dicts load with the package's --init/--teacher options")
    if kind is not None and state.get("kind") != kind:
        raise CheckpointError(f"{path} was written by '{state.get('kind')}', not '{kind}'")
    return state


def latest(run_dir: str | os.PathLike) -> Path | None:
    p = Path(run_dir) / "last.pt"
    return p if p.is_file() else None


def load_module_state(module: nn.Module, state_dict: dict, what: str = "model", strict: bool = True) -> None:
    """load_state_dict with a one-line error naming the first mismatching keys/shapes."""
    own = module.state_dict()
    shape_bad = [k for k, v in state_dict.items()
                 if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)]
    if shape_bad:
        k = shape_bad[0]
        raise CheckpointError(f"{what}: shape mismatch for '{k}': checkpoint {tuple(state_dict[k].shape)} vs "
                              f"model {tuple(own[k].shape)} ({len(shape_bad)} such keys); "
                              f"was it trained with another architecture?")
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. '{missing[0]}')")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. '{unexpected[0]}')")
        raise CheckpointError(f"{what}: checkpoint does not match the model: {', '.join(parts)}")
    module.load_state_dict(state_dict, strict=strict)


# Optimizer/scheduler entries that come from the config rather than from training progress.
_HPARAMS = ("lr", "initial_lr", "weight_decay", "momentum", "betas", "eps", "dampening", "nesterov", "alpha")


def _scheduler_classes() -> list[type]:
    sched = torch.optim.lr_scheduler
    found = [c for c in vars(sched).values() if isinstance(c, type) and issubclass(c, sched.LRScheduler)]
    return [c for c in found if "load_state_dict" in vars(c)]  # classes with their own (e.g. LambdaLR)


# the original methods, by class that defines its own
_ORIGINAL_LOADS = {c: vars(c)["load_state_dict"] for c in [torch.optim.Optimizer, *_scheduler_classes()]}


def _original_load(obj, state_dict: dict) -> None:
    for c in type(obj).__mro__:
        if c in _ORIGINAL_LOADS:
            return _ORIGINAL_LOADS[c](obj, state_dict)
    return obj.load_state_dict(state_dict)


def keep_hparams_on_load(enable: bool = True) -> None:
    """While enabled, every optimizer/scheduler `load_state_dict` in this process keeps the hyperparameters the
    object was built with (see load_keeping_hparams). The CLI turns this on for a resume with
    --accept-config-change, so that loops of their own (not only the Trainer) apply e.g. a new learning rate."""
    for c, original in _ORIGINAL_LOADS.items():
        c.load_state_dict = load_keeping_hparams if enable else original


def load_keeping_hparams(obj: Any, state_dict: dict) -> None:
    """Restore an optimizer or LR scheduler from a checkpoint but keep the hyperparameters it was built with
    (used when a resume deliberately changes the config, e.g. a new learning rate).

    Optimizer: moments and step counts come from the checkpoint; lr, weight decay, betas, ... from the new
    construction. When a scheduler drives the lr, its position is kept and the lr is rescaled by
    new base lr / old base lr (see the scheduler branch)."""
    if isinstance(obj, torch.optim.Optimizer):
        fresh = [{k: g[k] for k in _HPARAMS if k in g} for g in obj.param_groups]
        _original_load(obj, state_dict)
        for i, (g, f) in enumerate(zip(obj.param_groups, fresh)):
            old_initial = g.get("initial_lr")
            g.update(f)
            if old_initial and "initial_lr" in f:
                # a scheduler drives the lr: keep the schedule's position, rescaled to the new base lr
                g["lr"] = state_lr(state_dict, i) * f["initial_lr"] / old_initial
        return
    if isinstance(obj, torch.optim.lr_scheduler.LRScheduler):
        fresh_base = list(obj.base_lrs)
        _original_load(obj, state_dict)
        obj.base_lrs = fresh_base
        return
    _original_load(obj, state_dict)


def state_lr(optimizer_state: dict, index: int) -> float:
    return float(optimizer_state["param_groups"][index]["lr"])
