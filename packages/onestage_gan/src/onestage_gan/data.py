"""Training data for the GAN: real image sets in [−1, 1] at the model's size, or the 2-D ring of Gaussians."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tenfold import data as tfdata
from torch.utils.data import Dataset
from torchvision.transforms import v2

__all__ = ["ring_of_gaussians", "RingData", "gan_images", "to_unit", "ring_quality"]


def ring_of_gaussians(n: int, modes: int = 8, radius: float = 2.0, sigma: float = 0.02, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, modes, (n,), generator=g)
    ang = 2 * math.pi * k.float() / modes
    centres = torch.stack([radius * ang.cos(), radius * ang.sin()], 1)
    return centres + sigma * torch.randn(n, 2, generator=g), k


def ring_centres(modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    ang = 2 * math.pi * torch.arange(modes).float() / modes
    return torch.stack([radius * ang.cos(), radius * ang.sin()], 1)


def ring_quality(samples: torch.Tensor, modes: int = 8, radius: float = 2.0, tol: float = 0.18) -> dict:
    """Fraction of samples within `tol` of a mode centre, and modes holding ≥ 20 % of their fair share."""
    d = torch.cdist(samples.float(), ring_centres(modes, radius))
    near, which = d.min(1)
    hq = near < tol
    counts = torch.bincount(which[hq], minlength=modes).float()
    return {"high_quality": hq.float().mean().item(),
            "modes": int((counts >= 0.2 * len(samples) / modes).sum())}


class RingData(Dataset):
    def __init__(self, n: int = 100_000, seed: int = 0):
        self.x, self.k = ring_of_gaussians(n, seed=seed)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.k[i])


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[−1, 1] → [0, 1]."""
    return (x + 1) / 2


def _to_gan_range(size: int, channels: int):
    ops = [v2.ToDtype(torch.float32, scale=True)]
    ops.append(v2.Resize(size, antialias=True))
    ops.append(v2.CenterCrop(size))
    if channels == 1:
        ops.append(v2.Grayscale(1))
    ops.append(v2.Normalize([0.5] * channels, [0.5] * channels))
    return v2.Compose(ops)


# Pre-transform an in-memory set only when the float copy stays small (MNIST 32 px: 245 MB; CIFAR-10 64 px would
# be 2.5 GB, so it keeps the per-sample path).
PRETRANSFORM_MAX_BYTES = 1 << 30


class PretransformedImages(Dataset):
    """An in-memory image set with its deterministic transform applied once, in batches.

    The GAN transform (to float, resize, centre-crop, normalise) has no randomness, so doing it per sample every
    epoch only costs time: a quarter of a 32-px MNIST DCGAN step on one CPU thread went into it. The batched
    transform gives bit-identical tensors (tested), so runs and their numbers do not change."""

    def __init__(self, ds: tfdata.ArrayImageDataset, chunk: int = 2048):
        self.labels = ds.labels
        self.targets, self.classes = ds.targets, ds.classes
        parts = []
        for a in range(0, len(ds), chunk):
            raw = torch.from_numpy(ds.images[a:a + chunk]).permute(0, 3, 1, 2)
            parts.append(ds.transform(raw))
        self.x = torch.cat(parts)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.labels[i])


def _pretransformed(ds, size: int, channels: int):
    if len(ds) * channels * size * size * 4 > PRETRANSFORM_MAX_BYTES:
        return ds
    return PretransformedImages(ds)


def gan_images(name: str, size: int, root=None, train: bool = True, path: str | None = None,
               num_samples: int = 5000, seed: int = 0):
    """(data set of (image in [−1, 1], label), channels). name: mnist | cifar10 | folder | shapes."""
    if name == "mnist":
        return _pretransformed(tfdata.mnist(root, train=train, transform=_to_gan_range(size, 1)), size, 1), 1
    if name == "cifar10":
        return _pretransformed(tfdata.cifar10(root, train=train, transform=_to_gan_range(size, 3)), size, 3), 3
    if name == "shapes":
        return tfdata.synthetic_shapes(num_samples, size, 10, seed=seed if train else seed + 1,
                                       transform=_to_gan_range(size, 3)), 3
    if name == "folder":
        if not path:
            from tenfold.errors import ConfigError

            raise ConfigError("data.name=folder needs data.path=<ImageFolder root> (CelebA, LSUN, FFHQ)")
        tf = v2.Compose([v2.PILToTensor(), _to_gan_range(size, 3)])
        return tfdata.image_folder(path, transform=tf), 3
    raise ValueError(f"unknown data set '{name}'")


def real_batch(ds, n: int, seed: int = 0) -> torch.Tensor:
    """n images of `ds` as one tensor (for the quality proxy)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[:n].tolist()
    return torch.stack([ds[i][0] for i in idx])


def pad_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) if x.shape[-1] != size else x
