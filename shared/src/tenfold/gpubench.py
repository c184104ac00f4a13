"""`make bench-gpu`: every package's bench/gpu.py, one after another, within one total budget.

    PYTHONPATH=shared/src python -m tenfold.gpubench --out DIR [--pack DIR] [--budget 480|long] [--smoke]
                                                     [--packages a,b] [--allow-missing]

Each package gets a share of what is left of the budget (time a package does not use goes to the ones after it)
and runs as a subprocess with that share as a hard timeout (its process group is killed). The package writes
DIR/<package>.json after every measurement, so a killed package keeps what it measured; the driver rewrites
DIR/summary.md and DIR/summary.json after every package. Sources are put on PYTHONPATH (shared/src, every
packages/*/src, then the pack's pylib/ as a fallback), so nothing needs installing and nothing is downloaded.
Exit status: 1 when a package failed or timed out (or, without --allow-missing, has no bench/gpu.py), else 0.
"""
from __future__ import annotations

import argparse
import json
import lzma
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["run_all", "shares", "render_summary", "find_root", "materialize"]

LONG_BUDGET_S = 3000.0  # BUDGET=long: the longer measurements of every package, not meant for a 10-minute slot
STARTUP_S = 12.0  # what a package's budget leaves for Python + torch + CUDA start-up and the final write
SMOKE_TIMEOUT_S = 180.0  # a smoke run should take < 30 s of CPU; the wall-clock timeout allows a loaded machine


def find_root(start: Path | None = None) -> Path:
    """The repository root: the first folder upwards holding packages/ and shared/ (cwd first, then this file)."""
    for base in ([Path(start)] if start else []) + [Path.cwd(), Path(__file__).resolve()]:
        for p in [base, *base.parents]:
            if (p / "packages").is_dir() and (p / "shared").is_dir():
                return p
    raise SystemExit("gpubench: cannot find the repository root (a folder with packages/ and shared/)")


def shares(left_s: float, remaining: list[str], weights: dict[str, float] | None = None) -> float:
    """Seconds for the next package: its weight's share of the budget left (equal weights by default)."""
    w = weights or {}
    total = sum(w.get(p, 1.0) for p in remaining)
    return max(0.0, left_s * w.get(remaining[0], 1.0) / total) if total else 0.0


def materialize(pack: Path, work: Path) -> Path:
    """A data root for the benchmarks: the pack's data/ with every *.xz expanded into `work` and everything else
    linked, so nothing is copied twice. (Here rather than in gpupack: the driver imports neither torch nor numpy,
    so it holds no GPU memory while the benchmarks run.)"""
    pack = Path(pack)
    src = pack / "data" if (pack / "data").is_dir() else pack
    if not any(src.rglob("*.xz")):
        return src
    work = Path(work)
    for f in src.rglob("*"):
        if f.is_dir():
            continue
        rel = f.relative_to(src)
        target = work / (rel.with_suffix("") if f.suffix == ".xz" else rel)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.suffix == ".xz":
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(lzma.decompress(f.read_bytes()))
            os.replace(tmp, target)
        else:
            os.symlink(f.resolve(), target)
    return work


