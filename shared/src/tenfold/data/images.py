"""CIFAR-10, MNIST (tenfold packs or torchvision layouts), CIFAR-100, STL-10 and ImageFolder."""
from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import DataError
from .arrays import ArrayImageDataset
from .root import cache_dir, data_root

__all__ = ["cifar10", "mnist", "cifar100", "stl10", "image_folder", "CIFAR10_CLASSES"]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _split(train: bool) -> str:
    return "train" if train else "test"


def _decode_jpeg_pack(pack: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode once, then reuse a .npy cache keyed by the pack's path, size and mtime."""
    st = pack.stat()
    key = hashlib.sha1(f"{pack.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:16]
    cdir = cache_dir()
    stem = f"{pack.parent.name}_{pack.stem}_{key}"
    img_cache, lab_cache = cdir / f"{stem}.npy", cdir / f"{stem}_labels.npy"
    z = dict(np.load(pack, allow_pickle=False))
    classes = [str(c) for c in z.get("classes", CIFAR10_CLASSES)]
    if img_cache.is_file() and lab_cache.is_file():
        try:
            return np.load(img_cache), np.load(lab_cache), classes
        except (OSError, ValueError):
            pass  # a broken cache is rebuilt below
    from PIL import Image

    blob, offsets = z["jpeg"], z["offsets"]
    n = len(offsets) - 1
    first = np.asarray(Image.open(io.BytesIO(blob[offsets[0]:offsets[1]].tobytes())).convert("RGB"))
    images = np.empty((n, *first.shape), dtype=np.uint8)
    for i in range(n):
        images[i] = np.asarray(Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
    labels = z["labels"].astype(np.int64)
    for path, arr in ((img_cache, images), (lab_cache, labels)):
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npy")
        np.save(tmp, arr)
        os.replace(tmp, path)
    return images, labels, classes


def _missing(name: str, root: Path, layouts: str, url: str) -> DataError:
    return DataError(f"{name} not found under {root}. Expected {layouts}. Get it from {url} (or pass "
                     f"download=True / --data-root DIR, or set TENFOLD_DATA)")


def cifar10(root: str | os.PathLike | None = None, train: bool = True, transform: Callable | None = None,
            download: bool = False) -> ArrayImageDataset:
    """CIFAR-10 from `<root>/cifar10/{train,test}.npz` (tenfold JPEG pack) or torchvision's
    `<root>/cifar-10-batches-py` (also accepted inside `<root>/cifar10/`)."""
    root = data_root(root)
    pack = root / "cifar10" / f"{_split(train)}.npz"
    if pack.is_file():
        images, labels, classes = _decode_jpeg_pack(pack)
        return ArrayImageDataset(images, labels, transform, classes)
    for base in (root, root / "cifar10"):
        if (base / "cifar-10-batches-py").is_dir() or download:
            from torchvision.datasets import CIFAR10

            tv = CIFAR10(str(base), train=train, download=download)
            return ArrayImageDataset(np.asarray(tv.data), np.asarray(tv.targets), transform, tv.classes)
    raise _missing("CIFAR-10", root, "cifar10/train.npz + test.npz or cifar-10-batches-py/",
                   "https://www.cs.toronto.edu/~kriz/cifar.html")


def mnist(root: str | os.PathLike | None = None, train: bool = True, transform: Callable | None = None,
          download: bool = False) -> ArrayImageDataset:
    """MNIST from `<root>/mnist/{train,test}.npz` (`images` uint8 N×28×28) or torchvision's `<root>/MNIST/raw`."""
    root = data_root(root)
    pack = root / "mnist" / f"{_split(train)}.npz"
    if pack.is_file():
        z = dict(np.load(pack, allow_pickle=False))
        classes = [str(c) for c in z.get("classes", [str(i) for i in range(10)])]
        return ArrayImageDataset(z["images"].astype(np.uint8), z["labels"].astype(np.int64), transform, classes)
    for base in (root, root / "mnist"):
        if (base / "MNIST" / "raw").is_dir() or download:
            from torchvision.datasets import MNIST

            tv = MNIST(str(base), train=train, download=download)
            return ArrayImageDataset(tv.data.numpy(), tv.targets.numpy(), transform, [str(i) for i in range(10)])
    raise _missing("MNIST", root, "mnist/train.npz + test.npz or MNIST/raw/", "http://yann.lecun.com/exdb/mnist/")


def cifar100(root: str | os.PathLike | None = None, train: bool = True, transform: Callable | None = None,
             download: bool = False) -> ArrayImageDataset:
    root = data_root(root)
    for base in (root, root / "cifar100"):
        if (base / "cifar-100-python").is_dir() or download:
            from torchvision.datasets import CIFAR100

            tv = CIFAR100(str(base), train=train, download=download)
            return ArrayImageDataset(np.asarray(tv.data), np.asarray(tv.targets), transform, tv.classes)
    raise _missing("CIFAR-100", root, "cifar-100-python/", "https://www.cs.toronto.edu/~kriz/cifar.html")


def stl10(root: str | os.PathLike | None = None, split: str = "train", transform: Callable | None = None,
          download: bool = False) -> ArrayImageDataset:
    """STL-10 (96 px); split in train | test | unlabeled | train+unlabeled (unlabeled have label -1)."""
    root = data_root(root)
    for base in (root, root / "stl10"):
        if (base / "stl10_binary").is_dir() or download:
            from torchvision.datasets import STL10

            tv = STL10(str(base), split=split, download=download)
            return ArrayImageDataset(np.ascontiguousarray(tv.data.transpose(0, 2, 3, 1)), np.asarray(tv.labels),
                                     transform, tv.classes)
    raise _missing("STL-10", root, "stl10_binary/", "https://cs.stanford.edu/~acoates/stl10/")


def image_folder(path: str | os.PathLike, transform: Callable | None = None):
    """ImageNet-style `path/<class>/<image>` through torchvision (items are PIL images for `transform`)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"image folder {path} not found; expected {path}/<class_name>/<image files>")
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(path), transform=transform)
    except (FileNotFoundError, RuntimeError) as e:
        raise DataError(f"image folder {path}: {str(e).splitlines()[0]}") from None
