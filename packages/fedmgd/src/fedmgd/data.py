"""Pool / global test set / client data (§3): uint8 until the batch, then float in [-1, 1]."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tenfold import data as tdata
from tenfold.errors import DataError

from .partition import local_split, make_partition

__all__ = ["FederatedData", "load_arrays", "preprocess", "batch_to_float", "build_federated_data"]


def blobs(n: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Offline toy set for the demo: class c is a bright blob near the c-th of 10 fixed positions, with
    random jitter, radius, brightness and background noise (grayscale uint8 N x size x size)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    grid = np.array([(0.25 + 0.5 * (c % 2), 0.12 + 0.19 * (c // 2)) for c in range(10)]) * size
    cx = grid[y, 0] + rng.normal(0, 0.6, n)
    cy = grid[y, 1] + rng.normal(0, 0.6, n)
    r = rng.uniform(1.2, 2.2, n)
    yy, xx = np.mgrid[0:size, 0:size]
    d2 = (xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2
    img = rng.uniform(0.6, 1.0, n)[:, None, None] * np.exp(-d2 / (2 * r[:, None, None] ** 2))
    img = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1)
    return (img * 255).astype(np.uint8), y.astype(np.int64)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST family, optionally .gz) as a numpy array."""
    import gzip

    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(root: Path, names: list[str]) -> Path | None:
    for n in names:
        for cand in (root / n, root / (n + ".gz")):
            if cand.is_file():
                return cand
    return None


def _idx_pair(root: Path, folder: str, prefix: str, train: bool, what: str):
    split = "train" if train else ("test" if folder == "EMNIST" else "t10k")
    base = [root / folder / "raw", root / folder.lower(), root]
    img = lab = None
    for b in base:
        img = _find(b, [f"{prefix}{split}-images-idx3-ubyte"])
        lab = _find(b, [f"{prefix}{split}-labels-idx1-ubyte"])
        if img and lab:
            break
    if not (img and lab):
        raise DataError(f"{what} not found under {root}: expected {folder}/raw/{prefix}{split}-images-idx3-ubyte[.gz] "
                        f"and -labels-idx1-ubyte[.gz]; download it with torchvision.datasets.{folder}(root, "
                        f"download=True) or pass --data-root")
    return read_idx(img), read_idx(lab).astype(np.int64)


def _svhn(root: Path, split: str):
    from scipy.io import loadmat

    f = _find(root / "svhn", [f"{split}_32x32.mat"]) or _find(root, [f"{split}_32x32.mat"])
    if f is None or f.suffix == ".gz":
        raise DataError(f"SVHN {split} not found under {root}: expected svhn/{split}_32x32.mat (download it with "
                        f"torchvision.datasets.SVHN(root, split='{split}', download=True)) or pass --data-root")
    m = loadmat(str(f))
    y = m["y"].reshape(-1).astype(np.int64)
    return np.ascontiguousarray(m["X"].transpose(3, 0, 1, 2)), np.where(y == 10, 0, y)  # digit 0 is stored as 10


def _user_arrays(name: str, root: Path, train: bool, extra: bool = False):
    """EMNIST-letters / Fashion-MNIST / SVHN from the user's download (torchvision file layouts)."""
    if name == "emnist":
        x, y = _idx_pair(root, "EMNIST", "emnist-letters-", train, "EMNIST-letters")
        return np.ascontiguousarray(x.transpose(0, 2, 1)), y - 1  # stored transposed; letters 1..26 -> 0..25
    if name == "fmnist":
        return _idx_pair(root, "FashionMNIST", "", train, "Fashion-MNIST")
    return _svhn(root, "extra" if extra else ("train" if train else "test"))


