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

__all__ = ["progress", "PlainProgress", "MetricLogger", "Throughput", "AverageMeter", "write_json"]


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", initial: int = 0,
             disable: bool | None = None):
    """tqdm on rank 0 when stderr is a terminal; otherwise (nohup, Slurm, CI logs) plain progress lines
    every $TENFOLD_PROGRESS_EVERY seconds (default 30): step/total, the postfix (loss, ...), rate and ETA."""
    quiet = not distributed.is_main() or os.environ.get("TENFOLD_QUIET") == "1"
    tty = sys.stderr.isatty()
    if disable is None:
        disable = quiet or not tty
    bar = tqdm(iterable, total=total, desc=desc, initial=initial, disable=disable, dynamic_ncols=True,
               leave=False)
    if quiet or tty or disable is False:
        return bar
    return PlainProgress(bar, iterable, total, desc, initial)


class PlainProgress:
    """Wraps a disabled tqdm and prints one plain line per interval. The per-step cost is one monotonic()
    call; values come from what the loop already put in the postfix (no extra device syncs)."""

    def __init__(self, bar, iterable, total, desc, initial):
        self.bar, self.iterable, self.total, self.desc = bar, iterable, total, desc or "train"
        self.n = self.start_n = initial
        self.every = float(os.environ.get("TENFOLD_PROGRESS_EVERY", "30"))
        self.t0 = time.monotonic()
        self.next = self.t0 + self.every
        self.postfix: dict = {}

    def __getattr__(self, name):
        return getattr(self.bar, name)

    def __iter__(self):
        for x in self.iterable:
            yield x
            self.update(1)

    def __len__(self):
        return len(self.bar)

    def update(self, n=1):
        self.n += n
        if time.monotonic() >= self.next:
            self.line()

    def set_postfix(self, ordered_dict=None, refresh=True, **kw):
        self.postfix = dict(ordered_dict or {}, **kw)

    def set_postfix_str(self, s="", refresh=True):
        self.postfix = {"": s}

    def line(self, note: str = "") -> None:
        now = time.monotonic()
        self.next = now + self.every
        done = self.n - self.start_n
        rate = done / (now - self.t0) if now > self.t0 else 0.0
        parts = [f"{self.desc}: step {self.n}" + (f"/{self.total}" if self.total else "")]
        parts += [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" if k else str(v)
                  for k, v in self.postfix.items()]
        parts.append(f"{rate:.3g} steps/s")
        if self.total and rate > 0:
            parts.append(f"ETA {_hms((self.total - self.n) / rate)}")
        if note:
            parts.append(note)
        print("  ".join(parts), file=sys.stderr, flush=True)

    def close(self):
        # no closing line: the CLI prints its summary, and short runs stay as quiet as before
        self.bar.close()


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


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
        self.count, self.last = 0, {}  # records logged by this process (a loop notices evaluations by them)
        if self.enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    def log(self, step: int | None = None, **metrics) -> dict:
        rec = {"time": round(time.time(), 3)}
        if step is not None:
            rec["step"] = step
        rec.update({k: _clean(v) for k, v in metrics.items()})
        self.count += 1
        self.last = rec
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        return rec

    def truncate_after(self, step: int, stage: int | None = None) -> None:
        """Drop records with a step beyond `step` (with `stage`: beyond (stage, step), for loops whose step
        counter restarts per stage): on resume they were logged by the interrupted attempt after its last
        checkpoint and are about to be logged again."""
        if not self.enabled or not self.path.is_file():
            return
        lines = self.path.read_text().splitlines()
        keep = [ln for ln in lines if ln.strip() and not _after(ln, step, stage)]
        if len(keep) != len([ln for ln in lines if ln.strip()]):
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(ln + "\n" for ln in keep))
            os.replace(tmp, self.path)

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def summary(self, **data) -> Path | None:
        if not self.enabled:
            return None
        return write_json(self.run_dir / "summary.json", data)


def _after(line: str, step: int, stage: int | None = None) -> bool:
    try:
        rec = json.loads(line)
        s = rec.get("step")
    except (json.JSONDecodeError, AttributeError):
        return False
    if not isinstance(s, (int, float)):
        return False
    if stage is not None and isinstance(rec.get("stage"), (int, float)):
        return (rec["stage"], s) > (stage, step)
    return s > step


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
