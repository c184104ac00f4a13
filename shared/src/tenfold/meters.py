"""Progress bars, JSONL metrics, throughput and the final summary.json."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from tqdm.auto import tqdm

from . import distributed

__all__ = ["progress", "MetricLogger", "Throughput", "AverageMeter", "write_json"]


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", initial: int = 0,
             disable: bool | None = None):
    """tqdm on rank 0 only, and only when stderr is a terminal (quiet in CI logs)."""
    if disable is None:
        disable = not distributed.is_main() or not sys.stderr.isatty() or os.environ.get("TENFOLD_QUIET") == "1"
    return tqdm(iterable, total=total, desc=desc, initial=initial, disable=disable, dynamic_ncols=True,
                leave=False)


def _clean(v):
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def write_json(path: str | os.PathLike, data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({k: _clean(v) for k, v in data.items()} if isinstance(data, dict) else data,
                              indent=2, default=str))
    os.replace(tmp, path)
    return path


class MetricLogger:
    """Appends one JSON object per `log()` to run_dir/metrics.jsonl (rank 0 only)."""

    def __init__(self, run_dir: str | os.PathLike, filename: str = "metrics.jsonl"):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / filename
        self.enabled = distributed.is_main()
        if self.enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    def log(self, step: int | None = None, **metrics) -> dict:
        rec = {"time": round(time.time(), 3)}
        if step is not None:
            rec["step"] = step
        rec.update({k: _clean(v) for k, v in metrics.items()})
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        return rec

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def summary(self, **data) -> Path | None:
        if not self.enabled:
            return None
        return write_json(self.run_dir / "summary.json", data)


class AverageMeter:
    def __init__(self):
        self.sum = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        self.sum += float(value) * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / max(self.count, 1)


class Throughput:
    """Samples per second over a sliding run; call `update(n)` after each step."""

    def __init__(self):
        self.start = time.perf_counter()
        self.samples = 0

    def update(self, n: int) -> None:
        self.samples += n

    @property
    def rate(self) -> float:
        dt = time.perf_counter() - self.start
        return self.samples / dt if dt > 0 else 0.0
