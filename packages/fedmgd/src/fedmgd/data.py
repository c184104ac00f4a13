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

__all__ = ["FederatedData", "load_arrays", "load_sources", "preprocess", "batch_to_float", "build_federated_data",
           "build_pool", "build_pool_lazy", "Pool", "RowSource", "ArraySource", "NpzSource", "JpegPackSource"]


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


# ---- image rows read on demand --------------------------------------------------------------------------
# A client (a torchrun rank, a Flower SuperNode) partitions on the labels only, which are cheap, and then reads
# just the image rows it holds: the pool's images are never decoded or copied as a whole.

class RowSource:
    """Labels in memory; image rows (uint8 H,W[,C]) read on demand. `rows_read` counts the rows materialised."""

    labels: np.ndarray
    row_shape: tuple

    def __init__(self):
        self.rows_read = 0

    def __len__(self) -> int:
        return len(self.labels)

    def _read_sorted(self, rows: np.ndarray) -> np.ndarray:  # rows: sorted, unique
        raise NotImplementedError

    def take(self, rows) -> np.ndarray:
        """The image rows `rows` (any order, repeats allowed) as one uint8 array; only these rows are read."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) == 0:
            return np.zeros((0, *self.row_shape), dtype=np.uint8)
        uniq, inv = np.unique(rows, return_inverse=True)
        if uniq[0] < 0 or uniq[-1] >= len(self):
            raise DataError(f"image row {int(uniq[-1] if uniq[-1] >= len(self) else uniq[0])} out of range "
                            f"0..{len(self) - 1}")
        out = self._read_sorted(uniq)
        self.rows_read += len(uniq)
        return out if len(uniq) == len(rows) and np.array_equal(uniq, rows) else out[inv]


class ArraySource(RowSource):
    """Rows of an array already in memory (generated toys, the user's IDX / .mat downloads)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        super().__init__()
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.row_shape = tuple(images.shape[1:])

    def _read_sorted(self, rows):
        return np.ascontiguousarray(self.images[rows]).astype(np.uint8, copy=False)


def _npy_member(zf, name: str):
    """(open member stream positioned at the data, shape, dtype) of `name`.npy inside an .npz."""
    f = zf.open(name + ".npy")
    version = np.lib.format.read_magic(f)
    shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                             else np.lib.format.read_array_header_2_0(f))
    if fortran or dtype.hasobject:
        raise DataError(f"{zf.filename}: {name} must be a C-ordered plain array")
    return f, shape, dtype


