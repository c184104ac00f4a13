"""Per-iteration wall and CPU time of the training step (the method's claim is about time per iteration)."""
from __future__ import annotations

import time

import torch

__all__ = ["StepTimer"]


class StepTimer:
    """`with timer:` around one step; CUDA is synchronised before the clock stops."""

    def __init__(self, device: torch.device):
        self.device = device
        self.wall = self.cpu = 0.0
        self.steps = 0

    def __enter__(self):
        self._t0, self._c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.wall += time.perf_counter() - self._t0
        self.cpu += time.process_time() - self._c0
        self.steps += 1
        return False

    @property
    def step_s(self) -> float:
        return self.wall / max(self.steps, 1)

    @property
    def step_cpu_s(self) -> float:
        return self.cpu / max(self.steps, 1)
