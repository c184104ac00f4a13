"""bench/minimax_sweep.py's table: one line per setting with the FD curve and last/untrained; rows of another
shape in the same results.jsonl (an exploration script's) are skipped instead of crashing the write."""
import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "minimax_sweep.py"


def _module():
    spec = importlib.util.spec_from_file_location("minimax_sweep", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_table_lists_settings_and_skips_foreign_rows(tmp_path):
    rows = [{"tag": "explore", "argv": ["2e-4"], "500": 1.0},  # another tool's line: no "fd"
            {"tag": "r1", "seed": 1, "mode": "one", "d_norm": "bn", "lr_d": "2e-4", "overrides": ["optim.r1=10"],
             "fd": {"500": 1000.0, "1000": 250.0}, "untrained": 1250.0}]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = _module().write_table(tmp_path)
    lines = table.strip().splitlines()
    assert len(lines) == 3 and "explore" not in table
    assert lines[2] == ("| r1 (one-stage, bn D, lr_D 2e-4 optim.r1=10) | 1 | 1000.0 / 250.0 | 1250.0 | 0.20x |")
    assert (tmp_path / "table.md").read_text() == table
