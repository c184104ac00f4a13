"""The zoo's tasks: image pools (synthetic factors, CIFAR-10, MNIST) and label functions over them.

A task = (pool kind, pool transform, label rule). Tasks on the same pool and transform share images,
so a source's features are extracted once per pool and reused for every target on it (spec 7.2/7.4).
"""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
from tenfold.data import data_root
from tenfold.errors import ConfigError, DataError

__all__ = ["TASKS", "Task", "Pool", "make_pool", "task_view", "synthetic_factors", "probe_images", "transform_pool"]

ANIMALS, VEHICLES = [2, 3, 4, 5, 6, 7], [0, 1, 8, 9]


@dataclasses.dataclass(frozen=True)
class Task:
    pool: str  # synth | cifar | mnist
    transform: str  # none | rot | grey
    rule: str  # how labels are made from the pool's factors
    num_classes: int
    about: str


TASKS: dict[str, Task] = {
    # spec 7.2: synthetic factors (shape, colour, texture, quadrant)
    "T1": Task("synth", "none", "shape", 4, "shape 4-way"),
    "T2": Task("synth", "none", "shape_colour", 12, "shape x colour 12-way"),
    "T3": Task("synth", "none", "colour", 3, "colour 3-way"),
    "T4": Task("synth", "none", "texture", 4, "background texture 4-way"),
    "T5": Task("synth", "none", "quadrant", 4, "position (quadrant) 4-way"),
    "T6": Task("synth", "none", "round", 2, "shape is round (disk vs other)"),
    "T7": Task("synth", "none", "texture_quadrant", 16, "texture x position 16-way"),
    "T8": Task("synth", "none", "random4", 4, "random labels (junk control)"),
    # spec 7.4: real data, 32x32 RGB
    "C1": Task("cifar", "none", "class", 10, "CIFAR-10 10-way"),
    "C2": Task("cifar", "none", "animals", 6, "CIFAR animals 6-way (classes 2-7)"),
    "C3": Task("cifar", "none", "vehicles", 4, "CIFAR vehicles 4-way (0,1,8,9)"),
    "C4": Task("cifar", "none", "animal_vs_vehicle", 2, "CIFAR animal vs vehicle"),
    "C5": Task("cifar", "rot", "rotation", 4, "CIFAR rotation 0/90/180/270"),
    "C6": Task("cifar", "grey", "grey", 2, "CIFAR grey vs colour"),
    "M1": Task("mnist", "none", "class", 10, "MNIST 10-way"),
    "M2": Task("mnist", "none", "parity", 2, "MNIST parity"),
    "R": Task("cifar", "none", "random10", 10, "CIFAR images, random labels (junk control)"),
}


@dataclasses.dataclass
class Pool:
    images: np.ndarray  # uint8 [N,H,W,3]
    factors: dict  # name -> int64 [N]


def _rng(*keys) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in keys])