def _read_npz_rows(path: Path, name: str, rows: np.ndarray, chunk_bytes: int = 1 << 20) -> np.ndarray:
    """Rows `rows` (sorted, unique) of array `name` in an .npz (stored or deflated), reading forward through
    the member and keeping only those rows: memory is the rows plus one chunk, never the whole array."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        f, shape, dtype = _npy_member(zf, name)
        with f:
            row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
            out = np.empty((len(rows), *shape[1:]), dtype=dtype)
            per = max(1, chunk_bytes // max(row_bytes, 1))
            pos, j = 0, 0  # rows consumed from the stream / rows of `rows` filled
            while j < len(rows):
                start = int(rows[j])
                if start > pos:  # skip to the next wanted row, chunk by chunk (no allocation of the gap)
                    gap = (start - pos) * row_bytes
                    while gap > 0:
                        n = len(f.read(min(gap, chunk_bytes)))
                        if n == 0:
                            raise DataError(f"{path}: {name} is truncated")
                        gap -= n
                    pos = start
                n = min(per, int(shape[0]) - pos)
                buf = np.frombuffer(f.read(n * row_bytes), dtype=dtype)
                if len(buf) * dtype.itemsize != n * row_bytes:
                    raise DataError(f"{path}: {name} is truncated")
                buf = buf.reshape(n, *shape[1:])
                end = np.searchsorted(rows, pos + n, side="left")
                out[j:end] = buf[rows[j:end] - pos]
                j, pos = int(end), pos + n
            return out


class NpzSource(RowSource):
    """Images of an .npz (`images` uint8 N,H,W[,C]), read by row; labels read whole (they are small)."""

    def __init__(self, path: Path, images: str = "images", labels: str = "labels"):
        import zipfile

        super().__init__()
        self.path, self.key = Path(path), images
        with zipfile.ZipFile(self.path) as zf:
            names = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
            if images not in names or labels not in names:
                raise DataError(f"{path}: expected arrays '{images}' and '{labels}'")
            f, shape, dtype = _npy_member(zf, images)
            f.close()
        self.row_shape = tuple(shape[1:])
        self.n, self.dtype = int(shape[0]), dtype
        with np.load(self.path, allow_pickle=False) as z:
            self.labels = z[labels].astype(np.int64)
        if len(self.labels) != self.n:
            raise DataError(f"{path}: {self.n} images but {len(self.labels)} labels")

    def _read_sorted(self, rows):
        return _read_npz_rows(self.path, self.key, rows).astype(np.uint8, copy=False)


class JpegPackSource(RowSource):
    """tenfold's CIFAR-10 pack (concatenated JPEG bytes + offsets): only the selected images are decoded
    (with the same PIL decode as tenfold.data's full decode, so the pixels are the same)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        with np.load(self.path, allow_pickle=False) as z:
            self.labels = z["labels"].astype(np.int64)
            self.offsets = z["offsets"].astype(np.int64)
        self.row_shape = None

    def _read_sorted(self, rows):
        import io
        import zipfile

        from PIL import Image

        with zipfile.ZipFile(self.path) as zf:
            f, _, _ = _npy_member(zf, "jpeg")
            with f:
                out, pos = None, 0
                for j, r in enumerate(rows):
                    a, b = int(self.offsets[r]), int(self.offsets[r + 1])
                    while pos < a:  # forward only, bounded memory
                        pos += len(f.read(min(a - pos, 1 << 20)))
                    img = np.asarray(Image.open(io.BytesIO(f.read(b - a))).convert("RGB"))
                    pos = b
                    if out is None:
                        out = np.empty((len(rows), *img.shape), dtype=np.uint8)
                    out[j] = img
        self.row_shape = tuple(out.shape[1:])
        return out

    def take(self, rows):
        if self.row_shape is None and len(np.asarray(rows).reshape(-1)) == 0:
            self.row_shape = tuple(self._read_sorted(np.zeros(1, np.int64)).shape[1:])
        return super().take(rows)


def load_sources(dcfg, root: str | os.PathLike | None, seed: int = 42):
    """(train source, test source, num_classes): labels in memory, image rows read on demand where the data's
    format allows it (tenfold's MNIST / CIFAR-10 packs, dataset=npz); otherwise the arrays are loaded."""
    name = dcfg.dataset
    if name == "npz":
        if not dcfg.path or not Path(dcfg.path).is_file():
            raise DataError(f"data.path must point to an .npz with images/labels (got {dcfg.path!r})")
        tr = NpzSource(Path(dcfg.path))
        if len(tr) == 0:
            raise DataError(f"{dcfg.path} holds no images: this client has no data")
        import zipfile

        with zipfile.ZipFile(dcfg.path) as zf:
            has_test = {"test_images.npy", "test_labels.npy"} <= set(zf.namelist())
        te = (NpzSource(Path(dcfg.path), "test_images", "test_labels") if has_test
              else ArraySource(np.zeros((0, *tr.row_shape), np.uint8), np.zeros(0, np.int64)))
        nc = dcfg.num_classes or int(max(tr.labels.max(), te.labels.max() if len(te.labels) else 0)) + 1
        return tr, te, nc
    if name in ("mnist", "cifar10"):
        pack = tdata.data_root(root) / name
        if (pack / "train.npz").is_file() and (pack / "test.npz").is_file():
            cls = NpzSource if name == "mnist" else JpegPackSource
            return cls(pack / "train.npz"), cls(pack / "test.npz"), 10
    trx, tr_y, tex, te_y, nc = load_arrays(dcfg, root, seed)
    return ArraySource(trx, tr_y), ArraySource(tex, te_y), nc


def load_arrays(dcfg, root: str | os.PathLike | None, seed: int = 42):
    """(train_x uint8 NHWC, train_y, test_x, test_y, num_classes) for the configured data set (whole arrays)."""
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
    rows_loaded: int = 0  # image rows read from the data files to build this (its clients' rows + global test)

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


@dataclass
class Pool:
    """The pool and the global test set as row indices into lazily read sources: `labels` are in memory, images
    are read only for the rows asked for (`take`, `test_images`)."""
    train: RowSource
    test: RowSource
    rows: np.ndarray  # pool row i -> source row: < len(train) in train, else test row (rows[i] - len(train))
    test_rows: np.ndarray  # global test rows of the test source
    labels: np.ndarray
    test_labels: np.ndarray
    num_classes: int

    def take(self, pool_idx) -> np.ndarray:
        """Images of pool rows `pool_idx` (uint8 N,H,W[,C]), reading only those rows."""
        r = self.rows[np.asarray(pool_idx, dtype=np.int64)]
        n_tr = len(self.train)
        in_tr = r < n_tr
        a = self.train.take(r[in_tr])
        if in_tr.all():
            return a
        b = self.test.take(r[~in_tr] - n_tr)
        out = np.empty((len(r), *(a.shape[1:] if len(a) else b.shape[1:])), dtype=np.uint8)
        out[in_tr], out[~in_tr] = a, b
        return out

    def test_images(self) -> np.ndarray:
        return self.test.take(self.test_rows)

    @property
    def rows_read(self) -> int:
        """Image rows materialised so far (both sources): the hook the one-client-reads-its-rows test uses."""
        return self.train.rows_read + (self.test.rows_read if self.test is not self.train else 0)


def build_pool_lazy(cfg, root=None) -> Pool:
    """Global test = first ceil(test_frac) of the shuffled test split; pool = train (+ the rest). Only labels
    are read here."""
    dcfg = cfg.data
    tr, te, nc = load_sources(dcfg, root if root is not None else cfg.data_root, cfg.partition.seed)
    tr_y, te_y = tr.labels, te.labels
    rng = np.random.default_rng(cfg.partition.seed)
    perm = rng.permutation(len(te_y))
    n_test = dcfg.test_size if dcfg.test_size > 0 else math.ceil(dcfg.test_frac * len(te_y))
    if n_test > len(te_y):
        raise DataError(f"data.test_size {n_test} > {len(te_y)} test images available")
    t_idx, rest = perm[:n_test], perm[n_test:]
    rows, py = np.arange(len(tr_y), dtype=np.int64), tr_y
    if dcfg.rest_of_test_in_pool and len(rest):
        rows = np.concatenate([rows, len(tr_y) + rest.astype(np.int64)])
        py = np.concatenate([tr_y, te_y[rest]])
    if dcfg.pool_size > 0:
        if dcfg.pool_size > len(py):
            raise DataError(f"data.pool_size {dcfg.pool_size} > {len(py)} pool images available")
        sel = np.sort(rng.permutation(len(py))[: dcfg.pool_size])
        rows, py = rows[sel], py[sel]
    return Pool(tr, te, rows, t_idx.astype(np.int64), py, te_y[t_idx], nc)


def build_pool(cfg, root=None):
    """(pool images, pool labels, global test images, test labels, num_classes) as whole arrays (analysis, tests;
    training reads only the rows it needs through `build_pool_lazy`)."""
    pool = build_pool_lazy(cfg, root)
    return pool.take(np.arange(len(pool.labels))), pool.labels, pool.test_images(), pool.test_labels, pool.num_classes


def build_federated_data(cfg, device: torch.device | str = "cpu", root=None,
                         clients: list[int] | None = None, global_test: bool = True) -> FederatedData:
    """Partition the pool on its labels and read, as uint8, the images of `clients` only (default: all, the
    simulation): under torchrun each rank passes the clients it hosts, a Flower client its own partition, so no
    process reads (or decodes) the others' images. `global_test=False` skips the global test set (a Flower
    client: the server evaluates)."""
    pool = build_pool_lazy(cfg, root)
    py = pool.labels
    parts = make_partition(py, cfg.partition)
    hosted = set(range(len(parts)) if clients is None else clients)
    for k in hosted:
        if not 0 <= k < len(parts):
            raise DataError(f"client {k} does not exist: the partition has clients 0..{len(parts) - 1}")
    y_all = torch.from_numpy(py.astype(np.int64))
    cx, cy, lx, ly = [], [], [], []
    for k, p in enumerate(parts):
        tr, te = local_split(p, cfg.partition.train_frac, cfg.partition.seed, k)
        if len(tr) == 0:
            raise DataError(f"client {k} has no training samples; lower partition.min_size or use fewer clients")
        cy.append(y_all[torch.from_numpy(tr)].to(device))
        ly.append(y_all[torch.from_numpy(te)].to(device))
        # only this client's rows are read from the sources (and copied), never the pool, never as float
        cx.append(to_uint8_nchw(pool.take(tr)).to(device) if k in hosted else None)
        lx.append(to_uint8_nchw(pool.take(te)).to(device) if k in hosted else None)
    if global_test:
        tx, ty = pool.test_images(), pool.test_labels
    else:
        tx, ty = np.zeros((0, 1, 1), np.uint8), pool.test_labels[:0]
    shape = next((x.shape for x in cx if x is not None), None)
    channels = int(shape[1]) if shape is not None else (1 if tx.ndim == 3 else int(tx.shape[-1]))
    if shape is None and not len(tx):  # nothing read at all: ask the source for the row shape
        rs = pool.train.row_shape or pool.train.take(np.zeros(1, np.int64)).shape[1:]
        channels = 1 if len(rs) == 2 else int(rs[-1])
    fed = FederatedData(cx, cy, lx, ly, to_uint8_nchw(tx).to(device), torch.from_numpy(ty.astype(np.int64)).to(device),
                        pool.num_classes, channels, parts, py, cfg.data.img_size, cfg.data.resize)
    fed.rows_loaded = pool.rows_read
    return fed
