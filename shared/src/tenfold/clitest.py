"""Test helpers for real training-CLI subprocesses: stop one with a signal mid-run, and compare the files of an
interrupted+resumed run with an uninterrupted one apart from timing fields.

    rc, err = interrupt([script, *args, f"--out={out}"], at_step=5)
    assert rc == 128 + signal.SIGTERM and err.splitlines()[-1].startswith("stopped by SIGTERM: saved")
    run([script, *args, f"--out={out}", "--resume"])
    assert records(out) == records(reference) and summary(out) == summary(reference)

The signal is sent once a plain progress line (stderr is a pipe, TENFOLD_PROGRESS_EVERY=0: a line per update)
reports `at_step`, so the run is really inside its loop. Torch-free: usable from any package's tests.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path

__all__ = ["TIMING", "env", "run", "interrupt", "records", "summary", "signal_routing"]

# fields that measure time or speed: they differ between any two runs
TIMING = frozenset({"time", "samples_per_s", "step_s", "step_cpu_s", "elapsed_s", "wall_s", "seconds"})
_STEP = re.compile(r": step (\d+)")


def env(progress_every: str = "1000") -> dict:
    """The environment of a CLI under test: single-threaded (bitwise comparable runs), progress lines on
    (CI sets TENFOLD_QUIET=1, which silences them) every `progress_every` seconds."""
    base = {k: v for k, v in os.environ.items() if k != "TENFOLD_QUIET"}
    return {**base, "OMP_NUM_THREADS": "1", "TENFOLD_PROGRESS_EVERY": progress_every}


def run(cmd: list, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], env=env(), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd[:3]))} ... exited {r.returncode}:\n{r.stderr[-3000:]}")
    return r


def interrupt(cmd: list, at_step: int, sig: int = signal.SIGTERM, timeout: float = 300) -> tuple[int, str]:
    """Start `cmd`, send `sig` once its progress lines reach `at_step`; return (exit code, stderr)."""
    p = subprocess.Popen([str(c) for c in cmd], env=env("0"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    seen = []
    try:
        for line in p.stderr:
            seen.append(line)
            m = _STEP.search(line)
            if m and int(m.group(1)) >= at_step:
                p.send_signal(sig)
                break
        seen.append(p.stderr.read())
        p.wait(timeout=timeout)
    finally:
        if p.poll() is None:  # a hung child must not outlive the test
            p.kill()
            p.wait()
    return p.returncode, "".join(seen)


def records(run_dir, drop=()) -> list[dict]:
    """metrics.jsonl without timing fields (and the keys in `drop`)."""
    skip = TIMING | set(drop)
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in skip} for x in lines if x.strip()]


def summary(run_dir, drop=()) -> dict:
    """summary.json without timing fields (and the keys in `drop`)."""
    skip = TIMING | set(drop)
    return {k: v for k, v in json.loads((Path(run_dir) / "summary.json").read_text()).items() if k not in skip}


@contextlib.contextmanager
def signal_routing():
    """The CLI guard's SIGTERM/SIGUSR1 routing installed in this process (for in-process signal tests); the
    previous handlers come back afterwards, so later tests see the process as it was."""
    from . import signals

    old = {sig: signal.getsignal(sig) for sig in signals.SIGNALS}
    signals.install()
    try:
        yield
    finally:
        signals.reset()
        for sig, handler in old.items():
            signal.signal(sig, handler)
