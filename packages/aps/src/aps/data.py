"""Data sets for pre-training (unlabeled pool), the kNN bank / probe and fine-tuning."""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


def _cifar10_pack_subset(root, train: bool, per_class: int, seed: int) -> ArrayImageDataset | None:
    """Decode only a class-balanced subset from the tenfold JPEG pack (the spine decodes all 60,000 images,
    ~15 s CPU, on a cold cache); the indices equal few_shot_indices on the full labels. None: no pack."""
    pack = Path(root) / "cifar10" / ("train.npz" if train else "test.npz")
    if per_class <= 0 or not pack.is_file():
        return None
    from PIL import Image

    z = dict(np.load(pack, allow_pickle=False))
    labels = z["labels"].astype(np.int64)
    idx = few_shot_indices(labels, per_class, seed)
    blob, off = z["jpeg"], z["offsets"]
    images = np.stack([np.asarray(Image.open(io.BytesIO(blob[off[i]:off[i + 1]].tobytes())).convert("RGB"))
                       for i in idx])
    classes = [str(c) for c in z.get("classes", tdata.CIFAR10_CLASSES)]
    return ArrayImageDataset(images, labels[idx], None, classes)


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
        root = tdata.data_root(root)
        pick = _cifar10_pack_subset if dcfg.dataset == "cifar10" else (lambda *a: None)
        tr = pick(root, True, dcfg.train_per_class, dcfg.subset_seed) or _subset(
            load(root, train=True), dcfg.train_per_class, dcfg.subset_seed)
        te = pick(root, False, dcfg.test_per_class, dcfg.subset_seed) or _subset(
            load(root, train=False), dcfg.test_per_class, dcfg.subset_seed)
    tr = _subset(tr, dcfg.train_per_class, dcfg.subset_seed) if dcfg.dataset in ("synthetic", "stl10") else tr
    te = _subset(te, dcfg.test_per_class, dcfg.subset_seed) if dcfg.dataset in ("synthetic", "stl10") else te
    num_classes = int(max(tr.labels.max(), te.labels.max())) + 1 if len(tr) else len(tr.classes)
    return Splits(_with(tr, train_transform), _with(tr, eval_transform), _with(te, eval_transform),
                  max(num_classes, len(np.unique(tr.labels))))
