"""netgraft-train as a real CLI subprocess: SIGTERM saves at the next epoch boundary (a few-shot epoch is a few
steps) and stops with one line and exit 143; --resume ends with the same weights, metrics.jsonl and summary.json
as an uninterrupted run."""
from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch
from tenfold import clitest
from test_netgraft_train import tiny_overrides

SCRIPT = shutil.which("netgraft-train", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(SCRIPT is None, reason="netgraft-train is not installed")
def test_sigterm_saves_at_an_epoch_boundary_and_resume_is_exact(mini_teacher_path, tmp_path):
    def cmd(out):
        ov = [o for o in tiny_overrides(mini_teacher_path, out) if not o.startswith(("out=", "stage"))]
        # 120 epochs of 3 steps, so the signal lands well inside the run; checkpoints every 10 epochs
        return [SCRIPT, *ov, "stage1.epochs=[20,20,20]", "stage2.epochs=[20,40]", "eval_every=20",
                f"--out={out}"]

    ref, out = tmp_path / "ref", tmp_path / "run"
    clitest.run(cmd(ref))
    rc, err = clitest.interrupt(cmd(out), at_step=25)
    assert rc == 128 + signal.SIGTERM, err
    ck = torch.load(out / "last.pt", weights_only=False)
    done = sum((20, 20, 20, 20, 40)[:ck["phase"]]) + ck["epoch"]
    last = err.strip().splitlines()[-1]
    assert last == f"stopped by SIGTERM: saved epoch {done}/120 to {out / 'last.pt'}; continue with the same " \
                   f"command plus --resume", err
    assert 25 <= done < 120, done

    clitest.run([*cmd(out), "--resume"])
    a, b = (torch.load(d / "student.pt", weights_only=False)["student"] for d in (ref, out))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert clitest.records(out) == clitest.records(ref)  # each epoch once
    assert clitest.summary(out) == clitest.summary(ref)
