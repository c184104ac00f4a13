import io

import numpy as np
import pytest
import torch
from tenfold import data
from tenfold.errors import DataError


def _write_jpeg_pack(path, n=6, size=8):
    from PIL import Image

    ramp = np.linspace(0, 1, size)[None, :, None, None] * np.linspace(0, 1, size)[None, None, :, None]
    colours = np.random.default_rng(0).uniform(40, 215, (n, 1, 1, 3))
    imgs = (colours + 40 * ramp).astype(np.uint8)  # smooth images survive JPEG almost unchanged
    blobs, offsets = [], [0]
    for im in imgs:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=95)
        blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
        offsets.append(offsets[-1] + len(blobs[-1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, jpeg=np.concatenate(blobs), offsets=np.array(offsets, dtype=np.int64),
             labels=np.arange(n) % 3, classes=np.array(data.CIFAR10_CLASSES))
    return imgs


def test_jpeg_pack_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TENFOLD_CACHE", str(tmp_path / "cache"))
    imgs = _write_jpeg_pack(tmp_path / "root" / "cifar10" / "test.npz")
    ds = data.cifar10(tmp_path / "root", train=False)
    assert len(ds) == 6 and ds.images.shape == (6, 8, 8, 3) and ds.classes[0] == "airplane"
    assert np.abs(ds.images.astype(int) - imgs.astype(int)).mean() < 4  # JPEG is lossy, but close
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
    again = data.cifar10(tmp_path / "root", train=False)  # served from the cache
    assert np.array_equal(again.images, ds.images)
    x, y = ds[1]
    assert x.dtype == torch.float32 and x.shape == (3, 8, 8) and y == 1


def test_mnist_npz(tmp_path):
    (tmp_path / "mnist").mkdir()
    np.savez(tmp_path / "mnist" / "train.npz", images=np.zeros((4, 28, 28), np.uint8), labels=np.arange(4),
             classes=np.array([str(i) for i in range(10)]))
    ds = data.mnist(tmp_path, train=True)
    assert ds[0][0].shape == (1, 28, 28) and ds.labels.tolist() == [0, 1, 2, 3]


def test_missing_data_message(tmp_path, monkeypatch):
    monkeypatch.delenv("TENFOLD_DATA", raising=False)
    with pytest.raises(DataError, match="CIFAR-10 not found under .*cifar10/train.npz.*toronto"):
        data.cifar10(tmp_path)
    with pytest.raises(DataError, match="MNIST not found"):
        data.mnist(tmp_path, train=False)
    with pytest.raises(DataError, match="CIFAR-100 not found"):
        data.cifar100(tmp_path)
    with pytest.raises(DataError, match="image folder"):
        data.image_folder(tmp_path / "imagenet")


def test_root_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("TENFOLD_DATA", str(tmp_path / "env"))
    assert data.data_root() == tmp_path / "env"
    assert data.data_root(str(tmp_path / "cli")) == tmp_path / "cli"
    monkeypatch.delenv("TENFOLD_DATA")
    assert data.data_root().name == "data"


def test_synthetic_deterministic_and_learnable():
    a = data.synthetic_shapes(200, image_size=16, num_classes=5, seed=3)
    b = data.synthetic_shapes(200, image_size=16, num_classes=5, seed=3)
    c = data.synthetic_shapes(200, image_size=16, num_classes=5, seed=4)
    assert np.array_equal(a.images, b.images) and not np.array_equal(a.images, c.images)
    assert np.bincount(a.labels).tolist() == [40] * 5
    g = data.synthetic_shapes(10, image_size=12, channels=1)
    assert g.images.shape == (10, 12, 12, 1)
    # the class is in the shape, not in mean colour: colour statistics alone are near chance
    means = a.images.reshape(200, -1, 3).mean(1)
    per_class = np.stack([means[a.labels == k].mean(0) for k in range(5)])
    assert per_class.std(0).max() < 12


def test_class_subset_and_few_shot():
    ds = data.synthetic_shapes(100, image_size=8, num_classes=10, seed=0)
    sub = data.class_subset(ds, [2, 7])
    assert set(sub.labels.tolist()) == {0, 1} and len(sub) == 20 and sub.classes == ["triangle", "vbar"]
    idx = data.few_shot_indices(ds.labels, 3, seed=1)
    assert np.bincount(ds.labels[idx]).tolist() == [3] * 10
    assert np.array_equal(idx, data.few_shot_indices(ds.labels, 3, seed=1))
    with pytest.raises(ValueError, match="fewer than"):
        data.few_shot_indices(ds.labels, 11, seed=0)


def test_normalize_batch_matches_the_per_image_transform():
    x = torch.rand(3, 3, 4, 4, dtype=torch.float64)
    got = data.transforms.normalize_batch(x)
    want = torch.stack([data.transforms.normalize()(img) for img in x])
    assert got.dtype == torch.float64 and torch.allclose(got, want)
    assert torch.allclose(data.transforms.normalize_batch(torch.full((1, 1, 2, 2), 0.5), (0.25,), (0.5,)),
                          torch.full((1, 1, 2, 2), 0.5))
