"""Client placement, per-client RNG streams and exact reductions, shared by the simulated engine (one
process hosts every client) and the torch.distributed engine (rank r hosts clients k with k % world == r).

Every client draws its randomness (dropout, failure injection) from its own RNG stream and the server
from another, so the result of a run does not depend on how clients are spread over processes.
Reductions are made exact across placements: per-client rows are all-reduced into zero-padded stacks
(adding zeros is exact) and model sums are accumulated in float64."""
from __future__ import annotations

import contextlib
import copy
import hashlib

import torch
import torch.distributed as dist
from tenfold import distributed

__all__ = ["stream_seed", "Streams", "Comm", "clone_module"]


def clone_module(m: torch.nn.Module) -> torch.nn.Module:
    """An independent copy of a module (one place, so the fake-CUDA device test can swap in a copy that stays
    inside its fake tensor mode: deep-copying a fake module starts a second mode)."""
    return copy.deepcopy(m)


def stream_seed(seed: int, *names) -> int:
    h = hashlib.sha256(("|".join([str(seed), *map(str, names)])).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


class Streams:
    """Named RNG streams: `with streams.use("client3"):` swaps the global torch (and CUDA) RNG state."""

    def __init__(self, seed: int, device: torch.device):
        self.seed, self.device = seed, device
        self.states: dict[str, dict] = {}

    def _fresh(self, name: str) -> dict:
        cpu = torch.Generator().manual_seed(stream_seed(self.seed, name)).get_state()
        st = {"cpu": cpu}
        if self.device.type == "cuda":
            g = torch.Generator(device=self.device).manual_seed(stream_seed(self.seed, name, "cuda"))
            st["cuda"] = g.get_state()
        return st

    @contextlib.contextmanager
    def use(self, name: str):
        st = self.states.get(name) or self._fresh(name)
        saved_cpu = torch.get_rng_state()
        saved_cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        torch.set_rng_state(st["cpu"])
        if saved_cuda is not None:
            torch.cuda.set_rng_state(st["cuda"], self.device)
        try:
            yield
        finally:
            new = {"cpu": torch.get_rng_state()}
            if saved_cuda is not None:
                new["cuda"] = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(saved_cuda, self.device)
            torch.set_rng_state(saved_cpu)
            self.states[name] = new

    def snapshot(self) -> tuple:
        """The RNG state in use now (inside `use`: the stream's current position)."""
        return torch.get_rng_state(), (torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None)

    def restore(self, snap: tuple) -> None:
        torch.set_rng_state(snap[0])
        if snap[1] is not None:
            torch.cuda.set_rng_state(snap[1], self.device)

    def state_dict(self) -> dict:
        return {k: dict(v) for k, v in self.states.items()}

    def load_state_dict(self, sd: dict) -> None:
        self.states = {k: dict(v) for k, v in sd.items()}


class Comm:
    """Which clients live in this process, and the reductions over all of them."""

    def __init__(self, num_clients: int, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.num_clients = num_clients
        self.local = [k for k in range(num_clients) if k % self.world == self.rank]

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def stack(self, rows: dict[int, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """(K, *like.shape) with row k from the process hosting client k; exact under all-reduce."""
        out = torch.zeros(self.num_clients, *like.shape, dtype=like.dtype, device=like.device)
        for k, v in rows.items():
            out[k] = v
        if self.distributed:
            dist.all_reduce(out)
        return out

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(t)
        return t

    def sum_float(self, value: float) -> float:
        if not self.distributed:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t)
