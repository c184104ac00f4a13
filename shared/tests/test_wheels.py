"""Each package's wheel ships its configs: build the wheels, install them into a fresh venv that reuses the CI
venv's torch & co. (a .pth line, since the system Python has no torch), and run the CLIs from a directory
outside the repository: `<p>-train --config demo --help`, `--list-configs`, and one shipped demo by name."""
from __future__ import annotations

import configparser
import json
import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())
pytestmark = pytest.mark.slow  # eleven wheel builds and a venv: a few minutes on a loaded 2-core machine


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheels")
    wheels = base / "dist"
    for d in [ROOT / "shared"] + [ROOT / "packages" / p for p in PACKAGES]:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(wheels), str(d)], check=True, capture_output=True, timeout=300)
    vdir = base / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=True).create(vdir)
    py = vdir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # torch, numpy, yaml, ... from the CI venv, appended after the new venv's own site-packages
    Path(purelib, "ci_venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                    *map(str, sorted(wheels.glob("*.whl")))], check=True, capture_output=True, timeout=300)
    outside = base / "elsewhere"
    outside.mkdir()
    return {"bin": vdir / "bin", "wheels": wheels, "cwd": outside}


def _train_script(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith("entry_points.txt"))
        cp = configparser.ConfigParser()
        cp.read_string(z.read(name).decode())
    scripts = list(cp["console_scripts"])
    return next(s for s in scripts if s.endswith(("-train", "-distill", "-zoo")))


def _run(env, *cmd, timeout=120):
    e = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    e["OMP_NUM_THREADS"] = "1"
    return subprocess.run([str(env["bin"] / cmd[0]), *cmd[1:]], cwd=env["cwd"], env=e, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("pkg", PACKAGES)
def test_wheel_ships_configs_and_finds_them_by_name(env, pkg):
    wheel = next(env["wheels"].glob(f"tenfold_{pkg}-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        assert any(n.endswith(f"share/tenfold/{pkg}/configs/demo.yaml") for n in z.namelist())
    script = _train_script(wheel)
    r = _run(env, script, "--config", "demo", "--help")
    assert r.returncode == 0 and "usage:" in r.stdout, r.stderr[-1000:]
    r = _run(env, script, "--list-configs")
    assert r.returncode == 0 and any(ln.startswith("demo ") for ln in r.stdout.splitlines()), r.stderr[-1000:]
    r = _run(env, "python", "-c", f"import {pkg}; print({pkg}.__file__)")
    assert str(ROOT) not in r.stdout, "the package came from the repository, not from the wheel"


def test_a_shipped_demo_runs_by_name_outside_the_repo(env):
    r = _run(env, "osgan-train", "--config", "demo", "--out", "run", "max_steps=30", "eval_samples=0",
             "data.num_samples=2000", timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["steps"] == 30
    assert (env["cwd"] / "run" / "curves.png").is_file()
