"""Every shipped config loads and validates; the 100-client CIFAR-10 config's min_size fits its pool (#18)."""
import os
from pathlib import Path

import numpy as np
import pytest
from fedmgd.config import FedMGDConfig
from fedmgd.partition import make_partition
from tenfold.config import load

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
DATA = os.environ.get("TENFOLD_DATA")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_loads_and_validates(path):
    cfg = load(FedMGDConfig, path, [])
    assert cfg.partition.num_clients >= 1


def _cifar_pool_labels(cfg):
    """The pool labels exactly as build_pool draws them (train + the 90% of test not in the global test set)."""
    root = Path(DATA) / "cifar10" if DATA else None
    if root is not None and (root / "train.npz").is_file() and (root / "test.npz").is_file():
        tr = np.load(root / "train.npz")["labels"].astype(np.int64)
        te = np.load(root / "test.npz")["labels"].astype(np.int64)
    else:  # CIFAR-10's composition: 5,000 train and 1,000 test images per class
        tr, te = np.repeat(np.arange(10), 5000), np.repeat(np.arange(10), 1000)
    perm = np.random.default_rng(cfg.partition.seed).permutation(len(te))
    return np.concatenate([tr, te[perm[1000:]]])


def test_100_client_cifar10_config_partitions_its_pool():
    cfg = load(FedMGDConfig, Path(__file__).resolve().parents[1] / "configs" / "cifar10_100clients.yaml", [])
    assert cfg.partition.num_clients == 100 and cfg.partition.alpha == 0.1 and cfg.data.dataset == "cifar10"
    labels = _cifar_pool_labels(cfg)
    assert len(labels) == 59000
    parts = make_partition(labels, cfg.partition)
    sizes = [len(p) for p in parts]
    assert len(parts) == 100 and min(sizes) >= cfg.partition.min_size and sum(sizes) == len(labels)
    assert len(np.unique(np.concatenate(parts))) == len(labels)  # a partition: every image exactly once