def _env(root: Path, pack: Path | None, data_root: Path | None) -> dict:
    env = dict(os.environ)
    paths = [str(root / "shared" / "src")] + [str(p) for p in sorted((root / "packages").glob("*/src"))]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    if pack is not None and (pack / "pylib").is_dir():
        paths.append(str(pack / "pylib"))  # last: an installed PyYAML wins
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["TENFOLD_QUIET"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    if data_root is not None:
        env["TENFOLD_DATA"] = str(data_root)
    if pack is not None and (pack / "models").is_dir():
        env["TENFOLD_MODELS"] = str(pack / "models")
    return env


def _run_one(cmd: list[str], env: dict, cwd: Path, log: Path, timeout: float) -> tuple[int | None, float, float]:
    """(exit status or None on timeout, wall seconds, CPU seconds); the process group is killed on timeout."""
    t0 = time.monotonic()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = ru.ru_utime + ru.ru_stime
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue
            rc = None
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return rc, time.monotonic() - t0, ru.ru_utime + ru.ru_stime - cpu0


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _modules() -> str:
    """Which optional dependencies this Python has (found, not imported): a missing one explains a failure."""
    import importlib.util

    names = ("torchvision", "torch_geometric", "numpy", "PIL", "yaml", "tqdm", "scipy", "matplotlib")
    return ", ".join(f"{n} {'yes' if importlib.util.find_spec(n) else 'NO'}" for n in names)


def render_summary(results: list[dict], header: dict) -> str:
    lines = [f"# GPU benchmark — {header['device']}", "",
             f"torch {header['torch']}, Python {header['python']}, budget {header['budget_s']:.0f} s"
             f"{' (smoke, CPU)' if header['smoke'] else ''}, started {header['started']}", "",
             f"modules: {header.get('modules', '?')}", "",
             "| package | status | seconds | measurement | value | unit |", "|---|---|---|---|---|---|"]
    for r in results:
        rows = r.get("rows") or []
        status = r["status"] + (f": {r['note']}" if r.get("note") else "")
        if not rows:
            lines.append(f"| {r['package']} | {status} | {r['seconds']:.0f} | | | |")
        for i, row in enumerate(rows):
            lead = f"| {r['package']} | {status} | {r['seconds']:.0f} " if i == 0 else "| | | "
            lines.append(f"{lead}| {row.get('what', '')} | {_fmt(row.get('value'))} | {row.get('unit', '')} |")
    return "\n".join(lines) + "\n"


def run_all(root: Path, out: Path, *, budget_s: float, smoke: bool = False, long: bool = False,
            pack: Path | None = None, packages: list[str] | None = None, allow_missing: bool = False,
            weights: dict[str, float] | None = None, python: str = sys.executable, log=print) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    data_root = None
    if pack is not None:
        data_root = materialize(pack, out / ".data")  # the graphs expanded; the rest linked
    env = _env(root, pack, data_root)
    names = packages or sorted(p.name for p in (root / "packages").iterdir() if (p / "pyproject.toml").is_file())
    # device and torch version come from the packages' reports: importing torch here would hold a CUDA context
    if pack is not None and (pack / "pylib").is_dir():
        sys.path.append(str(pack / "pylib"))  # as the benchmarks will see it (for the modules line only)
    header = {"device": "(from the first report)", "torch": "?", "modules": _modules(),
              "python": sys.version.split()[0], "budget_s": budget_s,
              "smoke": smoke, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    results: list[dict] = []
    deadline = time.monotonic() + budget_s
    for i, name in enumerate(names):
        script = root / "packages" / name / "bench" / "gpu.py"
        res = {"package": name, "seconds": 0.0, "rows": [], "note": None}
        if not script.is_file():
            res.update(status="missing", note="no bench/gpu.py")
        else:
            share = SMOKE_TIMEOUT_S if smoke else shares(deadline - time.monotonic(), names[i:], weights)
            if not smoke and share < STARTUP_S + 5:
                res.update(status="not run", note=f"budget spent ({share:.0f} s left for it)")
            else:
                cmd = [python, str(script), "--out", str(out), "--budget",
                       f"{max(share - STARTUP_S, 5.0) if not smoke else 25.0:.0f}"]
                cmd += ["--smoke"] if smoke else []
                cmd += ["--long"] if long else []
                if data_root is not None:
                    cmd += ["--data-root", str(data_root)]
                if pack is not None and (pack / "models").is_dir():
                    cmd += ["--models-root", str(pack / "models")]
                json_path = out / f"{name}.json"
                json_path.unlink(missing_ok=True)
                rc, secs, cpu = _run_one(cmd, env, root, out / "logs" / f"{name}.log", share)
                rep = {}
                if json_path.is_file():
                    try:
                        rep = json.loads(json_path.read_text())
                    except json.JSONDecodeError:
                        rep = {}
                res.update(seconds=secs, cpu_seconds=cpu, rows=rep.get("rows") or [])
                if rep.get("device") and header["torch"] == "?":
                    header.update(device=rep["device"], torch=rep.get("torch", "?"))
                if rc is None:
                    res.update(status="timed out", note=f"killed after {share:.0f} s; rows measured before kept")
                elif rc != 0:
                    tail = (out / "logs" / f"{name}.log").read_text(errors="replace").strip().splitlines()[-1:]
                    res.update(status="failed", note=f"exit {rc}: {tail[0][:160] if tail else ''}")
                    log("".join(f"    {ln}\n" for ln in (out / "logs" / f"{name}.log").read_text(
                        errors="replace").splitlines()[-8:]).rstrip())
                elif rep.get("skipped"):
                    res.update(status="skipped", note=rep["skipped"])
                elif not rep:
                    res.update(status="failed", note="exit 0 but no JSON written")
                else:
                    res.update(status="ok")
                if smoke and res["status"] == "ok" and cpu > 30:
                    res["note"] = f"smoke used {cpu:.0f} s of CPU (> 30 s)"
        results.append(res)
        log(f"gpubench: {name}: {res['status']}{' (' + res['note'] + ')' if res.get('note') else ''} "
            f"[{res['seconds']:.0f} s wall, {res.get('cpu_seconds', 0):.0f} s CPU]")
        (out / "summary.md").write_text(render_summary(results, header))
        (out / "summary.json").write_text(json.dumps({"header": header, "results": results}, indent=1))
    return results


def failed(results: list[dict], allow_missing: bool) -> list[str]:
    bad = {"failed", "timed out"} | (set() if allow_missing else {"missing"})
    return [r["package"] for r in results if r["status"] in bad]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tenfold.gpubench", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for <package>.json, logs/, summary.md")
    ap.add_argument("--budget", default="480", help="total seconds (default 480), or 'long' (--long, 3000 s)")
    ap.add_argument("--pack", default=None, help="a folder written by `make gpu-pack` (data root + teachers)")
    ap.add_argument("--smoke", action="store_true", help="every gpu.py --smoke on the CPU (CI)")
    ap.add_argument("--packages", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--allow-missing", action="store_true", help="a package without bench/gpu.py is not a failure")
    ap.add_argument("--root", default=None, help="repository root (default: found from the working folder)")
    a = ap.parse_args(argv)
    long = a.budget.strip().lower() == "long"
    try:
        budget = LONG_BUDGET_S if long else float(a.budget)
    except ValueError:
        print(f"gpubench: error: --budget must be seconds or 'long', got {a.budget!r}", file=sys.stderr)
        return 2
    pack = Path(a.pack).resolve() if a.pack else None
    if pack is not None and not pack.is_dir():
        print(f"gpubench: error: pack {pack} not found (make gpu-pack DEST={a.pack})", file=sys.stderr)
        return 2
    root = find_root(Path(a.root) if a.root else None)
    names = [p for p in a.packages.split(",") if p] or None
    results = run_all(root, Path(a.out).resolve(), budget_s=budget, smoke=a.smoke, long=long, pack=pack,
                      packages=names, allow_missing=a.allow_missing)
    bad = failed(results, a.allow_missing)
    print(f"gpubench: summary in {Path(a.out) / 'summary.md'}" + (f"; FAILED: {' '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
