"""Load the plain-state_dict teachers of ../shared/models (architecture from the JSON beside them)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import load_module_state
from ..errors import CheckpointError
from .registry import create

__all__ = ["load_teacher", "teacher_meta"]


def teacher_meta(path: str | Path) -> dict:
    p = Path(path)
    meta_path = p.with_suffix(".json")
    if not meta_path.is_file():
        raise CheckpointError(f"{meta_path} not found: pass arch/num_classes explicitly")
    return json.loads(meta_path.read_text())


def load_teacher(path: str | Path, arch: str | None = None, num_classes: int | None = None,
                 eval_mode: bool = True) -> nn.Module:
    """Build the teacher's architecture (JSON: arch, num_classes, optional kwargs) and load its weights with
    strict=True (frozen, eval mode)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"teacher weights not found: {p}")
    extra: dict = {}
    if arch is None or num_classes is None:
        meta = teacher_meta(p)
        arch = arch or meta["arch"]
        num_classes = num_classes or int(meta["num_classes"])
        extra = dict(meta.get("kwargs", {}))  # e.g. {"in_chans": 1} for grey teachers
    model = create(arch, num_classes, **extra)
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{p}: cannot read teacher weights ({str(e).splitlines()[0]})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    load_module_state(model, sd, what=f"teacher {p.name}")
    if eval_mode:
        model.eval().requires_grad_(False)
    return model
