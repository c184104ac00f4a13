"""bench/long_run.py (issue #20) end to end on synthetic shapes with a tiny ViT: results rows, resume, outputs."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "long_run.py"
ARGS = ["--device", "cpu", "--threads", "1", "--dataset", "shapes", "--train-per-class", "4",
        "--bank-per-class", "3", "--test-per-class", "2", "--batch", "8", "--embed-dim", "16", "--depth", "1",
        "--heads", "2", "--mlp-ratio", "2", "--patch", "8", "--hidden-dim", "16", "--out-dim", "8",
        "--evals", "2", "--seeds", "0", "--steps", "6"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("patchmix_long_run", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _curve(rows, arm):
    return [(r["step"], r["knn_top1"]) for r in rows if r["kind"] == "eval" and r["arm"] == arm]


def test_long_run_rows_resume_and_outputs(tmp_path, bench):
    out = tmp_path / "run"
    argv = ["--out", str(out), *ARGS]
    bench.main(argv, log=lambda *a: None)
    rows = _rows(out)
    arms = {r["arm"]: r for r in rows if r["kind"] == "arm"}
    assert set(arms) == {"nomix", "patchmix"}
    assert arms["nomix"]["steps"] == arms["patchmix"]["steps"] == 6  # equal optimizer steps
    for arm in arms:
        assert [s for s, _ in _curve(rows, arm)] == [3, 6]
        assert arms[arm]["final_knn"] == _curve(rows, arm)[-1][1]
        assert all(0.0 <= acc <= 100.0 for _, acc in _curve(rows, arm))
    assert [r["kind"] for r in rows].count("random") == 1
    # the arms really differ (mixing changes the training), and their checkpoints hold their objective
    assert bench.arm_config(bench.parse(argv), "nomix", 0, 6, "cpu").loss.objective == "src_only"
    for name in ("table.md", "table.json", "curves.png"):
        assert (out / name).stat().st_size > 0
    md = (out / "table.md").read_text()
    assert "| patchmix | 0 | 6 |" in md and "| nomix | 0 | 6 |" in md and "--steps 6" in md

    # a rerun skips the finished arm x seed rows
    n = len(rows)
    bench.main(argv, log=lambda *a: None)
    assert len(_rows(out)) == n

    # interrupted after the patchmix arm's first evaluation: resumes from its checkpoint, keeps the first point
    # and reproduces the uninterrupted curve exactly
    first = next(i for i, r in enumerate(rows) if r["kind"] == "eval" and r["arm"] == "patchmix")
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:first + 1]))
    cfg = bench.arm_config(bench.parse(argv), "patchmix", 0, 6, "cpu")
    shutil.rmtree(cfg.out)
    bench.pretrain(cfg, stop_at=3)
    bench.main(argv, log=lambda *a: None)
    again = _rows(out)
    assert len(again) == n and again[:first + 1] == rows[:first + 1]
    assert _curve(again, "patchmix") == _curve(rows, "patchmix")


def test_long_run_refuses_other_settings_in_the_same_out(tmp_path, bench):
    out = tmp_path / "run"
    out.mkdir()
    bench.check_setup(bench.parse(["--out", str(out), *ARGS]), out)
    bench.check_setup(bench.parse(["--out", str(out), *ARGS, "--seeds", "0", "1"]), out)  # allowed
    with pytest.raises(SystemExit, match="steps"):
        bench.check_setup(bench.parse(["--out", str(out), *ARGS, "--steps", "7"]), out)
