"""After an interruption and resume, metrics.jsonl and summary.json equal an uninterrupted run's (timing aside):
records logged after the last checkpoint are dropped, Stage-1 summary fields survive a Stage-2 resume."""
import json
import os
import shutil

from fedmgd.config import FedMGDConfig
from fedmgd.train import run
from tenfold.config import load
from test_fedmgd_train import TINY


def _timing(k: str) -> bool:
    return k == "time" or k.endswith(("_time_s", "_per_s", "_s")) or k in ("seconds", "device")


def _records(out):
    return [{k: v for k, v in json.loads(x).items() if not _timing(k)} for x in open(out / "metrics.jsonl")]


def _summary(out):
    return {k: v for k, v in json.loads((out / "summary.json").read_text()).items() if not _timing(k)}


def test_interrupted_and_resumed_run_leaves_the_same_record(tmp_path):
    def cfg(out):
        return load(FedMGDConfig, None, TINY + ["fl.rounds=4", "fl.ckpt_every=2", f"out={tmp_path / out}"])

    quiet = lambda *a: None  # noqa: E731
    run(cfg("a"), log=quiet)
    b = cfg("b")
    run(b, stop_at=("stage2", 2), log=quiet)
    shutil.copy(tmp_path / "b" / "last.pt", tmp_path / "ck2.pt")
    run(b, resume="auto", stop_at=("stage2", 3), log=quiet)  # logs round 3 ...
    os.replace(tmp_path / "ck2.pt", tmp_path / "b" / "last.pt")  # ... then "crashes" back to round 2's checkpoint
    assert [r["step"] for r in _records(tmp_path / "b") if r["stage"] == 2] == [1, 2, 3]
    run(b, resume="auto", log=quiet)
    assert _records(tmp_path / "b") == _records(tmp_path / "a")
    sa, sb = _summary(tmp_path / "a"), _summary(tmp_path / "b")
    assert {"stage1_iters", "routing_owner_agreement"} <= set(sb)
    assert sb == sa
    full = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert "stage1_time_s" in full and full["total_time_s"] >= full["stage2_time_s"]
