"""The Trainer under SIGTERM/SIGUSR1, a resume that drops records logged after the checkpoint, accepted
config changes that really reach the optimizer, cumulative wall time, and plain progress lines."""
from __future__ import annotations

import dataclasses
import os
import signal

import pytest
import torch
from tenfold import checkpoint, clitest, meters, signals
from tenfold.errors import RunStopped
from test_loop import TinyCfg, _build


@pytest.fixture(autouse=True)
def _handlers():
    with clitest.signal_routing():
        yield


@pytest.mark.parametrize("sig", signals.SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_saves_at_the_next_step_boundary_and_resume_is_exact(tmp_path, sig):
    cfg = TinyCfg()
    t1, m1, s1 = _build(tmp_path / "a", cfg)
    t1.run(s1)
    t2, _, s2 = _build(tmp_path / "b", cfg)

    def step(batch, st):
        if st.step == 6:  # arrives in the middle of step 7: that step completes, then the run stops
            os.kill(os.getpid(), sig)
        return s2(batch, st)

    with pytest.raises(RunStopped) as e:
        t2.run(step)
    assert e.value.signum == sig and "saved step 7/12" in e.value.message and "--resume" in e.value.message
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["loop"]["step"] == 7
    t3, m3, s3 = _build(tmp_path / "b", cfg)
    t3.maybe_resume("auto")
    t3.run(s3)
    for a, b in zip(m1.state_dict().values(), m3.state_dict().values()):
        assert torch.equal(a, b)
    assert [r["step"] for r in t3.logger.read()] == list(range(1, 13))
    assert signals.pending() is None


def test_a_signal_outside_a_polling_loop_stops_at_once():
    with pytest.raises(RunStopped) as e:
        os.kill(os.getpid(), signal.SIGTERM)
    assert "nothing new was saved" in e.value.message


def test_resume_drops_records_after_the_checkpoint_and_keeps_wall_time(tmp_path):
    cfg = TinyCfg()
    t1, _, s1 = _build(tmp_path / "a", cfg)
    t1.run(s1, stop_at=10)  # last periodic checkpoint: step 8 (ckpt_every=4); the stop_at save is step 10
    ck8 = tmp_path / "a" / "ck8.pt"
    t1b, _, s1b = _build(tmp_path / "x", cfg)
    t1b.run(s1b, stop_at=8)
    os.replace(tmp_path / "x" / "last.pt", ck8)
    elapsed8 = torch.load(ck8, weights_only=False)["loop"]["elapsed_s"]
    assert elapsed8 > 0
    t2, _, s2 = _build(tmp_path / "a", cfg)
    t2.maybe_resume(ck8)  # like a crash after step 10 whose last checkpoint is step 8
    assert [r["step"] for r in t2.logger.read()] == list(range(1, 9))
    t2.run(s2)
    assert [r["step"] for r in t2.logger.read()] == list(range(1, 13))
    assert t2.elapsed_s >= elapsed8


def test_accepted_lr_change_reaches_the_optimizer(tmp_path):
    cfg = TinyCfg()
    t1, _, s1 = _build(tmp_path / "a", cfg)
    t1.run(s1, stop_at=6)
    lr6 = t1.stateful["opt"].param_groups[0]["lr"]
    t2, _, s2 = _build(tmp_path / "a", dataclasses.replace(cfg, lr=0.5))
    t2.maybe_resume("auto")
    g = t2.stateful["opt"].param_groups[0]
    assert g["initial_lr"] == 0.5 and g["lr"] == pytest.approx(lr6 * 0.5 / 0.05)  # schedule position kept
    assert t2.stateful["sched"].base_lrs == [0.5]
    assert g["momentum"] == 0.9 and len(t2.stateful["opt"].state) > 0  # moments restored
    # an unchanged config restores the optimizer exactly as saved
    t3, _, _ = _build(tmp_path / "a", cfg)
    t3.maybe_resume("auto")
    assert t3.stateful["opt"].param_groups[0]["lr"] == lr6


def test_load_keeping_hparams_without_scheduler():
    p = torch.nn.Parameter(torch.ones(2))
    a = torch.optim.Adam([p], lr=0.1, weight_decay=0.0)
    p.grad = torch.ones(2)
    a.step()
    b = torch.optim.Adam([p], lr=0.01, weight_decay=0.1)
    checkpoint.load_keeping_hparams(b, a.state_dict())
    assert b.param_groups[0]["lr"] == 0.01 and b.param_groups[0]["weight_decay"] == 0.1
    assert torch.equal(b.state[p]["exp_avg"], a.state[p]["exp_avg"])


def test_plain_progress_prints_at_the_interval(monkeypatch, capsys):
    monkeypatch.delenv("TENFOLD_QUIET", raising=False)  # CI sets it; it silences progress lines
    monkeypatch.setenv("TENFOLD_PROGRESS_EVERY", "0")
    bar = meters.progress(total=4, desc="demo")
    assert isinstance(bar, meters.PlainProgress)  # pytest's stderr is not a terminal
    bar.set_postfix({"loss": 1.234567, "samples_per_s": 100.0})
    for _ in range(4):
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("demo: step 4/4") and "loss=1.235" in lines[-1]
    assert "steps/s" in lines[-1] and "ETA 0:00:00" in lines[-1]
    monkeypatch.setenv("TENFOLD_PROGRESS_EVERY", "3600")
    bar = meters.progress(total=4, desc="demo")
    for _ in range(4):
        bar.update(1)
    bar.close()
    assert capsys.readouterr().err == ""


def test_plain_progress_line_at_each_evaluation(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TENFOLD_QUIET", raising=False)  # CI sets it; it silences progress lines
    monkeypatch.setenv("TENFOLD_PROGRESS_EVERY", "3600")  # no interval lines: only evaluations print
    t, _, s = _build(tmp_path / "a", TinyCfg())

    def on_step_end(state, metrics):
        if state.step % 6 == 0:
            t.logger.log(state.step, test_acc=0.5)

    t.run(s, on_step_end=on_step_end)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "evaluation" in ln]
    assert len(lines) == 2 and "step 6/12" in lines[0] and "test_acc=0.5" in lines[0]


def test_keep_hparams_on_load_covers_loops_of_their_own():
    p = torch.nn.Parameter(torch.ones(2))
    a = torch.optim.Adam([p], lr=0.1)
    sa = torch.optim.lr_scheduler.LambdaLR(a, lambda s: 0.5 ** s)
    p.grad = torch.ones(2)
    a.step()
    sa.step()  # lr 0.05
    state_a, state_s = a.state_dict(), sa.state_dict()
    b = torch.optim.Adam([p], lr=1.0)
    sb = torch.optim.lr_scheduler.LambdaLR(b, lambda s: 0.5 ** s)
    checkpoint.keep_hparams_on_load(True)
    try:
        b.load_state_dict(state_a)
        sb.load_state_dict(state_s)
    finally:
        checkpoint.keep_hparams_on_load(False)
    assert b.param_groups[0]["lr"] == pytest.approx(0.5) and sb.base_lrs == [1.0] and sb.last_epoch == 1
    c = torch.optim.Adam([p], lr=1.0)
    c.load_state_dict(state_a)  # hook removed: the checkpoint's lr again
    assert c.param_groups[0]["lr"] == pytest.approx(0.05)
