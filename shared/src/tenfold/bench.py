"""Timing with warm-up and median (CUDA events on GPU), peak memory, FLOPs and MFU, JSON output."""
from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .meters import write_json

__all__ = ["time_it", "peak_memory", "TensorMemoryTracker", "count_flops", "mfu", "PEAK_BF16_TFLOPS",
           "write_json", "device_name"]

# Dense bf16 tensor-core peaks (TFLOP/s) used for MFU.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "V100": 125.0}


def device_name(device: torch.device | None = None) -> str:
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _sync(device):
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], object], warmup: int = 3, repeat: int = 10, device: torch.device | None = None
            ) -> dict[str, float]:
    """Seconds per call: median, mean, min over `repeat` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        if device is not None and device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize(device)
            times.append(a.elapsed_time(b) / 1000.0)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times), "min_s": min(times),
            "repeat": repeat}


class TensorMemoryTracker(TorchDispatchMode):
    """Peak bytes of tensors created inside the context (CPU or GPU), counted per storage.

    Parameters created before entering are not counted; activations saved for backward are, so
    this measures what a training step allocates on top of the model.
    """

    def __init__(self):
        super().__init__()
        self.live: dict[int, list] = {}  # data_ptr -> [bytes, n_tensors]
        self.current = 0
        self.peak = 0

    def _release(self, key):
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                try:
                    st = t.untyped_storage()
                    key, size = st.data_ptr(), st.nbytes()
                except (RuntimeError, NotImplementedError):
                    continue
                if key == 0:
                    continue
                entry = self.live.get(key)
                if entry is None:
                    self.live[key] = [size, 1]
                    self.current += size
                    self.peak = max(self.peak, self.current)
                else:
                    entry[1] += 1
                weakref.finalize(t, self._release, key)
        return out


def peak_memory(fn: Callable[[], object], device: torch.device | None = None) -> int:
    """Peak bytes allocated while running `fn` (CUDA allocator stats on GPU, a tensor tracker on CPU)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    with TensorMemoryTracker() as tr:
        fn()
    return int(tr.peak)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call (matmuls/convs/attention), via torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def mfu(flops: float, seconds: float, device: torch.device | None = None, peak_tflops: float | None = None
        ) -> float | None:
    """Model FLOPs utilisation against the device's bf16 peak (None when the peak is unknown)."""
    if peak_tflops is None:
        if device is None or device.type != "cuda":
            return None
        name = torch.cuda.get_device_name(device)
        peak_tflops = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        if peak_tflops is None:
            return None
    return flops / seconds / (peak_tflops * 1e12)
