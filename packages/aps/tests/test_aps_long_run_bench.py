"""bench/long_run.py (issue #20) end to end on synthetic shapes with a tiny ViT: results rows, resume, outputs."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "long_run.py"
ARGS = ["--device", "cpu", "--threads", "1", "--dataset", "synthetic", "--train-per-class", "4",
        "--bank-per-class", "3", "--test-per-class", "2", "--batch", "8", "--embed-dim", "16", "--depth", "1",
        "--heads", "2", "--patch", "8", "--hidden-dim", "16", "--out-dim", "8", "--evals", "2", "--seeds", "0"]


def _bench():
    spec = importlib.util.spec_from_file_location("aps_long_run", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def bench():
    return _bench()


def test_long_run_rows_resume_and_outputs(tmp_path, bench):
    out = tmp_path / "run"
    bench.main(["--out", str(out), "--steps", "8", *ARGS], log=lambda *a: None)
    rows = _rows(out)
    arms = {r["arm"]: r for r in rows if r["kind"] == "arm"}
    assert set(arms) == {"full", "aps", "aps_wall"}
    assert arms["full"]["steps"] == arms["aps"]["steps"] == 8  # equal optimizer steps
    assert arms["full"]["batches"] == 8 and arms["aps"]["batches"] == 2  # K = 4 steps per APS batch
    # equal wall clock: the APS steps the baseline's training time buys at APS's measured cost (whole batches)
    want = round(arms["full"]["train_s"] / arms["aps"]["s_per_opt_step"]) // 4 * 4
    assert arms["aps_wall"]["steps"] == max(4, want)
    evals = [r for r in rows if r["kind"] == "eval"]
    assert sorted(r["step"] for r in evals if r["arm"] == "full") == [4, 8]
    assert sorted(r["step"] for r in evals if r["arm"] == "aps") == [4, 8]
    for r in evals:
        assert 0.0 <= r["knn_top1"] <= 100.0 and r["train_s"] > 0
    # the arm's final kNN is its last evaluation; train seconds grow along the curve
    full_curve = sorted((r for r in evals if r["arm"] == "full"), key=lambda r: r["step"])
    assert arms["full"]["final_knn"] == full_curve[-1]["knn_top1"]
    assert full_curve[0]["train_s"] < full_curve[1]["train_s"]
    assert [r["kind"] for r in rows].count("random") == 1
    for name in ("table.md", "table.json", "curves.png"):
        assert (out / name).stat().st_size > 0
    md = (out / "table.md").read_text()
    assert "| aps_wall | 0 |" in md and "--steps 8" in md
    # rerun: every arm x seed is finished, nothing is trained or appended again
    n = len(rows)
    bench.main(["--out", str(out), "--steps", "8", *ARGS], log=lambda *a: None)
    assert len(_rows(out)) == n


def test_long_run_resumes_inside_an_arm(tmp_path, bench):
    """An arm interrupted after its first evaluation continues from its checkpoint: the first point is kept, only
    the missing ones are added, and they equal those of the uninterrupted run (exact resume)."""
    import shutil

    out = tmp_path / "run"
    argv = ["--out", str(out), "--steps", "8", "--no-wall-arm", *ARGS]
    bench.main(argv, log=lambda *x: None)
    whole = _rows(out)
    # interrupt: keep the rows up to the full arm's first evaluation, rewind its checkpoint to that point
    first = next(i for i, r in enumerate(whole) if r["kind"] == "eval" and r["arm"] == "full")
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in whole[:first + 1]))
    cfg = bench.arm_config(bench.parse(argv), "full", 0, 8, "cpu")
    shutil.rmtree(cfg.out)
    shutil.rmtree(out / "aps-s0")
    bench.run(cfg, stop_at=4)
    bench.main(argv, log=lambda *x: None)
    again = _rows(out)
    assert len(again) == len(whole)
    assert again[:first + 1] == whole[:first + 1]  # the first point is not recomputed

    def curve(rows, arm):
        return [(r["step"], r["knn_top1"]) for r in rows if r["kind"] == "eval" and r["arm"] == arm]

    for arm in ("full", "aps"):
        assert curve(again, arm) == curve(whole, arm)
    assert {r["arm"] for r in again if r["kind"] == "arm"} == {"full", "aps"}


def test_long_run_refuses_other_settings_in_the_same_out(tmp_path, bench):
    out = tmp_path / "run"
    out.mkdir()
    bench.check_setup(bench.parse(["--out", str(out), "--steps", "8", *ARGS]), out)
    bench.check_setup(bench.parse(["--out", str(out), "--steps", "8", *ARGS, "--threads", "2"]), out)  # allowed
    with pytest.raises(SystemExit, match="depth"):
        bench.check_setup(bench.parse(["--out", str(out), "--steps", "8", *ARGS, "--depth", "2"]), out)
