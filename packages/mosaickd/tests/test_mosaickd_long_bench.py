"""bench/ood_kd_long.py: finished arm folders are reused (no training), and the table, results and curves it writes
come from them, with MosaicKD's outer iterations counted as 4 student steps each."""
import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ood_kd_long.py"


@pytest.fixture
def bench():
    spec = importlib.util.spec_from_file_location("ood_kd_long", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_run(d: Path, arm: str, seed: int, last: float):
    d.mkdir(parents=True)
    per = 1 if arm == "kd" else 4
    recs = [{"step": 0, "loss": 1.0}] + [{"step": s // per, "split": "test", "top1": last - (2000 - s) / 100}
                                        for s in (1000, 2000)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (d / "summary.json").write_text(json.dumps({"last_top1": last, "best_top1": last, "student_steps": 2000,
                                                "wall_s": 1.0}))


def test_reuses_finished_arms_and_writes_table_and_curves(bench, tmp_path, monkeypatch):
    vals = {("kd", 0): 40.0, ("mosaickd", 0): 45.0, ("kd", 1): 42.0, ("mosaickd", 1): 41.0}
    for (arm, seed), v in vals.items():
        _fake_run(tmp_path / f"{arm}-s{seed}", arm, seed, v)
    monkeypatch.setattr(bench, "common", lambda *a: pytest.fail("a finished arm was run again"))
    assert bench.main(["--out", str(tmp_path), "--seeds", "0", "1"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {(r["arm"], r["seed"]): r["last_top1"] for r in rows} == vals
    mk0 = next(r for r in rows if r["arm"] == "mosaickd" and r["seed"] == 0)
    assert mk0["curve"] == [[1000, 35.0], [2000, 45.0]]  # outer iterations 250, 500 -> student steps
    table = (tmp_path / "table.md").read_text()
    assert "| 0 | 40.00 | 45.00 | +5.00 |" in table and "| 1 | 42.00 | 41.00 | -1.00 |" in table
    assert "| mean | 41.00 | 43.00 | +2.00 |" in table
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_refuses_a_step_count_the_arms_cannot_share(bench, tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--out", str(tmp_path), "--steps", "1002"])
