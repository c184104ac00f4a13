"""Pre-training and evaluation image sets (labels are only used by the kNN monitor / evaluation)."""
from __future__ import annotations

import numpy as np
from tenfold import data as tdata
from tenfold.errors import DataError
from torch.utils.data import Subset

from .config import DataConfig

__all__ = ["pretrain_images", "labelled_split", "balanced_subset"]


def balanced_subset(ds: tdata.ArrayImageDataset, n: int, seed: int) -> tdata.ArrayImageDataset:
    """`n` images, as many per class as possible (n // classes each), seeded."""
    classes = np.unique(ds.labels)
    idx = tdata.few_shot_indices(ds.labels, max(n // len(classes), 1), seed)
    return tdata.ArrayImageDataset(ds.images[idx], ds.labels[idx], None, ds.classes)


def _array_set(name: str, root, train: bool, synthetic_n: int = 2000, seed: int = 0):
    if name == "cifar10":
        return tdata.cifar10(root, train=train)
    if name == "cifar100":
        return tdata.cifar100(root, train=train)
    if name == "stl10":
        return tdata.stl10(root, split="train" if train else "test")
    if name == "synthetic":
        # disjoint seeds for the train and test halves
        return tdata.synthetic_shapes(synthetic_n if train else max(synthetic_n // 4, 200), 32, 10,
                                      seed=seed * 2 + (0 if train else 1))
    raise DataError(f"data set '{name}' has no labelled splits; use cifar10, cifar100, stl10 or synthetic")


def pretrain_images(cfg: DataConfig, root=None, seed: int = 0):
    """The unlabeled pool: an ImageFolder (any layout with one sub-folder level, e.g. COCO with a dummy
    class folder) or the train split of a labelled set, optionally a class-balanced subset."""
    if cfg.dataset == "image_folder":
        ds = tdata.image_folder(cfg.path)
        if cfg.subset > 0:
            rng = np.random.default_rng(seed)
            ds = Subset(ds, np.sort(rng.choice(len(ds), min(cfg.subset, len(ds)), replace=False)).tolist())
        return ds
    ds = _array_set(cfg.dataset, root, True, cfg.synthetic_n, seed)
    return balanced_subset(ds, cfg.subset, seed) if cfg.subset > 0 else ds


def labelled_split(name: str, root, bank: int, test: int, seed: int = 0, synthetic_n: int = 2000):
    """(bank, test) class-balanced subsets of the train / test splits for kNN and linear probes."""
    tr = _array_set(name, root, True, synthetic_n, seed)
    te = _array_set(name, root, False, synthetic_n, seed)
    bank_ds = balanced_subset(tr, min(bank, len(tr)), seed + 1) if bank > 0 else tr
    test_ds = balanced_subset(te, min(test, len(te)), seed + 2) if test > 0 else te
    return bank_ds, test_ds
