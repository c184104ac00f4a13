"""Resumable, per-sample-seeded data loading.

The sampler's order is a function of (seed, epoch) only, and it can start at any batch of an
epoch, so `--resume` continues with exactly the batches an uninterrupted run would have seen.
Random augmentations run under a per-sample seed derived from (seed, epoch, index), so they are
identical whatever the number of workers and wherever the run was resumed; the caller's global
RNG is left untouched.

With worker processes, the DataLoader of a data set is kept between calls that differ only in (epoch,
start_batch) — the sampler is re-pointed instead — so its persistent workers live across epochs instead of being
forked again every epoch; batches are the same because the order and the augmentation seeds come from the
sampler, never from the workers' RNG. Batches are pinned when they go to a CUDA device.
"""
from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .. import distributed

__all__ = ["ResumableSampler", "SeededDataset", "make_loader", "steps_per_epoch", "mix_seeds"]

_MASK = (1 << 63) - 1


def _mix(*xs: int) -> int:
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        h ^= h >> 31
    return h


def mix_seeds(*xs: int) -> int:
    """A well-mixed 63-bit seed from several integers (e.g. seed, epoch, stage)."""
    return _mix(*xs)


class ResumableSampler(Sampler):
    def __init__(self, n: int, batch_size: int, *, seed: int, epoch: int = 0, start_batch: int = 0,
                 shuffle: bool = True, drop_last: bool = True, rank: int | None = None,
                 world: int | None = None, with_seeds: bool = True):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.start_batch, self.shuffle, self.drop_last, self.with_seeds = start_batch, shuffle, drop_last, with_seeds
        self.rank = distributed.rank() if rank is None else rank
        self.world = distributed.world_size() if world is None else world

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        per_rank = self.n // self.world if self.drop_last else math.ceil(self.n / self.world)
        if not self.drop_last and per_rank * self.world > self.n:  # pad by wrapping, as DistributedSampler
            order = order + order[: per_rank * self.world - self.n]
        mine = order[self.rank: per_rank * self.world: self.world]
        if self.drop_last:
            mine = mine[: (len(mine) // self.batch_size) * self.batch_size]
        return mine[self.start_batch * self.batch_size:]

    def __iter__(self):
        idx = self.indices()
        if self.with_seeds:
            return iter([(i, _mix(self.seed, self.epoch, i, 7)) for i in idx])
        return iter(idx)

    def __len__(self) -> int:
        return len(self.indices())


class SeededDataset(Dataset):
    """Wraps a data set so item `(index, seed)` is produced under that seed (torch + python RNG)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            return self.dataset[key]
        idx, seed = key
        py_state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            # CPU generator only: torch.manual_seed would also queue a CUDA seed, which on a CUDA build
            # without an initialised GPU captures a Python stack per call (70 % of a small model's step)
            torch.default_generator.manual_seed(seed)
            random.seed(seed)
            try:
                return self.dataset[idx]
            finally:
                random.setstate(py_state)


def steps_per_epoch(n: int, batch_size: int, drop_last: bool = True, world: int | None = None) -> int:
    world = distributed.world_size() if world is None else world
    per_rank = n // world if drop_last else math.ceil(n / world)
    return per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)


# Loaders with live workers, most recently used last; a few at most (train + eval loaders of one run), the
# evicted ones shut their workers down when dropped.
_PERSISTENT: OrderedDict[tuple, DataLoader] = OrderedDict()
_MAX_PERSISTENT = 4


def _pin_default(device) -> bool:
    if device is not None:
        return torch.device(device).type == "cuda"
    return torch.cuda.is_available()


def make_loader(dataset: Dataset, batch_size: int, *, seed: int, epoch: int = 0, start_batch: int = 0,
                shuffle: bool = True, drop_last: bool = True, num_workers: int = 0, pin_memory: bool | None = None,
                collate_fn: Callable | None = None, seeded_augment: bool = True, device=None,
                persistent_workers: bool = True) -> DataLoader:
    """Batches of `epoch` from `start_batch` on; this rank's share under torchrun.

    pin_memory=None pins when `device` is CUDA (when no device is given: when CUDA is available). With
    num_workers > 0 and persistent_workers, the workers outlive the epoch (the data set must not change between
    epochs then; pass persistent_workers=False for one that does)."""
    if pin_memory is None:
        pin_memory = _pin_default(device)
    sampler = ResumableSampler(len(dataset), batch_size, seed=seed, epoch=epoch, start_batch=start_batch,
                               shuffle=shuffle, drop_last=drop_last, with_seeds=seeded_augment)
    persistent = num_workers > 0 and persistent_workers
    key = (id(dataset), batch_size, seed, shuffle, drop_last, num_workers, pin_memory, collate_fn, seeded_augment,
           sampler.rank, sampler.world)
    if persistent:
        cached = _PERSISTENT.get(key)
        if cached is not None and cached.tenfold_source is dataset:
            _PERSISTENT.move_to_end(key)
            cached.sampler.epoch, cached.sampler.start_batch = epoch, start_batch
            return cached
    ds = SeededDataset(dataset) if seeded_augment else dataset
    # A private generator: creating the iterator must not consume the global RNG (exact resume).
    gen = torch.Generator().manual_seed(_mix(seed, epoch, 11))
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=num_workers,
                        pin_memory=pin_memory, collate_fn=collate_fn, generator=gen, persistent_workers=persistent)
    if persistent:
        loader.tenfold_source = dataset
        _PERSISTENT[key] = loader
        while len(_PERSISTENT) > _MAX_PERSISTENT:
            _PERSISTENT.popitem(last=False)
    return loader
