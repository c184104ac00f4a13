"""Data for OOD distillation: every set becomes uint8 NCHW tensors kept in memory (on the device when it
fits), read in seeded, resumable *batches* with batched augmentation. The student step draws 2B images five
times per outer iteration; per-sample Python transforms would starve a GPU.

Two OOD streams as in the code (spec §2.4, where the code's comments are swapped):
  * D-real stream: no augmentation, **in-domain** normalisation (drives the outer loop; x');
  * KD stream: random crop (pad 4) + flip, **OOD** normalisation (x''), or in-domain with
    `data.kd_ood_normalization=in_domain`.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tenfold.data import cifar10 as tf_cifar10
from tenfold.data import cifar100 as tf_cifar100
from tenfold.data import data_root, few_shot_indices, synthetic_shapes
from tenfold.data import mnist as tf_mnist
from tenfold.data import stl10 as tf_stl10
from tenfold.data.loader import ResumableSampler, _mix
from tenfold.data.root import cache_dir
from tenfold.errors import ConfigError, DataError

from .nets import NORMALIZE_DICT, Normalizer

__all__ = ["ImageSet", "load_split", "normalizer_for", "crop_flip", "patch_shuffle", "BatchStream", "DATA_SEED",
           "KNOWN"]

DATA_SEED = 0  # pools and evaluation subsets are fixed whatever the run seed, so arms compare on equal data
KNOWN = ("cifar10", "cifar100", "mnist", "svhn", "stl10", "shapes", "imagenet32", "places365_32", "folder:<dir>")


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 [N,C,H,W]
    labels: torch.Tensor  # int64 [N] (ignored for OOD sets)
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> ImageSet:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ImageSet(self.images[idx], self.labels[idx], self.name)

    def float01(self, idx=None) -> torch.Tensor:
        x = self.images if idx is None else self.images[idx]
        return x.float().div_(255)


def normalizer_for(name: str, channels: int = 3) -> Normalizer:
    """Statistics by name; for grey (1-channel) runs the channel average of the named statistics."""
    key = name.split(":")[0]
    if key not in NORMALIZE_DICT:
        raise ConfigError(f"no normalisation statistics named '{name}'; known: {', '.join(NORMALIZE_DICT)}")
    mean, std = NORMALIZE_DICT[key]
    if channels == 1:
        mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
    return Normalizer(mean, std)


def _resize(images: np.ndarray, size: int, channels: int) -> torch.Tensor:
    """uint8 NHWC (or NHW) -> uint8 NCHW at size x size with `channels` channels."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x[..., None]
    x = x.permute(0, 3, 1, 2)
    if x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        x = (x.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    if x.shape[-1] != size or x.shape[-2] != size:
        out = []
        for i in range(0, len(x), 4096):
            out.append(F.interpolate(x[i:i + 4096].float(), size=(size, size), mode="bilinear", antialias=True,
                                     align_corners=False).round().clamp(0, 255).to(torch.uint8))
        x = torch.cat(out) if out else x
    return x.contiguous()


def _decode_cifar10_subset(root: Path, train: bool, pick) -> tuple[np.ndarray, np.ndarray] | None:
    """Decode only the picked JPEGs of the tenfold pack (a few hundred ms instead of a 12 s full decode)."""
    pack = root / "cifar10" / f"{'train' if train else 'test'}.npz"
    if not pack.is_file():
        return None
    z = np.load(pack, allow_pickle=False)
    labels = z["labels"].astype(np.int64)
    idx = pick(labels)
    if len(idx) > 8000:  # most of the split: the spine's cached full decode is cheaper
        return None
    from PIL import Image

    blob, offsets = z["jpeg"], z["offsets"]
    imgs = np.stack([np.asarray(Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
                     for i in idx]) if len(idx) else np.zeros((0, 32, 32, 3), np.uint8)
    return imgs, labels[idx]


def _folder_arrays(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """ImageFolder tree -> uint8 arrays at size x size, cached as .npy (decoding ImageNet-32 once is slow)."""
    if not path.is_dir():
        raise DataError(f"image folder {path} not found; expected {path}/<class_name>/<image files> "
                        f"(ImageNet-32/Places365-32: download the downsampled versions and unpack them there)")
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_mtime}|{size}".encode()).hexdigest()[:16]
    cimg, clab = cache_dir() / f"mosaickd_folder_{key}.npy", cache_dir() / f"mosaickd_folder_{key}_labels.npy"
    if cimg.is_file() and clab.is_file():
        return np.load(cimg), np.load(clab)
    from PIL import Image

    classes = sorted(d.name for d in path.iterdir() if d.is_dir())
    files = [(f, c) for c, name in enumerate(classes) for f in sorted((path / name).iterdir()) if f.is_file()]
    if not files:
        raise DataError(f"image folder {path} holds no images under {path}/<class_name>/")
    imgs = np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR)) for f, _ in files])
    labels = np.array([c for _, c in files], dtype=np.int64)
    for p, a in ((cimg, imgs), (clab, labels)):
        tmp = p.with_name(p.name + f".{os.getpid()}.tmp.npy")
        np.save(tmp, a)
        os.replace(tmp, p)
    return imgs, labels


