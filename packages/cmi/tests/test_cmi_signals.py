"""cmi-distill as a real CLI subprocess: SIGTERM saves at the next round boundary and stops (one line, exit
143); --resume then ends with the same weights, metrics.jsonl, summary.json and sample grids as an uninterrupted
run. In-process: a resume from an older checkpoint drops the records logged after it."""
from __future__ import annotations

import json
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch
from cmi.cli import distill_parser, load_distill_config
from cmi.train import Distiller
from tenfold import clitest

SCRIPT = shutil.which("cmi-distill", path=str(Path(sys.executable).parent))
# wall times and rates differ between any two runs
TIMING = ("synth_seconds", "kd_seconds", "synth_images_per_s", "kd_images_per_s")


def _args(teacher, *extra):
    # 3 epochs x 6 rounds (a round: 6 generator steps + 2 KD steps), evaluated (and pictured) after each epoch
    return ["--device", "cpu", "--seed", "3", f"teacher.path={teacher}", "student.arch=toynet8", "data.dataset=toy",
            "data.image_size=16", "data.test_subset=200", "synth.batch_size=8", "synth.g_steps=6", "synth.nz=16",
            "synth.ngf=8", "synth.bank_size=16", "synth.n_neg=8", "synth.head_dim=16", "kd.epochs=3",
            "kd.ep_steps=12", "kd.kd_steps=2", "kd.batch_size=16", "kd.lr=0.05", "eval_teacher=false", *extra]


@pytest.fixture(scope="module")
def reference(toy_teacher_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    clitest.run([SCRIPT, *_args(toy_teacher_file), f"--out={out}"])
    return out


@pytest.mark.skipif(SCRIPT is None, reason="cmi-distill is not installed")
def test_sigterm_saves_at_a_round_boundary_and_resume_is_exact(reference, toy_teacher_file, tmp_path):
    out = tmp_path / "run"
    cmd = [SCRIPT, *_args(toy_teacher_file), f"--out={out}"]
    rc, err = clitest.interrupt(cmd, at_step=2)
    assert rc == 128 + signal.SIGTERM, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGTERM: saved round ") and "last.pt" in last and "--resume" in last, err
    ck = torch.load(out / "last.pt", weights_only=False)
    stopped = ck["round"]
    assert 2 <= stopped < 18 and f"round {stopped}/18" in last
    assert not (out / "summary.json").exists()

    clitest.run([*cmd, "--resume"])
    ref, got = (torch.load(d / "last.pt", weights_only=False) for d in (reference, out))
    for part in ("student", "opt", "sched", "synth", "pool"):
        torch.testing.assert_close(got[part], ref[part], rtol=0, atol=0, msg=part)
    for k, v in torch.load(reference / "student_last.pt").items():
        assert torch.equal(v, torch.load(out / "student_last.pt")[k]), k
    assert clitest.records(out) == clitest.records(reference)  # each round once
    assert clitest.summary(out, drop=TIMING) == clitest.summary(reference, drop=TIMING)
    assert set(clitest.summary(out)) == set(clitest.summary(reference))
    # wall times are cumulative: the interrupted attempt's time up to its checkpoint is counted
    assert json.loads((out / "summary.json").read_text())["synth_seconds"] > ck["timing"]["synth_s"] > 0


def test_sample_grids_at_each_evaluation_and_at_the_end(reference):
    grids = sorted(p.name for p in (reference / "samples").glob("*.png"))
    assert grids == ["step_0000006.png", "step_0000012.png", "step_0000018.png"]
    assert (reference / "synthetic_grid.png").stat().st_size > 100


def test_resume_drops_records_logged_after_the_checkpoint(toy_teacher_file, tmp_path):
    def distiller():
        argv = [*_args(toy_teacher_file, "kd.epochs=1"), f"--out={tmp_path}"]
        return Distiller(load_distill_config(distill_parser().parse_intermixed_args(argv)), quiet=True)

    distiller().run(stop_after_round=2)
    older = (tmp_path / "last.pt").read_bytes()
    d = distiller()
    assert d.resume("auto")
    d.run(stop_after_round=3)
    # a crash after round 3 was logged but before its checkpoint: the run restarts from round 2
    (tmp_path / "last.pt").write_bytes(older)
    d = distiller()
    assert d.resume("auto") and d.round == 2
    assert [r["step"] for r in d.logger.read()] == [1, 2]
    d.run()
    assert [r["step"] for r in d.logger.read()] == [1, 2, 3, 4, 5, 6]



@pytest.fixture
def signal_handlers():
    """The CLI guard's SIGTERM/SIGUSR1 routing, in this process for one test."""
    with clitest.signal_routing():
        yield


def test_synthesize_stops_on_a_signal_after_the_round_and_resumes(signal_handlers, toy_teacher_file, tmp_path,
                                                                    monkeypatch):
    import os

    from cmi.config import SynthesizeConfig
    from cmi.synthesis import CMISynthesizer
    from cmi.synthesize import synthesize
    from tenfold import config as config_mod
    from tenfold.errors import RunStopped

    cfg = config_mod.load(SynthesizeConfig, None, [
        f"out={tmp_path}", "device=cpu", f"teacher.path={toy_teacher_file}", "data.dataset=toy", "data.image_size=16",
        "rounds=6", "synth.batch_size=8", "synth.g_steps=2", "synth.nz=16", "synth.ngf=8", "synth.bank_size=16",
        "synth.n_neg=8", "synth.head_dim=16"])
    real, calls = CMISynthesizer.synthesize, []

    def synthesize_round(self):
        calls.append(1)
        if len(calls) == 3:  # arrives during round 3: the round completes and is saved, then the run stops
            os.kill(os.getpid(), signal.SIGUSR1)
        return real(self)

    monkeypatch.setattr(CMISynthesizer, "synthesize", synthesize_round)
    with pytest.raises(RunStopped) as e:
        synthesize(cfg)
    assert e.value.message == f"stopped by SIGUSR1: saved round 3/6 to {tmp_path / 'last.pt'}; continue with " \
                              f"the same command plus --resume"
    assert torch.load(tmp_path / "last.pt", weights_only=False)["round"] == 3
    summary = synthesize(cfg, resume="auto")
    assert [r["step"] for r in clitest.records(tmp_path)] == list(range(1, 7))
    assert summary["images"] == 6 * 8 and (tmp_path / "synthetic_grid.png").is_file()
