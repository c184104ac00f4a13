"""Timing with warm-up and median (CUDA events on GPU), peak memory, FLOPs and MFU, JSON output, and the
GPU-benchmark report every package's bench/gpu.py writes (gpu_parser + gpu_report)."""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .meters import write_json

__all__ = ["time_it", "peak_memory", "TensorMemoryTracker", "count_flops", "mfu", "PEAK_BF16_TFLOPS",
           "write_json", "device_name", "gpu_parser", "gpu_report", "GpuReport"]

# Dense bf16 tensor-core peaks (TFLOP/s) used for MFU.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "V100": 125.0}


def device_name(device: torch.device | None = None) -> str:
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
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


def gpu_parser(package: str, description: str | None = None) -> argparse.ArgumentParser:
    """The command line every packages/<p>/bench/gpu.py accepts (the root driver passes these)."""
    ap = argparse.ArgumentParser(prog=f"{package}/bench/gpu.py", description=description)
    ap.add_argument("--out", required=True, help="folder for <package>.json (rewritten after every measurement)")
    ap.add_argument("--smoke", action="store_true", help="the same code path on the CPU with tiny sizes (< 30 s)")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds this package may use (default 60)")
    ap.add_argument("--data-root", default=None, help="data folder (default $TENFOLD_DATA)")
    ap.add_argument("--models-root", default=None, help="teachers folder (default $TENFOLD_MODELS)")
    ap.add_argument("--long", action="store_true", help="also the longer measurements (BUDGET=long)")
    return ap


class GpuReport:
    """`<out>/<package>.json` with keys package, device, torch, smoke, rows, skipped, rewritten atomically after
    every row so a run killed by its timeout keeps everything measured so far."""

    def __init__(self, package: str, out: str | os.PathLike, device: torch.device, smoke: bool,
                 budget_s: float | None = None):
        self.package, self.device, self.smoke = package, torch.device(device), bool(smoke)
        self.path = os.path.join(os.fspath(out), f"{package}.json")
        self.rows: list[dict] = []
        self.skipped: str | None = None
        self.start = time.monotonic()
        self.budget_s = budget_s
        self.write()

    def remaining(self) -> float:
        """Seconds left of the budget (inf without one): measurements that do not fit are left out."""
        if self.budget_s is None:
            return float("inf")
        return self.budget_s - (time.monotonic() - self.start)

    def data(self) -> dict:
        return {"package": self.package, "device": device_name(self.device), "torch": torch.__version__,
                "smoke": self.smoke, "rows": list(self.rows), "skipped": self.skipped}

    def write(self) -> None:
        write_json(self.path, self.data())

    def row(self, what: str, value: float | int | None, unit: str) -> dict:
        """One table row (throughput, peak memory MiB, a ratio ...); None records a measurement that could not
        be made (e.g. MFU on an unknown GPU)."""
        if value is not None:
            value = float(value)
        r = {"what": str(what), "value": value, "unit": str(unit)}
        self.rows.append(r)
        self.write()
        print(f"{self.package}: {what} = {value if value is None else f'{value:.4g}'} {unit}", flush=True)
        return r

    def skip(self, reason: str, exit: bool = True) -> None:
        """Record why the benchmark did not run (data or teacher missing, no GPU) and exit 0 by default."""
        self.skipped = " ".join(str(reason).split())
        self.write()
        print(f"{self.package}: skipped: {self.skipped}", flush=True)
        if exit:
            sys.exit(0)


def gpu_report(package: str, args: argparse.Namespace) -> GpuReport:
    """The report for a gpu.py run: device cpu under --smoke, else cuda; a run without --smoke on a machine
    without CUDA is recorded as skipped and exits 0."""
    if args.smoke:
        return GpuReport(package, args.out, torch.device("cpu"), True, args.budget)
    if not torch.cuda.is_available():
        rep = GpuReport(package, args.out, torch.device("cpu"), False, args.budget)
        rep.skip("CUDA is not available (run with --smoke for the CPU check)")
    return GpuReport(package, args.out, torch.device("cuda"), False, args.budget)
