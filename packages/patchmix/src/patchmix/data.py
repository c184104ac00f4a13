"""Data sets for pre-training and evaluation: uint8 images, augmented later in batches on the device."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from tenfold import data as tdata
from tenfold.errors import DataError
from torch.utils.data import Dataset

__all__ = ["load_split", "balanced_subset", "to_unit", "keep_uint8", "FolderImages", "FolderCrops", "CropSpec"]


class FolderImages(Dataset):
    """ImageFolder items as uint8 [3, s, s] tensors (shorter side resized to s, centre crop): the evaluation
    transform's first half (eval_view then centre-crops the model's size out of it)."""

    def __init__(self, path, size: int):
        from torchvision.transforms import v2

        self.tf = v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])
        self.ds = tdata.image_folder(path, transform=None)
        self.targets = np.asarray(self.ds.targets)
        self.classes = self.ds.classes

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        img, y = self.ds[i]
        return self.tf(img.convert("RGB")), int(y)


@dataclasses.dataclass(frozen=True)
class CropSpec:
    """One RandomResizedCrop of a pre-training view: output side, area fraction range and aspect-ratio range."""

    size: int
    scale: tuple[float, float]
    ratio: tuple[float, float] = (3 / 4, 4 / 3)


class FolderCrops(Dataset):
    """ImageFolder items for pre-training: one RandomResizedCrop per view, its box drawn on the full-resolution
    image by torchvision's RandomResizedCrop.get_params and resized bicubically in PIL (the reference's
    per-sample transform), so a crop can reach any border. Runs in the loader workers: the loader seeds torch's
    global RNG per (seed, epoch, index), so boxes do not depend on the worker count and resume exactly. The rest
    of each view's augmentation (flip, jitter, grayscale, blur, solarise) stays batched on the device.
    Items: (tuple of uint8 [3, size, size], one per CropSpec), label."""

    def __init__(self, path, crops):
        self.crops = tuple(crops)
        self.ds = tdata.image_folder(path, transform=None)
        self.targets = np.asarray(self.ds.targets)
        self.classes = self.ds.classes

    def __len__(self):
        return len(self.ds)

    def boxes(self, img) -> list[tuple[int, int, int, int]]:
        """(top, left, height, width) of each view, drawn from torch's global RNG as torchvision does."""
        from torchvision.transforms import RandomResizedCrop

        return [tuple(RandomResizedCrop.get_params(img, list(c.scale), list(c.ratio))) for c in self.crops]

    def __getitem__(self, i):
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        img, y = self.ds[i]
        img = img.convert("RGB")
        views = tuple(TF.pil_to_tensor(TF.resized_crop(img, *box, [c.size, c.size], InterpolationMode.BICUBIC))
                      for box, c in zip(self.boxes(img), self.crops))
        return views, int(y)


def balanced_subset(ds: tdata.ArrayImageDataset, per_class: int, seed: int) -> tdata.ArrayImageDataset:
    idx = tdata.few_shot_indices(ds.labels, per_class, seed)
    return tdata.ArrayImageDataset(ds.images[idx], ds.labels[idx], None, ds.classes)


def _cifar10_pack_subset(root, train: bool, per_class: int, seed: int):
    """Decode only a class-balanced subset of the tenfold CIFAR-10 JPEG pack (the full pack takes ~15 s of CPU);
    the same images as balanced_subset(cifar10(...)), or None when the pack is absent."""
    import io

    from PIL import Image

    pack = tdata.data_root(root) / "cifar10" / ("train.npz" if train else "test.npz")
    if not pack.is_file():
        return None
    z = dict(np.load(pack, allow_pickle=False))
    labels = z["labels"].astype(np.int64)
    idx = tdata.few_shot_indices(labels, per_class, seed)
    blob, off = z["jpeg"], z["offsets"]
    imgs = np.stack([np.asarray(Image.open(io.BytesIO(blob[off[i]:off[i + 1]].tobytes())).convert("RGB"))
                     for i in idx])
    classes = [str(c) for c in z.get("classes", tdata.CIFAR10_CLASSES)]
    return tdata.ArrayImageDataset(imgs, labels[idx], keep_uint8, classes)


def keep_uint8(x: torch.Tensor) -> torch.Tensor:
    """Item transform of the array data sets: the uint8 CHW image as is (4x fewer bytes to pin and copy than
    float; `to_unit` converts on the device)."""
    return x


def load_split(dcfg, train: bool, data_root=None, seed: int = 0, crops=None):
    """The train or test split named by the DataConfig (uint8 items; labels only used for evaluation).
    `crops` (CropSpecs, pre-training only): an image folder's training split yields those crops per item, taken
    from the full-resolution images in the loader (FolderCrops); array data sets ignore it (their images are
    small and equal-sized, so the crops stay batched on the device)."""
    name = dcfg.dataset
    if name == "shapes":
        n = dcfg.shapes_train if train else dcfg.shapes_test
        ds = tdata.synthetic_shapes(n, 32, 10, seed=1000 + seed if train else 2000 + seed)
    elif name == "cifar10":
        per_class = dcfg.train_per_class if train else dcfg.test_per_class
        if per_class:
            sub = _cifar10_pack_subset(data_root, train, per_class, dcfg.subset_seed)
            if sub is not None:
                return sub
        ds = tdata.cifar10(data_root, train=train)
    elif name == "cifar100":
        ds = tdata.cifar100(data_root, train=train)
    elif name == "stl10":
        ds = tdata.stl10(data_root, split="train" if train else "test")
    elif name == "imagefolder":
        if not dcfg.path:
            raise DataError("data.dataset=imagefolder needs data.path=DIR with DIR/train/<class>/* and "
                            "DIR/val/<class>/* (e.g. an ImageNet-1K copy)")
        from pathlib import Path

        if train and crops:
            return FolderCrops(Path(dcfg.path) / "train", crops)
        return FolderImages(Path(dcfg.path) / ("train" if train else "val"), dcfg.base_size)
    else:  # pragma: no cover - Literal type checked by the config
        raise DataError(f"unknown data set {name}")
    per_class = dcfg.train_per_class if train else dcfg.test_per_class
    if per_class:
        ds = balanced_subset(ds, per_class, dcfg.subset_seed)
    ds.transform = keep_uint8
    return ds


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Batch -> float [0, 1]. The data sets yield uint8: call this after the copy to the device
    (`to_unit(x.to(device, non_blocking=True))`), so the host copies and pins bytes, not floats."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()
