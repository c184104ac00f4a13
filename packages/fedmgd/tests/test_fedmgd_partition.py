import math

import numpy as np
import pytest
from fedmgd.partition import classes_partition, dirichlet_partition, iid_partition, label_histogram, local_split
from tenfold.errors import DataError

LABELS = np.repeat(np.arange(10), 1000)


def test_deterministic_disjoint_complete():
    a = dirichlet_partition(LABELS, 5, 0.1, seed=3)
    b = dirichlet_partition(LABELS, 5, 0.1, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    allidx = np.concatenate(a)
    assert len(allidx) == len(LABELS) and len(np.unique(allidx)) == len(LABELS)


def test_min_size_and_cap():
    parts = dirichlet_partition(LABELS, 10, 0.05, seed=1, min_size=100)
    assert min(len(p) for p in parts) >= 100
    # cap = |pool| / K: a client that reached it gets nothing from later classes, so nobody exceeds
    # the cap by more than one class's worth
    assert max(len(p) for p in parts) <= len(LABELS) / 10 + 1000


def test_sampling_ratio_subsamples_per_class():
    parts = dirichlet_partition(LABELS, 5, 1.0, seed=0, sampling_ratio=0.1, min_size=1)
    hist = label_histogram(LABELS, parts, 10)
    assert hist.sum() == 10 * 100  # int(min(cap=200, 0.1 * 1000)) per class


def test_large_alpha_near_uniform():
    tvs = []
    for s in range(3):
        hist = label_histogram(LABELS, dirichlet_partition(LABELS, 5, 1e3, seed=s), 10)
        p = hist / hist.sum(1, keepdims=True)
        tvs.append(0.5 * np.abs(p - 0.1).sum(1).max())
    assert max(tvs) < 0.05


def test_small_alpha_extreme_skew():
    for s in range(5):
        hist = label_histogram(LABELS, dirichlet_partition(LABELS, 5, 0.01, seed=s, min_size=1), 10)
        n95 = []
        for row in hist:
            srt = np.sort(row)[::-1]
            n95.append(int(np.searchsorted(np.cumsum(srt) / srt.sum(), 0.95) + 1))
        assert np.median(n95) <= 3


def test_local_split_sizes():
    tr, te = local_split(np.arange(37), 0.8, seed=0, client=2)
    assert len(tr) == math.ceil(0.8 * 37) and len(te) == 37 - math.ceil(0.8 * 37)
    assert set(tr) | set(te) == set(range(37))


def test_classes_per_client_and_iid():
    parts = classes_partition(LABELS, 5, 2, seed=0)
    hist = label_histogram(LABELS, parts, 10)
    assert ((hist > 0).sum(1) == 2).all() and hist.sum() == len(LABELS)
    iid = iid_partition(LABELS, 4, seed=0)
    assert sorted(np.concatenate(iid).tolist()) == list(range(len(LABELS)))


@pytest.mark.parametrize("kw,msg", [(dict(alpha=0.0), "alpha must be > 0"), (dict(alpha=-1.0), "alpha must be > 0"),
                                    (dict(num_clients=20001), "more clients than samples"),
                                    (dict(min_size=5000), "min_size")])
def test_bad_partition_fails_clearly(kw, msg):
    args = dict(labels=LABELS, num_clients=5, alpha=0.1)
    args.update(kw)
    with pytest.raises(DataError, match=msg):
        dirichlet_partition(**args)
