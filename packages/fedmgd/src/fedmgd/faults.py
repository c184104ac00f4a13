"""Client faults: a real deadline (the server stops waiting; a late client is left out) and injected
failures / delays for tests, shared by Stage 1 and Stage 2.

The simulation runs hosted clients one after another, so each client gets its own clock: the deadline
counts from the moment the server hands it work (as if every client had started at the same time). The
client works on a worker thread; when the deadline passes the server marks it late and waits only for
the client to leave its current step (the client checks a cancel flag at every step boundary, before
touching any model or RNG state), never for the rest of its work. A client that is still sleeping or
stuck outside its step never enters it again. So a late client costs at most one step past the deadline,
and the models and RNG streams are never touched by two threads at once."""
from __future__ import annotations

import threading
import time

from tenfold.errors import ConfigError

__all__ = ["ClientFailure", "ClientLate", "Guard", "call_with_deadline", "parse_events"]


class ClientFailure(RuntimeError):
    pass


class ClientLate(ClientFailure):
    pass


class Guard:
    """Held by a client while it touches shared state (models, RNG streams). `with guard:` refuses to
    enter once the server has cancelled the client; `guard.check()` is called between steps."""

    def __init__(self, cancel: threading.Event | None = None, who: str = "client"):
        self.cancel, self.who, self.lock = cancel, who, threading.Lock()

    def __enter__(self):
        self.lock.acquire()
        try:
            self.check()
        except ClientLate:
            self.lock.release()
            raise
        return self

    def __exit__(self, *exc):
        self.lock.release()
        return False

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise ClientLate(f"{self.who} missed the deadline")


def call_with_deadline(fn, timeout_s: float, who: str = "client"):
    """fn(guard) on a worker thread; returns its result, re-raises its exception, or raises ClientLate
    when it has not reported within timeout_s seconds (timeout_s <= 0: no deadline, runs inline)."""
    if timeout_s <= 0:
        return fn(Guard(None, who))
    cancel = threading.Event()
    guard = Guard(cancel, who)
    box: dict = {}
    done = threading.Event()

    def target():
        try:
            box["out"] = fn(guard)
        except BaseException as e:  # noqa: BLE001 - handed to the server thread
            box["err"] = e
        finally:
            done.set()

    t0 = time.perf_counter()
    threading.Thread(target=target, name=f"fedmgd-{who}", daemon=True).start()
    if not done.wait(timeout_s):
        cancel.set()
        with guard.lock:  # wait only until the client has left its current step
            pass
        raise ClientLate(f"{who} did not report within {timeout_s:g}s (waited {time.perf_counter() - t0:.2f}s)")
    if "err" in box:
        raise box["err"]
    return box["out"]


def parse_events(items, what: str) -> dict[int, set[int]]:
    """["step:client", ...] (1-based step: round in Stage 2, iteration in Stage 1) -> {step: {clients}}."""
    out: dict[int, set[int]] = {}
    for item in items or []:
        try:
            step, k = (int(v) for v in str(item).split(":"))
        except ValueError:
            raise ConfigError(f"{what}: '{item}' is not 'step:client' (two integers)") from None
        if step < 1 or k < 0:
            raise ConfigError(f"{what}: '{item}' needs step >= 1 and client >= 0")
        out.setdefault(step, set()).add(k)
    return out