def load_arrays(dcfg, root: str | os.PathLike | None, seed: int = 42):
    """(train_x uint8 NHWC, train_y, test_x, test_y, num_classes) for the configured data set."""
    name = dcfg.dataset
    if name == "blobs":
        trx, tr_y = blobs(dcfg.synthetic_n, dcfg.img_size, seed)
        tex, te_y = blobs(max(dcfg.synthetic_n // 5, 10), dcfg.img_size, seed + 1)
        return trx, tr_y, tex, te_y, 10
    if name == "synthetic":
        n = dcfg.synthetic_n
        tr = tdata.synthetic_shapes(n, image_size=max(dcfg.img_size, 16), num_classes=10, seed=seed, channels=1)
        te = tdata.synthetic_shapes(max(n // 5, 10), image_size=max(dcfg.img_size, 16), num_classes=10,
                                    seed=seed + 1, channels=1)
        return tr.images, tr.labels, te.images, te.labels, 10
    if name == "npz":
        if not dcfg.path or not Path(dcfg.path).is_file():
            raise DataError(f"data.path must point to an .npz with images/labels (got {dcfg.path!r})")
        z = dict(np.load(dcfg.path))
        if "images" not in z or "labels" not in z:
            raise DataError(f"{dcfg.path}: expected arrays 'images' and 'labels' (optional test_images/test_labels)")
        tx, ty = z.get("test_images", z["images"][:0]), z.get("test_labels", z["labels"][:0])
        nc = dcfg.num_classes or int(max(z["labels"].max(), ty.max() if len(ty) else 0)) + 1
        return z["images"].astype(np.uint8), z["labels"].astype(np.int64), tx.astype(np.uint8), ty.astype(np.int64), nc
    if name in ("mnist", "cifar10"):
        fn = tdata.mnist if name == "mnist" else tdata.cifar10
        tr, te = fn(root, train=True), fn(root, train=False)
        return tr.images, tr.labels, te.images, te.labels, 10
    r = tdata.data_root(root)
    trx, tr_y = _user_arrays(name, r, train=True)
    if name == "emnist" and dcfg.emnist_legacy_split:
        tex, te_y = trx, tr_y  # reference bug: "test" is the train split again (§3 step 5)
    else:
        tex, te_y = _user_arrays(name, r, train=False)
    if name == "svhn" and dcfg.svhn_extra:
        ex, ey = _user_arrays(name, r, train=True, extra=True)
        trx, tr_y = np.concatenate([trx, ex]), np.concatenate([tr_y, ey])
    return trx, tr_y, tex, te_y, 26 if name == "emnist" else 10


def _resize_norm(x: torch.Tensor, img_size: int, mode: str) -> torch.Tensor:
    """float N,C,H,W in [0, 1] -> N,C,img,img in [-1, 1] (in place where possible)."""
    if x.shape[-1] != img_size or x.shape[-2] != img_size:
        kw = {} if mode == "nearest" else {"align_corners": False}
        x = F.interpolate(x, size=(img_size, img_size), mode=mode, **kw).clamp_(0, 1)
    return x.sub_(0.5).div_(0.5)


def preprocess(images: np.ndarray, img_size: int, mode: str = "bicubic", chunk: int = 4096) -> torch.Tensor:
    """uint8 N,H,W[,C] -> float N,C,img,img in [-1, 1]: resize, then (x - 0.5) / 0.5 (no augmentation)."""
    if images.ndim == 3:
        images = images[..., None]
    out = [_resize_norm(torch.from_numpy(images[i:i + chunk]).permute(0, 3, 1, 2).float().div_(255), img_size, mode)
           for i in range(0, len(images), chunk)]
    if not out:
        return torch.zeros(0, images.shape[-1], img_size, img_size)
    return torch.cat(out)


def to_uint8_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 N,H,W[,C] (numpy) -> contiguous uint8 N,C,H,W tensor at the native resolution."""
    if images.ndim == 3:
        images = images[..., None]
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def batch_to_float(x: torch.Tensor, img_size: int, mode: str = "bicubic") -> torch.Tensor:
    """A uint8 N,C,H,W batch (on any device) -> float in [-1, 1] at img_size; per-sample identical to
    `preprocess` (resizing is per image), so converting per batch changes no number."""
    if x.dtype != torch.uint8:
        return x
    return _resize_norm(x.float().div_(255), img_size, mode)


@dataclass
class FederatedData:
    """Images stay uint8 at their native resolution (4x smaller than float, and the float copy of the pool
    is never made) and are converted per batch, on the device that holds them. `client_u8[k]` is None for
    clients hosted by another rank: a rank holds only its own clients' images (labels of all clients are
    kept: they are small and the partition needs them)."""
    client_u8: list[torch.Tensor | None]  # local train images per client, uint8 N,C,H,W
    client_y: list[torch.Tensor]
    local_test_u8: list[torch.Tensor | None]
    local_test_y: list[torch.Tensor]
    test_u8: torch.Tensor  # global test set
    test_y: torch.Tensor
    num_classes: int
    channels: int
    parts: list[np.ndarray]  # pool indices per client (before the local split)
    pool_labels: np.ndarray
    img_size: int = 32
    resize: str = "bicubic"

    @property
    def sizes(self) -> list[int]:
        return [len(y) for y in self.client_y]

    @property
    def hosted(self) -> list[int]:
        return [k for k, x in enumerate(self.client_u8) if x is not None]

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        return batch_to_float(x, self.img_size, self.resize)

    def batch(self, k: int, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Client k's rows as (float images in [-1, 1], labels): uint8 -> float only for the batch."""
        x = self.client_u8[k]
        if x is None:
            raise DataError(f"client {k} is not hosted by this process")
        return self.to_float(x[rows]), self.client_y[k][rows]

    # whole sets as float, for analysis code and tests (allocates; training never calls these)
    @property
    def client_x(self) -> list[torch.Tensor | None]:
        return [None if x is None else self.to_float(x) for x in self.client_u8]

    @property
    def local_test_x(self) -> list[torch.Tensor | None]:
        return [None if x is None else self.to_float(x) for x in self.local_test_u8]

    @property
    def test_x(self) -> torch.Tensor:
        return self.to_float(self.test_u8)

    def class_counts(self, k: int) -> torch.Tensor:
        return torch.bincount(self.client_y[k].cpu(), minlength=self.num_classes)


def build_pool(cfg, root=None):
    """Global test = first ceil(test_frac) of the shuffled test split; pool = train (+ the rest)."""
    dcfg = cfg.data
    trx, tr_y, tex, te_y, nc = load_arrays(dcfg, root if root is not None else cfg.data_root, cfg.partition.seed)
    rng = np.random.default_rng(cfg.partition.seed)
    perm = rng.permutation(len(te_y))
    n_test = dcfg.test_size if dcfg.test_size > 0 else math.ceil(dcfg.test_frac * len(te_y))
    if n_test > len(te_y):
        raise DataError(f"data.test_size {n_test} > {len(te_y)} test images available")
    t_idx, rest = perm[:n_test], perm[n_test:]
    px, py = trx, tr_y
    if dcfg.rest_of_test_in_pool and len(rest):
        px, py = np.concatenate([trx, tex[rest]]), np.concatenate([tr_y, te_y[rest]])
    if dcfg.pool_size > 0:
        if dcfg.pool_size > len(py):
            raise DataError(f"data.pool_size {dcfg.pool_size} > {len(py)} pool images available")
        sel = np.sort(rng.permutation(len(py))[: dcfg.pool_size])
        px, py = px[sel], py[sel]
    return px, py, tex[t_idx], te_y[t_idx], nc


def build_federated_data(cfg, device: torch.device | str = "cpu", root=None,
                         clients: list[int] | None = None) -> FederatedData:
    """Partition the pool and keep, as uint8, the images of `clients` only (default: all, the simulation);
    under torchrun each rank passes the clients it hosts, so no rank holds the others' images."""
    px, py, tx, ty, nc = build_pool(cfg, root)
    parts = make_partition(py, cfg.partition)
    hosted = set(range(len(parts)) if clients is None else clients)
    y_all = torch.from_numpy(py.astype(np.int64))
    cx, cy, lx, ly = [], [], [], []
    for k, p in enumerate(parts):
        tr, te = local_split(p, cfg.partition.train_frac, cfg.partition.seed, k)
        if len(tr) == 0:
            raise DataError(f"client {k} has no training samples; lower partition.min_size or use fewer clients")
        cy.append(y_all[torch.from_numpy(tr)].to(device))
        ly.append(y_all[torch.from_numpy(te)].to(device))
        # index the uint8 numpy pool first: only this client's rows are copied, never a float pool
        cx.append(to_uint8_nchw(px[tr]).to(device) if k in hosted else None)
        lx.append(to_uint8_nchw(px[te]).to(device) if k in hosted else None)
    channels = 1 if px.ndim == 3 else int(px.shape[-1])
    return FederatedData(cx, cy, lx, ly, to_uint8_nchw(tx).to(device), torch.from_numpy(ty.astype(np.int64)).to(device),
                         nc, channels, parts, py, cfg.data.img_size, cfg.data.resize)
