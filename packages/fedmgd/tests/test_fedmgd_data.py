"""Loaders for the sets not shipped here (EMNIST-letters, Fashion-MNIST, SVHN), on tiny generated files in the
torchvision layouts, plus the pool / global-test construction and preprocessing."""
import gzip

import numpy as np
import pytest
import torch
from fedmgd.config import FedMGDConfig
from fedmgd.data import build_pool, load_arrays, preprocess
from tenfold.config import load
from tenfold.errors import DataError


def _idx(path, arr, gz=False):
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = head + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    (gzip.open if gz else open)(str(path) + (".gz" if gz else ""), "wb").write(data)


def _cfg(*o):
    return load(FedMGDConfig, None, list(o))


def test_emnist_letters_labels_shift_and_transpose(tmp_path):
    raw = tmp_path / "EMNIST" / "raw"
    x = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 251
    _idx(raw / "emnist-letters-train-images-idx3-ubyte", x, gz=True)
    _idx(raw / "emnist-letters-train-labels-idx1-ubyte", np.array([1, 26]), gz=True)
    _idx(raw / "emnist-letters-test-images-idx3-ubyte", x)
    _idx(raw / "emnist-letters-test-labels-idx1-ubyte", np.array([3, 4]))
    trx, tr_y, tex, te_y, nc = load_arrays(_cfg("data.dataset=emnist").data, tmp_path)
    assert nc == 26 and tr_y.tolist() == [0, 25] and te_y.tolist() == [2, 3]
    assert np.array_equal(trx[0], x[0].T)
    # the reference's leaking split is only behind the switch
    _, _, tex2, te_y2, _ = load_arrays(_cfg("data.dataset=emnist", "data.emnist_legacy_split=true").data, tmp_path)
    assert te_y2.tolist() == [0, 25]


def test_fashion_mnist_and_missing_message(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    _idx(raw / "train-images-idx3-ubyte", np.zeros((3, 28, 28)))
    _idx(raw / "train-labels-idx1-ubyte", np.array([0, 9, 5]))
    with pytest.raises(DataError, match="t10k-images"):
        load_arrays(_cfg("data.dataset=fmnist").data, tmp_path)
    _idx(raw / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28)))
    _idx(raw / "t10k-labels-idx1-ubyte", np.array([1, 2]))
    trx, tr_y, *_ = load_arrays(_cfg("data.dataset=fmnist").data, tmp_path)
    assert trx.shape == (3, 28, 28) and tr_y.tolist() == [0, 9, 5]


def test_svhn_mat_files_with_extra(tmp_path):
    from scipy.io import savemat

    (tmp_path / "svhn").mkdir()
    for split, n in (("train", 3), ("test", 2), ("extra", 4)):
        savemat(tmp_path / "svhn" / f"{split}_32x32.mat",
                {"X": np.zeros((32, 32, 3, n), np.uint8), "y": np.full((n, 1), 10)})
    trx, tr_y, tex, te_y, nc = load_arrays(_cfg("data.dataset=svhn").data, tmp_path)
    assert trx.shape == (7, 32, 32, 3) and set(tr_y.tolist()) == {0} and len(te_y) == 2


def test_pool_and_global_test_split(tmp_path):
    cfg = _cfg("data.dataset=blobs", "data.synthetic_n=500", "data.img_size=16", "partition.seed=3")
    px, py, tx, ty, nc = build_pool(cfg)
    assert len(ty) == 10 and len(py) == 500 + 90  # ceil(10%) of the 100 test images; the other 90 join the pool


def test_preprocess_range_and_size():
    x = preprocess(np.array([[[0, 255], [255, 0]]], np.uint8), 4, "bilinear")
    assert x.shape == (1, 1, 4, 4) and float(x.min()) >= -1 and float(x.max()) <= 1
    assert torch.allclose(preprocess(np.full((1, 2, 2), 255, np.uint8), 2), torch.ones(1, 1, 2, 2))


def _npz(tmp_path, n=120, size=28, channels=3):
    rng = np.random.default_rng(0)
    shape = (n, size, size, channels) if channels > 1 else (n, size, size)
    np.savez(tmp_path / "d.npz", images=rng.integers(0, 256, shape, dtype=np.uint8), labels=np.arange(n) % 10,
             test_images=rng.integers(0, 256, (20,) + shape[1:], dtype=np.uint8), test_labels=np.arange(20) % 10)
    return _cfg("data.dataset=npz", f"data.path={tmp_path / 'd.npz'}", "data.img_size=16", "partition.num_clients=3",
                "partition.min_size=5", "partition.alpha=1.0")


def test_pool_stays_uint8_until_the_batch(tmp_path, monkeypatch):
    import fedmgd.data as D

    cfg = _npz(tmp_path)
    px, *_ = build_pool(cfg)
    parts_ref = D.make_partition(build_pool(cfg)[1], cfg.partition)

    def no_float_pool(*a, **k):
        raise AssertionError("the pool was converted to float")
    monkeypatch.setattr(D, "preprocess", no_float_pool)
    fed = D.build_federated_data(cfg)
    assert all(x.dtype == torch.uint8 and x.shape[1:] == (3, 28, 28) for x in fed.client_u8 + fed.local_test_u8)
    assert fed.test_u8.dtype == torch.uint8
    monkeypatch.undo()
    # a batch converted alone equals the same images converted with the whole pool (resize is per image)
    tr, _ = D.local_split(parts_ref[1], cfg.partition.train_frac, cfg.partition.seed, 1)
    rows = torch.tensor([3, 0, 5])
    x, y = fed.batch(1, rows)
    assert x.dtype == torch.float32 and x.shape == (3, 3, 16, 16)
    assert torch.equal(x, preprocess(px, 16)[torch.from_numpy(tr)][rows])


