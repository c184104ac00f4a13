"""cmi-distill as a real CLI subprocess: SIGTERM saves at the next round boundary and stops (one line, exit
143); --resume then ends with the same weights, metrics.jsonl, summary.json and sample grids as an uninterrupted
run. In-process: a resume from an older checkpoint drops the records logged after it."""
from __future__ import annotations

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
    stopped = torch.load(out / "last.pt", weights_only=False)["round"]
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


SYNTH = shutil.which("cmi-synthesize", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(SYNTH is None, reason="cmi-synthesize is not installed")
def test_synthesize_stops_on_sigterm_after_a_round_and_resumes(toy_teacher_file, tmp_path):
    out = tmp_path / "syn"
    cmd = [SYNTH, "--device", "cpu", f"teacher.path={toy_teacher_file}", "data.dataset=toy", "data.image_size=16",
           "rounds=16", "synth.batch_size=8", "synth.g_steps=6", "synth.nz=16", "synth.ngf=8", "synth.bank_size=16",
           "synth.n_neg=8", "synth.head_dim=16", f"--out={out}"]
    rc, err = clitest.interrupt(cmd, at_step=2, sig=signal.SIGUSR1)
    assert rc == 128 + signal.SIGUSR1, err
    stopped = torch.load(out / "last.pt", weights_only=False)["round"]
    assert err.strip().splitlines()[-1].startswith(f"stopped by SIGUSR1: saved round {stopped}/16 to "), err
    assert 2 <= stopped < 16 and not (out / "pool.npz").exists()
    clitest.run([*cmd, "--resume"])
    assert [r["step"] for r in clitest.records(out)] == list(range(1, 17))
    assert clitest.summary(out)["images"] == 16 * 8 and (out / "synthetic_grid.png").is_file()
