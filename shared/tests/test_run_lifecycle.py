"""A real training CLI (osgan-train on the 2-D ring) through interruption by SIGTERM, resume and config changes:
the resumed run must end with the same weights, metrics.jsonl and summary.json as an uninterrupted one."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = shutil.which("osgan-train", path=str(Path(sys.executable).parent))
pytestmark = [pytest.mark.slow,  # three real CLI runs of ~20 s start-up each on a loaded 2-core machine
              pytest.mark.skipif(SCRIPT is None, reason="tenfold-onestage-gan is not installed")]
REPO = Path(__file__).resolve().parents[2]
ARGS = ["--config", str(REPO / "packages/onestage_gan/configs/demo.yaml"), "batch_size=64", "max_steps=1500",
        "ckpt_every=400", "log_every=50", "eval_samples=0", "data.num_samples=4000"]
TIMING = {"time", "samples_per_s", "step_s", "step_cpu_s"}


def _env(every="0"):
    # CI sets TENFOLD_QUIET=1, which silences progress lines: these tests read them
    env = {k: v for k, v in os.environ.items() if k != "TENFOLD_QUIET"}
    return {**env, "OMP_NUM_THREADS": "1", "TENFOLD_PROGRESS_EVERY": every}


def _run(out, *extra, check=True):
    r = subprocess.run([SCRIPT, *ARGS, f"--out={out}", *extra], env=_env("1000"), capture_output=True, text=True,
                       timeout=240)
    if check:
        assert r.returncode == 0, r.stderr[-2000:]
    return r


def _weights(out):
    ck = torch.load(Path(out) / "last.pt", map_location="cpu", weights_only=False)
    return ck["state"]


def _records(out):
    recs = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in recs]


def _summary(out):
    return {k: v for k, v in json.loads((Path(out) / "summary.json").read_text()).items() if k not in TIMING}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    _run(out)
    return out


def test_sigterm_saves_at_a_step_boundary_and_resume_is_exact(reference, tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen([SCRIPT, *ARGS, f"--out={out}"], env=_env("0"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    # plain progress lines (stderr is a pipe) show that training runs; interrupt after a few hundred steps
    for line in p.stderr:
        if " step " in line and int(line.split(" step ")[1].split("/")[0]) >= 450:
            p.send_signal(signal.SIGTERM)
            break
    rest = p.stderr.read()
    p.wait(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, rest
    last = rest.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGTERM: saved step ") and "--resume" in last and "last.pt" in last, rest
    stopped = _weights(out)
    assert 450 <= torch.load(out / "last.pt", weights_only=False)["loop"]["step"] < 1500

    r = _run(out, "--resume")
    assert "resumed" in (out / "config.yaml").read_text()
    ref, got = _weights(reference), _weights(out)
    for part in ("G", "D"):
        for k, v in ref[part].items():
            assert torch.equal(v, got[part][k]), (part, k)
    assert not torch.equal(stopped["G"]["net.0.weight"] if "net.0.weight" in stopped["G"] else
                           next(iter(stopped["G"].values())), next(iter(got["G"].values())))
    assert _records(out) == _records(reference)  # each step once
    assert _summary(out) == _summary(reference)
    assert r.returncode == 0


def test_resume_with_changed_config(reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    # a step limit takes effect on resume: allowed and recorded
    r = _run(out, "--resume", "max_steps=1600", "log_every=100")
    assert "max_steps: 1500 -> 1600" in r.stdout
    assert torch.load(out / "last.pt", weights_only=False)["loop"]["step"] == 1600
    assert "max_steps: 1500 -> 1600" in (out / "config.yaml").read_text()
    # a learning rate does not, unless accepted
    r = _run(out, "--resume", "max_steps=1700", "optim.lr_g=0.5", check=False)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "optim.lr_g: 0.001 -> 0.5" in err[0] and "--accept-config-change" in err[0]
    _run(out, "--resume", "max_steps=1700", "optim.lr_g=0.5", "--accept-config-change")
    ck = torch.load(out / "last.pt", weights_only=False)
    g = ck["state"]["opt_g"]["param_groups"][0]
    assert g["initial_lr"] == 0.5 and g["lr"] == pytest.approx(0.5)  # really in the optimizer
    assert ck["state"]["opt_d"]["param_groups"][0]["lr"] == pytest.approx(1e-3)
    assert ck["config"]["optim"]["lr_g"] == 0.5
    hist = [ln for ln in (out / "config.yaml").read_text().splitlines() if ln.startswith("# history:")]
    assert len(hist) == 2 and "optim.lr_g: 0.001 -> 0.5" in hist[-1]


def test_plain_progress_lines_when_not_a_terminal(tmp_path):
    r = subprocess.run([SCRIPT, *ARGS, "max_steps=200", f"--out={tmp_path / 'run'}"], env=_env("0"),
                       capture_output=True, text=True, timeout=240)
    lines = [ln for ln in r.stderr.splitlines() if " step " in ln]
    assert r.returncode == 0 and len(lines) >= 5, r.stderr[-1000:]
    assert "/200" in lines[-1] and "loss=" in lines[-1] and "steps/s" in lines[-1]
    assert any("ETA" in ln for ln in lines)
