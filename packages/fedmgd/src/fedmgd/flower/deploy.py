"""A Flower deployment on the loopback address: one SuperLink, one SuperNode per client (its partition id in
--node-config) and `flwr run` of the shipped app, every process started here and stopped here (its whole process
tree, in a finally). Used by `fedmgd-train engine=flower` and the slow test; the README shows the same commands
by hand, on one machine and across machines."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tenfold import config as config_mod
from tenfold.errors import ConfigError

from . import APP_DIR, require_flwr

__all__ = ["LocalDeployment", "run_flower"]

CONNECTION = "fedmgd-local"


def _bin(name: str) -> str:
    """The console script next to this Python (the venv's), so the SuperLink finds flower-superexec too."""
    p = Path(sys.executable).parent / name
    return str(p) if p.exists() else name


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d.name))
    return kids


def _tree(pid: int) -> list[int]:
    """pid and all its descendants (Linux /proc; elsewhere just pid)."""
    if not Path("/proc").is_dir():
        return [pid]
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


class LocalDeployment:
    """`with LocalDeployment(K, ...) as dep: dep.run(run_config)`; `dep.kill_node(k)` kills SuperNode k's tree."""

    def __init__(self, num_clients: int, workdir: Path, port_base: int = 19090, host: str = "127.0.0.1",
                 env: dict | None = None, node_overrides: dict[int, str] | None = None, log=print):
        self.K, self.dir, self.port, self.host, self.log = num_clients, Path(workdir), port_base, host, log
        self.dir.mkdir(parents=True, exist_ok=True)
        self.home = self.dir / "flwr_home"
        self.home.mkdir(exist_ok=True)
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "{host}:{port_base}"\ninsecure = true\n')
        self.env = dict(os.environ)
        self.env.update({"FLWR_HOME": str(self.home), "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                         f"{self.env.get('PATH', '')}", "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"})
        self.env.setdefault("OMP_NUM_THREADS", "1")
        self.env.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # a loopback run sends nothing off the machine
        self.env.update(env or {})
        self.node_overrides = node_overrides or {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.trees: dict[str, list[int]] = {}

    def _start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        fh = open(self.dir / f"{name}.log", "w")
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env, cwd=self.dir,
                             start_new_session=True)
        fh.close()
        self.procs[name] = p
        return p

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self, timeout: float = 90.0) -> None:
        for port in [self.port] + [self.port + 10 + k for k in range(self.K)]:
            if _port_open(port, self.host):
                raise ConfigError(f"port {port} on {self.host} is taken; choose another flower.port_base")
        self._start("superlink", [_bin("flower-superlink"), "--insecure", "--disable-runtime-dependency-installation",
                                  "--host", self.host, "--port", str(self.port)])
        t0 = time.monotonic()
        while not _port_open(self.port, self.host):
            if self.procs["superlink"].poll() is not None or time.monotonic() - t0 > timeout:
                raise ConfigError(f"the SuperLink did not start (see {self.dir / 'superlink.log'})")
            time.sleep(0.3)
        for k in range(self.K):
            nc = f"partition-id={k} num-partitions={self.K}"
            if self.node_overrides.get(k):
                nc += f" overrides={json.dumps(self.node_overrides[k])}"
            self._start(f"supernode{k}", [_bin("flower-supernode"), "--insecure", "--superlink",
                                          f"{self.host}:{self.port}", "--host", self.host,
                                          "--port", str(self.port + 10 + k), "--node-config", nc])

    def run(self, run_config: dict, timeout: float) -> int:
        """`flwr run` the shipped app with this run config (a TOML file), streaming its log to flwr_run.log."""
        rc_file = self.dir / "run_config.toml"
        rc_file.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in run_config.items()))
        p = self._start("flwr_run", [_bin("flwr"), "run", str(APP_DIR), CONNECTION, "--run-config", str(rc_file),
                                     "--stream"])
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.log(f"flwr run did not finish within {timeout:g}s; stopping the deployment")
            return 124

    def kill_node(self, k: int) -> None:
        self._kill(f"supernode{k}")

    def _kill(self, name: str) -> None:
        p = self.procs.get(name)
        if p is None:
            return
        pids = _tree(p.pid)  # collect first: detached children (SuperExec, ClientApps) are re-parented later
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self) -> None:
        for name in list(self.procs)[::-1]:
            self._kill(name)
        self.procs.clear()

    def log_text(self, name: str) -> str:
        f = self.dir / f"{name}.log"
        return f.read_text(errors="replace") if f.is_file() else ""


def run_flower(cfg, log=print) -> dict:
    """`fedmgd-train engine=flower`: the resolved config goes to <out>/config.yaml, a loopback deployment with
    K SuperNodes runs the shipped app on it, and the server's summary.json is returned."""
    require_flwr()
    from .protocol import check_flower_config

    check_flower_config(cfg)
    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg_file = out / "config.yaml"
    config_mod.save(cfg, cfg_file)
    (out / "error.txt").unlink(missing_ok=True)
    K = cfg.partition.num_clients
    log(f"engine=flower: starting a SuperLink on {cfg.flower.superlink}:{cfg.flower.port_base} and {K} SuperNodes "
        f"(logs in {out / 'flower'})")
    with LocalDeployment(K, out / "flower", cfg.flower.port_base, cfg.flower.superlink, log=log) as dep:
        rc = dep.run({"config": str(cfg_file), "overrides": "", "out": str(out)}, timeout=cfg.flower.max_run_s)
    err = out / "error.txt"
    if err.is_file():
        raise ConfigError(err.read_text().strip().splitlines()[0])
    summary = out / "summary.json"
    if rc != 0 or not summary.is_file():
        raise ConfigError(f"the Flower run failed (flwr run exit {rc}); see {out / 'flower' / 'flwr_run.log'}")
    res = json.loads(summary.read_text())
    log(f"fedmgd on Flower: final global test accuracy {res['final_test_acc']}; {summary}")
    return res
