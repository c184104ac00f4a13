"""SIGTERM / SIGUSR1 (preemption, Slurm time limits, `kill`): save at the next step boundary, then stop.

The CLI guard calls `install()`. A loop that can checkpoint runs inside `with polling():` and calls
`check(save)` once per step; the handler only sets a flag there (no work in signal context, no device sync:
the per-step cost is reading one module attribute). Outside a polling loop, or on a second signal, the run
stops at once with the same one-line message, minus the "saved" part.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import RunStopped

__all__ = ["install", "polling", "pending", "check", "steps", "stop_now", "SIGNALS"]

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s is not None)
_pending: int | None = None
_polling = 0


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _handler(signum, frame):
    global _pending
    if _polling and _pending is None:
        _pending = signum
        return
    raise RunStopped(signum, f"stopped by {_name(signum)} outside a checkpointing step; nothing new was saved "
                             f"(resume from the last checkpoint with --resume)")


def install() -> None:
    """Route SIGTERM/SIGUSR1 to the step-boundary logic (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in SIGNALS:
        signal.signal(s, _handler)


@contextlib.contextmanager
def polling():
    """Mark the enclosed code as a loop that calls `check()` at every step boundary."""
    global _polling
    _polling += 1
    try:
        yield
    finally:
        _polling -= 1


def pending() -> int | None:
    return _pending


def reset() -> None:
    global _pending
    _pending = None


def check(save: Callable[[], Path | str | None], what: str = "") -> None:
    """At a step boundary: if a signal arrived, call `save()` (returns the checkpoint path) and stop."""
    global _pending
    if _pending is None:
        return
    signum, _pending = _pending, None
    path = save()
    where = f" {what}" if what else ""
    raise RunStopped(signum, f"stopped by {_name(signum)}: saved{where} to {path}; "
                             f"continue with the same command plus --resume")


def steps(iterable, save: Callable[[Any], Path | str | None], what: Callable[[Any], str] | str = ""):
    """`for t in signals.steps(range(start, total), save=lambda t: ...)`: a loop of one's own with the same
    behaviour as the Trainer's. After each step's body, a pending SIGTERM/SIGUSR1 calls `save(t)` (which
    checkpoints the state *after* step t and returns the path) and stops the run."""
    global _polling
    _polling += 1
    try:
        for x in iterable:
            yield x
            if _pending is not None:
                check(lambda: save(x), what(x) if callable(what) else what)  # noqa: B023 (called right here)
    finally:
        _polling -= 1


def stop_now(signum: int, message: str) -> None:
    raise RunStopped(signum, message)
