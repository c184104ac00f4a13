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
