"""Label-skew partitions (§3): FedGen-style Dirichlet with per-client cap, per-class subsampling and
re-draw until min_size; pathological k-classes-per-client; IID. Plus the 80/20 local split."""
from __future__ import annotations

import math

import numpy as np
from tenfold.errors import DataError

__all__ = ["dirichlet_partition", "classes_partition", "iid_partition", "make_partition", "local_split",
           "label_histogram", "format_histogram"]


def _check(n: int, k: int, min_size: int) -> None:
    if k < 1:
        raise DataError(f"num_clients must be >= 1, got {k}")
    if k > n:
        raise DataError(f"cannot split {n} samples over {k} clients: more clients than samples; "
                        f"use fewer clients or a larger pool")
    if k * min_size > n:
        raise DataError(f"min_size {min_size} x {k} clients = {k * min_size} > {n} samples; lower "
                        f"partition.min_size or partition.num_clients")


def dirichlet_partition(labels: np.ndarray, num_clients: int, alpha: float, seed: int = 42, min_size: int = 10,
                        sampling_ratio: float = 1.0, max_redraws: int = 1000) -> list[np.ndarray]:
    """Per class c (in random order): shuffle its indices, keep int(min(cap, r*n_c)) if r < 1, draw
    p ~ Dir(alpha 1_K), zero p_k for clients already at cap = r |pool| / K, renormalise and cut the
    class at floor(cumsum(p) n_c). Redraw everything until every client has >= min_size samples."""
    labels = np.asarray(labels)
    if not alpha > 0:
        raise DataError(f"Dirichlet alpha must be > 0, got {alpha}; use e.g. 0.01 (extreme skew) to 100 (near IID)")
    n, k = len(labels), int(num_clients)
    _check(n, k, min_size)
    rng = np.random.default_rng(seed)
    cap = sampling_ratio * n / k
    classes = np.unique(labels)
    for _ in range(max_redraws):
        counts = np.zeros(k, dtype=np.int64)
        parts: list[list[np.ndarray]] = [[] for _ in range(k)]
        for c in rng.permutation(classes):
            idx = rng.permutation(np.flatnonzero(labels == c))
            if sampling_ratio < 1:
                idx = idx[: int(min(cap, int(sampling_ratio * len(idx))))]
            p = rng.dirichlet(np.full(k, float(alpha)))
            p = np.nan_to_num(p) * (counts < cap)
            if p.sum() <= 0:  # every open client drew ~0 mass (tiny alpha): spread over open clients
                p = (counts < cap).astype(float)
                if p.sum() <= 0:
                    p = np.ones(k)
            p = p / p.sum()
            cuts = (np.cumsum(p) * len(idx)).astype(int)[:-1]
            for j, piece in enumerate(np.split(idx, cuts)):
                parts[j].append(piece)
                counts[j] += len(piece)
        if counts.min() >= min_size:
            return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
    raise DataError(f"no Dirichlet(alpha={alpha}) partition of {n} samples over {k} clients gave every client "
                    f">= {min_size} samples in {max_redraws} draws; raise alpha or lower partition.min_size")


def classes_partition(labels: np.ndarray, num_clients: int, classes_per_client: int, seed: int = 42,
                      min_size: int = 1) -> list[np.ndarray]:
    """Pathological skew: client k owns `classes_per_client` classes (assigned round-robin over a shuffled
    class list so every class has an owner when K * k >= N_c); each class is split evenly over its owners."""
    labels = np.asarray(labels)
    n, k = len(labels), int(num_clients)
    _check(n, k, min_size)
    classes = np.unique(labels)
    if not 1 <= classes_per_client <= len(classes):
        raise DataError(f"classes_per_client must be in 1..{len(classes)}, got {classes_per_client}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(classes)
    owned = [[order[(i * classes_per_client + j) % len(order)] for j in range(classes_per_client)] for i in range(k)]
    owners = {c: [i for i in range(k) if c in owned[i]] for c in classes}
    parts: list[list[np.ndarray]] = [[] for _ in range(k)]
    for c in classes:
        if not owners[c]:
            continue
        idx = rng.permutation(np.flatnonzero(labels == c))
        for j, piece in zip(owners[c], np.array_split(idx, len(owners[c]))):
            parts[j].append(piece)
    out = [np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64) for p in parts]
    if min(len(p) for p in out) < min_size:
        raise DataError(f"a client got fewer than {min_size} samples; use fewer clients or more classes_per_client")
    return out


def iid_partition(labels: np.ndarray, num_clients: int, seed: int = 42, min_size: int = 1) -> list[np.ndarray]:
    n, k = len(labels), int(num_clients)
    _check(n, k, min_size)
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(p).astype(np.int64) for p in np.array_split(perm, k)]


def make_partition(labels: np.ndarray, pcfg) -> list[np.ndarray]:
    if pcfg.kind == "dirichlet":
        return dirichlet_partition(labels, pcfg.num_clients, pcfg.alpha, pcfg.seed, pcfg.min_size,
                                   pcfg.sampling_ratio, pcfg.max_redraws)
    if pcfg.kind == "classes":
        return classes_partition(labels, pcfg.num_clients, pcfg.classes_per_client, pcfg.seed, max(1, pcfg.min_size))
    return iid_partition(labels, pcfg.num_clients, pcfg.seed, max(1, pcfg.min_size))


def local_split(indices: np.ndarray, train_frac: float = 0.8, seed: int = 42, client: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle a client's indices; the first ceil(train_frac n) are local train, the rest local test."""
    rng = np.random.default_rng([seed, client])
    idx = rng.permutation(indices)
    cut = math.ceil(train_frac * len(idx))
    return idx[:cut], idx[cut:]


def label_histogram(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> np.ndarray:
    """(K, N_c) per-client label counts."""
    labels = np.asarray(labels)
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts]) if parts else np.zeros((0, 0))


def format_histogram(hist: np.ndarray) -> str:
    k, c = hist.shape
    head = "client " + " ".join(f"{j:>6d}" for j in range(c)) + "  |   total"
    rows = [f"{i:>6d} " + " ".join(f"{v:>6d}" for v in hist[i]) + f"  | {hist[i].sum():>7d}" for i in range(k)]
    return "\n".join([head] + rows)
