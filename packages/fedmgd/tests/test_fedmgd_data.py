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