def synthetic_factors(n: int, seed: int, size: int = 24, noise: float = 0.1) -> Pool:
    """Spec 7.2 images: shape {disk, square, triangle, cross} at a random quadrant and scale, shape colour
    {R,G,B}, background texture {flat, h-stripes, v-stripes, checker}, Gaussian noise sigma=0.1."""
    rng = _rng(seed, 7201)
    shape, colour = rng.integers(0, 4, n), rng.integers(0, 3, n)
    texture, quadrant = rng.integers(0, 4, n), rng.integers(0, 4, n)
    half = size / 2
    r = rng.uniform(0.22, 0.4, n) * half
    cx = (quadrant % 2) * half + half / 2 + rng.uniform(-0.15, 0.15, n) * half
    cy = (quadrant // 2) * half + half / 2 + rng.uniform(-0.15, 0.15, n) * half
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy = (xx[None] - cx[:, None, None]) / r[:, None, None], (yy[None] - cy[:, None, None]) / r[:, None, None]
    s = shape[:, None, None]
    mask = (((s == 0) & (dx ** 2 + dy ** 2 <= 1)) | ((s == 1) & (np.abs(dx) <= 0.8) & (np.abs(dy) <= 0.8))
            | ((s == 2) & (dy <= 0.8) & (dy >= -0.9 + 1.7 * np.abs(dx)))
            | ((s == 3) & (((np.abs(dx) <= 0.3) & (np.abs(dy) <= 1)) | ((np.abs(dy) <= 0.3) & (np.abs(dx) <= 1)))))
    stripes = {0: np.zeros_like(xx), 1: (yy // 2) % 2, 2: (xx // 2) % 2, 3: ((xx // 3) + (yy // 3)) % 2}
    bg = 0.3 + 0.25 * np.stack([stripes[int(t)] for t in range(4)])[texture]  # grey background texture
    img = np.repeat(bg[..., None], 3, axis=-1)
    fg = np.zeros((n, 3))
    fg[np.arange(n), colour] = 0.95
    fg[fg == 0] = 0.1
    img = np.where(mask[..., None], fg[:, None, None, :], img) + rng.normal(0, noise, img.shape)
    images = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    return Pool(images, {"shape": shape, "colour": colour, "texture": texture, "quadrant": quadrant,
                         "index": np.arange(n) + seed * 1_000_003})


def _decode_subset(pack: Path, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode only the JPEGs we need (the spine decodes and caches all 60,000, ~15 s of CPU)."""
    from PIL import Image

    z = dict(np.load(pack, allow_pickle=False))
    blob, off = z["jpeg"], z["offsets"]
    out = np.empty((len(idx), 32, 32, 3), dtype=np.uint8)
    for k, i in enumerate(idx):
        out[k] = np.asarray(Image.open(io.BytesIO(blob[off[i]:off[i + 1]].tobytes())).convert("RGB"))
    return out, z["labels"][idx].astype(np.int64)


def _real(kind: str, train: bool, idx: np.ndarray, root) -> tuple[np.ndarray, np.ndarray]:
    base = data_root(root) / ("cifar10" if kind == "cifar" else "mnist")
    pack = base / ("train.npz" if train else "test.npz")
    if kind == "cifar" and pack.is_file():
        return _decode_subset(pack, idx)
    if kind == "mnist" and pack.is_file():
        z = dict(np.load(pack, allow_pickle=False))
        return _mnist_rgb(z["images"][idx]), z["labels"][idx].astype(np.int64)
    from tenfold.data import cifar10, mnist  # torchvision layouts; raises DataError naming where to get it

    ds = (cifar10 if kind == "cifar" else mnist)(root, train=train)
    imgs = ds.images[idx]
    return (imgs if kind == "cifar" else _mnist_rgb(imgs[..., 0])), ds.labels[idx]


def _mnist_rgb(images: np.ndarray) -> np.ndarray:
    """28x28 grey -> 32x32 RGB (bilinear resize, replicated channels)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(images).float()[:, None]
    t = F.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False).round().clamp(0, 255)
    return t.to(torch.uint8).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).contiguous().numpy()


def split_size(kind: str, train: bool, root=None) -> int:
    """Images in a real split: the pack's own count (a GPU pack may hold a training subset), else the full set's."""
    pack = data_root(root) / ("cifar10" if kind == "cifar" else "mnist") / ("train.npz" if train else "test.npz")
    if pack.is_file():
        with np.load(pack, allow_pickle=False) as z:
            return len(z["labels"])
    return (50_000 if kind == "cifar" else 60_000) if train else 10_000


# disjoint index ranges of each real split: zoo training, transfer-probe training, transfer test, DEPARA probes
_SPLITS = {"train": (True, 0), "transfer": (True, 1), "test": (False, 0), "probe": (False, 1)}


def make_pool(kind: str, split: str, n: int, seed: int = 0, root=None, size: int = 24) -> Pool:
    if split not in _SPLITS:
        raise ConfigError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    if kind == "synth":
        return synthetic_factors(n, seed * 10 + list(_SPLITS).index(split), size)
    if kind not in ("cifar", "mnist"):
        raise ConfigError(f"unknown pool {kind!r}: synth, cifar or mnist")
    train, part = _SPLITS[split]
    total = split_size(kind, train, root)
    perm = _rng(seed, 7402, int(train), kind == "cifar").permutation(total)
    half = total // 2
    chosen = perm[:half] if part == 0 else perm[half:]
    if n > len(chosen):
        raise DataError(f"{kind} {split}: {n} images requested, only {len(chosen)} available")
    idx = np.sort(chosen[:n])
    images, labels = _real(kind, train, idx, root)
    return Pool(images, {"class": labels, "index": idx + (0 if train else 100_000)})


def transform_pool(pool: Pool, transform: str, seed: int) -> Pool:
    if transform == "none":
        return pool
    rng = _rng(seed, 7403, len(pool.images), transform == "rot")
    if transform == "rot":
        k = rng.integers(0, 4, len(pool.images))
        imgs = np.stack([np.rot90(im, int(r)) for im, r in zip(pool.images, k)])
        return Pool(np.ascontiguousarray(imgs), dict(pool.factors, rotation=k))
    g = rng.integers(0, 2, len(pool.images))
    grey = pool.images.mean(-1, keepdims=True).round().astype(np.uint8).repeat(3, -1)
    return Pool(np.where(g[:, None, None, None] == 1, grey, pool.images), dict(pool.factors, grey=g))


def task_view(name: str, pool: Pool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, labels, rows) of task `name` on `pool` (rows index the untransformed pool)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    t = TASKS[name]
    p = transform_pool(pool, t.transform, seed)
    f, n = p.factors, len(p.images)
    rows = np.arange(n)
    rule = t.rule
    if rule in ("class", "shape", "colour", "texture", "quadrant", "rotation", "grey"):
        y = f[rule]
    elif rule == "shape_colour":
        y = f["shape"] * 3 + f["colour"]
    elif rule == "round":
        y = (f["shape"] == 0).astype(np.int64)
    elif rule == "texture_quadrant":
        y = f["texture"] * 4 + f["quadrant"]
    elif rule.startswith("random"):
        k = int(rule[len("random"):])
        y = np.array([_rng(seed, 7404, int(i)).integers(0, k) for i in f["index"]], dtype=np.int64)
    elif rule == "animals":
        rows = np.flatnonzero(np.isin(f["class"], ANIMALS))
        y = f["class"] - 2
    elif rule == "vehicles":
        rows = np.flatnonzero(np.isin(f["class"], VEHICLES))
        y = np.searchsorted(VEHICLES, f["class"])
    elif rule == "animal_vs_vehicle":
        y = np.isin(f["class"], VEHICLES).astype(np.int64)
    elif rule == "parity":
        y = f["class"] % 2
    else:
        raise ConfigError(f"task {name}: unknown rule {rule}")
    return p.images[rows], np.asarray(y, dtype=np.int64)[rows], rows


def probe_images(kind: str, n: int, seed: int = 0, root=None, size: int = 24) -> np.ndarray:
    """The shared, ordered DEPARA probe set (unlabelled): node i is the same image in every graph."""
    return make_pool(kind, "probe", n, seed, root, size).images
