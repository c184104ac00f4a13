"""The pre-transformed image sets give exactly the tensors of the per-sample transform (so no run changes)."""
import numpy as np
import pytest
import torch
from onestage_gan import data as gdata
from tenfold.data import ArrayImageDataset


def _array_set(n, h, c, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, h, h, c), dtype=np.uint8), rng.integers(0, 10, n)


@pytest.mark.parametrize("h,c,size", [(28, 1, 32), (32, 3, 32), (32, 3, 64), (28, 1, 28)])
def test_pretransformed_equals_per_sample(h, c, size):
    x, y = _array_set(300, h, c)
    ds = ArrayImageDataset(x, y, transform=gdata._to_gan_range(size, c))
    pre = gdata.PretransformedImages(ds, chunk=128)  # chunks that do not divide the set
    assert len(pre) == len(ds)
    for i in (0, 127, 128, 299):
        a, la = ds[i]
        b, lb = pre[i]
        assert la == lb and a.dtype == b.dtype and torch.equal(a, b)


def test_large_sets_keep_the_per_sample_path(monkeypatch):
    x, y = _array_set(10, 28, 1)
    ds = ArrayImageDataset(x, y, transform=gdata._to_gan_range(32, 1))
    monkeypatch.setattr(gdata, "PRETRANSFORM_MAX_BYTES", 10 * 32 * 32 * 4 - 1)
    assert gdata._pretransformed(ds, 32, 1) is ds
    monkeypatch.setattr(gdata, "PRETRANSFORM_MAX_BYTES", 10 * 32 * 32 * 4)
    assert isinstance(gdata._pretransformed(ds, 32, 1), gdata.PretransformedImages)