def test_rank_holds_only_its_clients_images(tmp_path):
    from fedmgd.data import build_federated_data

    cfg = _npz(tmp_path)
    full = build_federated_data(cfg)
    mine = build_federated_data(cfg, clients=[1])
    assert mine.hosted == [1] and mine.client_u8[0] is None and mine.local_test_u8[2] is None
    assert torch.equal(mine.client_u8[1], full.client_u8[1]) and mine.sizes == full.sizes
    with pytest.raises(DataError, match="not hosted"):
        mine.batch(0, torch.tensor([0]))


def _mnist_pack(tmp_path, n=20000, n_test=2000, compressed=True):
    """A pool in tenfold's MNIST pack layout (<root>/mnist/{train,test}.npz), compressed like the real one."""
    rng = np.random.default_rng(1)
    d = tmp_path / "mnist"
    d.mkdir()
    save = np.savez_compressed if compressed else np.savez
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    save(d / "train.npz", images=x, labels=np.arange(n) % 10)
    save(d / "test.npz", images=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), labels=np.arange(n_test) % 10)
    return x


@pytest.mark.parametrize("compressed", [True, False])
def test_one_client_reads_only_its_rows(tmp_path, compressed):
    """Issue #18: a rank / a Flower client partitions on the labels and then reads only its own image rows: the
    pool's images are never loaded whole (peak memory well under the pool) and the rows read are exactly its
    rows (the `rows_loaded` hook counts the rows materialised). On the earlier code, which read and decoded the
    whole pool before cutting out its clients, the peak was >= 2x the pool (load + copy) and there was no hook."""
    import tracemalloc

    from fedmgd.data import build_federated_data
    from fedmgd.partition import local_split, make_partition

    x = _mnist_pack(tmp_path, compressed=compressed)
    cfg = _cfg("data.dataset=mnist", f"data_root={tmp_path}", "data.img_size=16", "partition.num_clients=10",
               "partition.kind=iid", "data.test_size=100")
    full = build_federated_data(cfg, global_test=False)
    tracemalloc.start()
    try:
        mine = build_federated_data(cfg, clients=[3], global_test=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # its rows (about 1/10 of the pool), their reordering copy and one 1 MiB read chunk; the whole pool is never held
    assert peak < 0.5 * x.nbytes, f"peak {peak / 2**20:.1f} MiB for a {x.nbytes / 2**20:.1f} MiB pool"
    n3 = len(mine.client_y[3]) + len(mine.local_test_y[3])
    assert mine.rows_loaded == n3 < 0.15 * len(mine.pool_labels)
    assert mine.hosted == [3] and torch.equal(mine.client_u8[3], full.client_u8[3])
    assert torch.equal(mine.local_test_u8[3], full.local_test_u8[3]) and mine.test_u8.shape[0] == 0
    # the rows are the partition's rows of the pool, in the local split's order (the pool = train + the rest)
    parts = make_partition(mine.pool_labels, cfg.partition)
    tr, _ = local_split(parts[3], cfg.partition.train_frac, cfg.partition.seed, 3)
    small = tr[tr < len(x)]
    pos = np.flatnonzero(tr < len(x))
    assert torch.equal(mine.client_u8[3][torch.from_numpy(pos), 0], torch.from_numpy(x[small]))
    # with the global test set: exactly its rows more
    both = build_federated_data(cfg, clients=[3])
    assert both.rows_loaded == n3 + 100 and both.test_u8.shape == (100, 1, 28, 28)


def test_client_out_of_range_is_one_clear_error(tmp_path):
    from fedmgd.data import build_federated_data

    cfg = _npz(tmp_path)
    with pytest.raises(DataError, match="client 7 does not exist"):
        build_federated_data(cfg, clients=[7])


def test_lazy_pool_equals_whole_arrays(tmp_path):
    """The lazily read pool (npz sources) gives the same images as loading the arrays whole."""
    import fedmgd.data as D

    cfg = _npz(tmp_path)
    px, py, tx, ty, nc = build_pool(cfg)
    trx, tr_y, tex, te_y, _ = load_arrays(cfg.data, None)
    pool = D.build_pool_lazy(cfg)
    assert np.array_equal(py, pool.labels) and np.array_equal(tx, tex[pool.test_rows])
    ref = np.concatenate([trx, tex[np.setdiff1d(np.arange(len(te_y)), pool.test_rows, assume_unique=False)]])
    assert px.shape == ref.shape
    rows = np.array([5, 0, 5, len(tr_y) + 3, 2])
    assert np.array_equal(pool.take(rows), np.concatenate([trx, tex])[pool.rows[rows]])
