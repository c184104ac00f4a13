"""Data sets for pre-training (unlabeled pool), the kNN bank / probe and fine-tuning."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tenfold import data as tdata
from tenfold.data import ArrayImageDataset, few_shot_indices

__all__ = ["Splits", "build_splits"]


@dataclass
class Splits:
    train: object  # with the training transform
    bank: object  # the same images with the eval transform (kNN bank / probe train)
    test: object
    num_classes: int


def _subset(ds: ArrayImageDataset, per_class: int, seed: int) -> ArrayImageDataset:
    if per_class <= 0:
        return ds
    idx = few_shot_indices(ds.labels, per_class, seed)
    return ArrayImageDataset(ds.images[idx], ds.labels[idx], None, ds.classes)


def _with(ds: ArrayImageDataset, transform) -> ArrayImageDataset:
    return ArrayImageDataset(ds.images, ds.labels, transform, ds.classes)


def build_splits(dcfg, root, train_transform: Callable, eval_transform: Callable, img_size: int = 32) -> Splits:
    """`root`: --data-root / $TENFOLD_DATA; missing files raise tenfold's DataError (what to get, where)."""
    if dcfg.dataset == "folder":
        train = tdata.image_folder(dcfg.folder_train, train_transform)
        bank = tdata.image_folder(dcfg.folder_train, eval_transform)
        test = tdata.image_folder(dcfg.folder_test or dcfg.folder_train, eval_transform)
        return Splits(train, bank, test, len(train.classes))
    if dcfg.dataset == "synthetic":
        tr = tdata.synthetic_shapes(dcfg.synthetic_train, img_size, 10, seed=dcfg.subset_seed)
        te = tdata.synthetic_shapes(dcfg.synthetic_test, img_size, 10, seed=dcfg.subset_seed + 1)
    elif dcfg.dataset == "stl10":
        tr, te = tdata.stl10(root, "train"), tdata.stl10(root, "test")
    else:
        load = tdata.cifar10 if dcfg.dataset == "cifar10" else tdata.cifar100
        tr, te = load(root, train=True), load(root, train=False)
    tr = _subset(tr, dcfg.train_per_class, dcfg.subset_seed)
    te = _subset(te, dcfg.test_per_class, dcfg.subset_seed)
    num_classes = int(max(tr.labels.max(), te.labels.max())) + 1 if len(tr) else len(tr.classes)
    return Splits(_with(tr, train_transform), _with(tr, eval_transform), _with(te, eval_transform),
                  max(num_classes, len(np.unique(tr.labels))))
