"""Data and teacher resolution for the CLIs: real test sets (evaluation only), real train sets (vanilla
KD upper bound, teacher training), the offline toy/synthetic sets, and teacher paths."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tenfold import data as tdata
from tenfold.errors import CheckpointError, DataError
from tenfold.eval import topk_accuracy
from tenfold.nets import load_teacher, teacher_meta
from torch import nn

from . import models  # noqa: F401  (registers toynet8/toynet16 for load_teacher)
from .augment import Normalizer
from .toy import make_toy

__all__ = ["dataset", "resolve_teacher", "load_teacher_cfg", "evaluate"]


def dataset(cfg_data, root, train: bool, num_classes: int = 10) -> tdata.ArrayImageDataset:
    name, size = cfg_data.dataset, cfg_data.image_size
    if name == "cifar10":
        ds = tdata.cifar10(root, train=train)
    elif name == "cifar100":
        ds = tdata.cifar100(root, train=train)
    elif name == "toy":
        ds = make_toy(2000 if train else 1000, size=size, classes=num_classes, seed=0 if train else 1)
    else:
        ds = tdata.synthetic_shapes(4000 if train else 1000, size, num_classes, seed=0 if train else 1)
    sub = cfg_data.train_subset if train else cfg_data.test_subset
    if sub and sub < len(ds):  # a fixed random subset: the CIFAR test pack is sorted by class
        idx = np.sort(np.random.default_rng(0).permutation(len(ds))[:sub])
        ds = tdata.ArrayImageDataset(ds.images[idx], ds.labels[idx], None, ds.classes)
    if ds.images.shape[1] != size:
        raise DataError(f"{name} images are {ds.images.shape[1]}px but data.image_size={size}; set data.image_size")
    return ds


def resolve_teacher(path: str, data_root_value: str | None = None) -> Path:
    """The path as given, else the same file name under $TENFOLD_MODELS or <data root>/../models."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    candidates = []
    if os.environ.get("TENFOLD_MODELS"):
        candidates.append(Path(os.environ["TENFOLD_MODELS"]) / p.name)
    candidates.append(tdata.data_root(data_root_value).parent / "models" / p.name)
    for c in candidates:
        if c.is_file():
            return c
    raise CheckpointError(f"teacher weights not found: {path} (also looked in {', '.join(map(str, candidates))}); "
                          f"set teacher.path, or train one with cmi-teacher")


def load_teacher_cfg(tcfg, data_root_value, device) -> tuple[nn.Module, str, int]:
    p = resolve_teacher(tcfg.path, data_root_value)
    arch, ncls = tcfg.arch, tcfg.num_classes
    if arch is None or ncls is None:
        meta = teacher_meta(p)
        arch = arch or meta["arch"]
        ncls = ncls or int(meta["num_classes"])
    model = load_teacher(p, arch, ncls).to(device)
    return model, arch, ncls


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, normalizer: Normalizer, device,
             batch_size: int = 256) -> dict:
    """Top-1 / top-5 (%) on an in-memory test set (float [0,1] NCHW)."""
    was = model.training
    model.eval()
    scores = []
    for i in range(0, images.shape[0], batch_size):
        scores.append(model(normalizer(images[i:i + batch_size].to(device))).float().cpu())
    model.train(was)
    s = torch.cat(scores)
    acc = topk_accuracy(s, labels, ks=(1, 5))  # top-5 is clamped to C for C < 5
    return {"top1": acc["top1"], "top5": acc["top5"]}