def _raw(name: str, train: bool, root: Path, img_size: int, synthetic_n: int, pick):
    """(uint8 NHWC/NHW images, labels) of one named split, with `pick(labels)` applied where it saves work."""
    if name == "cifar10":
        sub = _decode_cifar10_subset(root, train, pick)
        if sub is not None:
            return sub
        ds = tf_cifar10(root, train=train)
    elif name == "cifar100":
        ds = tf_cifar100(root, train=train)
    elif name == "mnist":
        ds = tf_mnist(root, train=train)
    elif name == "stl10":
        ds = tf_stl10(root, split="train" if train else "test")
    elif name == "shapes":
        n = synthetic_n if train else max(synthetic_n // 4, 10)
        ds = synthetic_shapes(n, image_size=img_size, num_classes=10, seed=1 if train else 2)
    elif name == "svhn":
        base = root / "svhn"
        split = "train" if train else "test"
        if not (base / f"{split}_32x32.mat").is_file():
            raise DataError(f"SVHN not found: expected {base}/{split}_32x32.mat (from "
                            f"http://ufldl.stanford.edu/housenumbers/, or torchvision.datasets.SVHN(download=True))")
        from torchvision.datasets import SVHN

        tv = SVHN(str(base), split=split)
        images, labels = tv.data.transpose(0, 2, 3, 1), np.asarray(tv.labels, dtype=np.int64)
        idx = pick(labels)
        return images[idx], labels[idx]
    elif name in ("imagenet32", "places365_32") or name.startswith("folder:"):
        sub = {"imagenet32": "ImageNet_32x32", "places365_32": "Places365_32x32"}
        path = Path(name[7:]) if name.startswith("folder:") else root / sub[name] / ("train" if train else "val")
        images, labels = _folder_arrays(path.expanduser(), img_size)
        idx = pick(labels)
        return images[idx], labels[idx]
    else:
        raise ConfigError(f"unknown data set '{name}'; known: {', '.join(KNOWN)}")
    idx = pick(ds.labels)
    return ds.images[idx], ds.labels[idx]


def load_split(name: str, train: bool, *, root: str | None = None, img_size: int = 32, channels: int = 3,
               classes: list[int] | None = None, remap: bool = False, per_class: int = 0, cap: int = 0,
               synthetic_n: int = 4000) -> ImageSet:
    """One split of a named data set as an ImageSet: optional class subset (remapped to 0.. if `remap`),
    then a fixed-seed pool of `per_class` images per class or of `cap` images."""
    root_p = data_root(root)
    classes = list(classes or [])

    def pick(labels: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(np.isin(labels, classes)) if classes else np.arange(len(labels))
        if per_class > 0:
            try:
                idx = idx[few_shot_indices(labels[idx], per_class, DATA_SEED)]
            except ValueError as e:
                raise ConfigError(f"{name}: {e}") from None
        elif 0 < cap < len(idx):
            idx = np.sort(np.random.default_rng(DATA_SEED).choice(idx, cap, replace=False))
        return idx

    images, labels = _raw(name, train, root_p, img_size, synthetic_n, pick)
    if len(labels) == 0:
        raise DataError(f"{name}: no images left after selecting classes {classes}")
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if classes and remap:
        lut = torch.full((max(int(labels.max()), max(classes)) + 1,), -1, dtype=torch.long)
        lut[torch.tensor(classes)] = torch.arange(len(classes))
        labels = lut[labels]
    return ImageSet(_resize(np.asarray(images), img_size, channels), labels, name)


def patch_shuffle(images: torch.Tensor, k: int, seed: int = DATA_SEED) -> torch.Tensor:
    """Cut every image into k x k patches and permute them (one fixed-seed permutation per image): global shape
    destroyed, local patterns kept -- an OOD set made of exactly what MosaicKD claims to exploit."""
    n, c, h, w = images.shape
    if h % k or w % k:
        raise ConfigError(f"patch size {k} must divide the image size {h}x{w}")
    gh, gw = h // k, w // k
    p = images.reshape(n, c, gh, k, gw, k).permute(0, 2, 4, 1, 3, 5).reshape(n, gh * gw, c, k, k)
    g = torch.Generator().manual_seed(seed)
    perm = torch.stack([torch.randperm(gh * gw, generator=g) for _ in range(n)])
    p = p[torch.arange(n)[:, None], perm]
    return p.reshape(n, gh, gw, c, k, k).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w).contiguous()


def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Batched RandomCrop(size, padding=pad, zero fill) + RandomHorizontalFlip on float [B,C,H,W] in [0,1]."""
    b, _, h, w = x.shape
    dev = x.device
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(dev)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(dev)
    flip = (torch.rand(b, generator=gen) < 0.5).to(dev)
    xp = F.pad(x, (pad, pad, pad, pad))
    cols = torch.arange(w, device=dev)
    cols = torch.where(flip[:, None], w - 1 - cols[None], cols[None]) + ox[:, None]
    rows = torch.arange(h, device=dev)[None] + oy[:, None]
    bi = torch.arange(b, device=dev)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # [B,H,W,C]
    return out.permute(0, 3, 1, 2).contiguous()


class BatchStream:
    """Seeded, resumable batches of an ImageSet: order = f(seed, epoch) (the spine's ResumableSampler),
    augmentation = f(seed, epoch, batch); `position` (epoch, batch) is all the state a checkpoint needs.

    Yields (normalised images [B,C,H,W] on `device`, dataset indices [B])."""

    def __init__(self, data: ImageSet, batch_size: int, *, seed: int, normalizer: Normalizer, augment: bool,
                 device: torch.device, drop_last: bool = False, shuffle: bool = True):
        if len(data) < batch_size and drop_last:
            raise DataError(f"{data.name}: {len(data)} images, fewer than one batch of {batch_size}")
        self.data, self.batch_size, self.seed, self.augment = data, batch_size, seed, augment
        self.drop_last, self.shuffle, self.device = drop_last, shuffle, device
        self.images = data.images.to(device)
        self.norm = normalizer.to(device)
        self.epoch, self.batch = 0, 0
        self._order_cache: tuple[int, torch.Tensor] | None = None

    def batches_per_epoch(self) -> int:
        n, b = len(self.data), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _order(self, epoch: int) -> torch.Tensor:
        if self._order_cache is not None and self._order_cache[0] == epoch:
            return self._order_cache[1]
        s = ResumableSampler(len(self.data), self.batch_size, seed=self.seed, epoch=epoch, shuffle=self.shuffle,
                             drop_last=self.drop_last, rank=0, world=1, with_seeds=False)
        order = torch.tensor(s.indices(), dtype=torch.long)
        self._order_cache = (epoch, order)
        return order

    def make(self, idx: torch.Tensor, epoch: int, batch: int) -> torch.Tensor:
        x = self.images[idx.to(self.device)].float().div_(255)
        if self.augment:
            gen = torch.Generator().manual_seed(_mix(self.seed, epoch, batch, 13))
            x = crop_flip(x, gen)
        return self.norm(x)

    def epoch_batches(self, epoch: int, start: int = 0):
        """Batches of one epoch from `start` (for tenfold.loop.Trainer's `batches`)."""
        order = self._order(epoch)
        for b in range(start, self.batches_per_epoch()):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield self.make(idx, epoch, b), idx

    def next(self):
        """Infinite iteration (the code's DataIter), advancing `position`."""
        if self.batch >= self.batches_per_epoch():
            self.epoch, self.batch = self.epoch + 1, 0
        order = self._order(self.epoch)
        idx = order[self.batch * self.batch_size:(self.batch + 1) * self.batch_size]
        out = self.make(idx, self.epoch, self.batch), idx
        self.batch += 1
        return out

    @property
    def position(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_position(self, pos: dict) -> None:
        self.epoch, self.batch = int(pos["epoch"]), int(pos["batch"])
