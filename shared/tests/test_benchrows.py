"""tenfold.benchrows: the append-only, resumable results file of a long bench (rows, find, setup stored once and a
mismatch refused), evenly spaced evaluation points, the kNN-curve plot and the machine label."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tenfold import benchrows
from tenfold.benchrows import append_row, check_setup, cpu_name, eval_points, find, machine, read_rows


def test_rows_are_appended_in_order_and_read_back(tmp_path):
    assert read_rows(tmp_path) == []  # no file yet
    a = append_row(tmp_path, {"kind": "eval", "step": 1, "knn_top1": 10.5})
    assert a == {"kind": "eval", "step": 1, "knn_top1": 10.5}
    append_row(tmp_path, {"kind": "eval", "step": 2, "knn_top1": 12.0})
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]  # one JSON row per line, appended
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write("\n")  # a blank line (e.g. a hand edit) is skipped
    append_row(tmp_path, {"kind": "arm", "final_knn": 12.0})
    assert [r["kind"] for r in read_rows(tmp_path)] == ["eval", "eval", "arm"]
    assert read_rows(str(tmp_path)) == read_rows(tmp_path)  # str or Path


def test_find_returns_the_last_matching_row():
    rows = [{"kind": "eval", "arm": "a", "seed": 0, "v": 1}, {"kind": "eval", "arm": "b", "seed": 0, "v": 2},
            {"kind": "eval", "arm": "a", "seed": 0, "v": 3}, {"kind": "random", "seed": 1, "v": 4}]
    assert find(rows, kind="eval", arm="a", seed=0)["v"] == 3  # the last of two
    assert find(rows, arm="b")["v"] == 2
    assert find(rows, kind="random", seed=1)["v"] == 4
    assert find(rows, kind="random", seed=0) is None
    assert find(rows, kind="arm") is None
    assert find([], kind="eval") is None
    assert find(rows)["v"] == 4  # no keys: the last row


def test_setup_is_stored_once_and_a_mismatch_is_refused(tmp_path):
    setup = {"dataset": "cifar10", "depth": 2, "lr": 1e-3, "steps": 0}
    check_setup(tmp_path, setup)
    check_setup(tmp_path, dict(setup))  # the same setup again: accepted, not stored twice
    assert read_rows(tmp_path) == [{"kind": "setup", **setup}]
    append_row(tmp_path, {"kind": "eval", "step": 1})
    check_setup(tmp_path, setup)  # found among other rows
    with pytest.raises(SystemExit) as e:
        check_setup(tmp_path, {**setup, "depth": 3, "lr": 2e-3})
    msg = str(e.value)
    assert str(tmp_path) in msg and "use another --out" in msg
    assert "'depth': (2, 3)" in msg and "'lr': (0.001, 0.002)" in msg  # (stored, given) for each differing key
    assert "dataset" not in msg and "steps" not in msg  # only the keys that differ
    with pytest.raises(SystemExit, match="'tau': \\(None, 0.2\\)"):
        check_setup(tmp_path, {**setup, "tau": 0.2})  # a key the stored setup lacks is a mismatch too
    assert [r["kind"] for r in read_rows(tmp_path)] == ["setup", "eval"]  # refusals write nothing


def test_eval_points_are_evenly_spaced_and_end_at_n():
    assert eval_points(8, 2) == [4, 8]
    assert eval_points(6, 2) == [3, 6]
    assert eval_points(10, 4) == [3, 5, 8, 10]
    assert eval_points(100, 8) == [13, 25, 38, 50, 63, 75, 88, 100]
    assert eval_points(3, 8) == [1, 2, 3]  # fewer points than evaluations: each step once
    assert eval_points(1, 5) == [1]
    for n, k in ((7, 3), (1000, 8), (50, 50)):
        pts = eval_points(n, k)
        assert pts[-1] == n and len(pts) == k and pts == sorted(set(pts))


def test_cpu_name_reads_cpuinfo_and_falls_back_to_platform(tmp_path, monkeypatch):
    assert cpu_name().strip()  # non-empty on this machine
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Fake CPU 9000 @ 1.0GHz\nflags\t: a b\n"
                    "processor\t: 1\nmodel name\t: Other\n")
    monkeypatch.setattr(benchrows, "CPUINFO", info)
    assert cpu_name() == "Fake CPU 9000 @ 1.0GHz"  # the first model name, stripped
    monkeypatch.setattr(benchrows, "CPUINFO", tmp_path / "missing")
    monkeypatch.setattr(benchrows.platform, "processor", lambda: "")
    monkeypatch.setattr(benchrows.platform, "machine", lambda: "fakearch")
    assert cpu_name() == "fakearch"
    info.write_text("processor\t: 0\n")  # no model name line (some ARM kernels)
    monkeypatch.setattr(benchrows, "CPUINFO", info)
    assert cpu_name() == "fakearch"


def test_machine_label():
    import torch

    label = machine()
    assert label.startswith(cpu_name() + ", ") and "logical CPUs" in label
    assert label.endswith(f"torch {torch.__version__}")
    if torch.cuda.is_available():
        assert torch.cuda.get_device_name() in label


def test_import_needs_neither_torch_nor_matplotlib():
    code = ("import sys, tenfold.benchrows; bad = [m for m in ('torch', 'matplotlib') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_plot_knn_curves_writes_a_png(tmp_path):
    rows = [{"kind": "random", "seed": 0, "knn_top1": 10.0},
            *({"kind": "eval", "arm": arm, "seed": 0, "step": s, "train_s": 2.0 * s, "knn_top1": 10.0 + s}
              for arm in ("base", "method") for s in (1, 2)),
            {"kind": "arm", "arm": "base", "seed": 0, "final_knn": 12.0}]
    path = tmp_path / "curves.png"
    benchrows.plot_knn_curves(path, rows, ("base", "method", "unused"),
                              {"base": "tab:blue", "method": "tab:red", "unused": "k"}, "title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_summary_collects_the_rows_into_table_json(tmp_path):
    rows = [{"kind": "setup", "depth": 2}, {"kind": "random", "seed": 0, "knn_top1": 10.0},
            {"kind": "calibration", "steps": 8}, {"kind": "eval", "arm": "a", "seed": 0, "step": 8, "knn_top1": 20.0},
            {"kind": "arm", "arm": "a", "seed": 0, "final_knn": 20.0}, {"kind": "random", "seed": 1, "knn_top1": 11.0},
            {"kind": "arm", "arm": "b", "seed": 0, "final_knn": 21.0}]
    t = benchrows.write_summary(tmp_path, rows, "python x.py --steps 8", 1, "cpu", [0, 1])
    assert list(t) == ["command", "machine", "threads", "device", "date", "seeds", "random_init", "calibration",
                       "arms"]
    assert t["random_init"] == {0: 10.0, 1: 11.0} and t["calibration"] == {"kind": "calibration", "steps": 8}
    assert [r["arm"] for r in t["arms"]] == ["a", "b"] and t["machine"] == machine()
    on_disk = json.loads((tmp_path / "table.json").read_text())
    assert on_disk["random_init"] == {"0": 10.0, "1": 11.0} and on_disk["command"] == "python x.py --steps 8"
    assert benchrows.write_summary(tmp_path, [], "c", 0, "auto", [0])["calibration"] is None


def test_long_run_parser_shared_options():
    p = benchrows.long_run_parser("d", "runs/x-long", ["cifar10", "shapes"], "steps per arm")
    p.add_argument("--depth", type=int, default=2)  # the bench adds its own
    a = p.parse_args([])
    assert (a.out, a.device, a.minutes_per_arm, a.steps, a.seeds, a.threads, a.dataset, a.evals) == (
        "runs/x-long", "auto", 45.0, 0, [0, 1], 0, "cifar10", 8)
    assert (a.bank_per_class, a.test_per_class, a.train_per_class, a.data_root, a.depth) == (1000, 0, 0, None, 2)
    a = p.parse_args(["--steps", "6", "--dataset", "shapes", "--seeds", "0", "1", "2"])
    assert (a.steps, a.dataset, a.seeds) == (6, "shapes", [0, 1, 2])
    for bad in (["--steps", "6", "--minutes-per-arm", "1"], ["--dataset", "imagenet"]):  # exclusive; choices
        with pytest.raises(SystemExit):
            p.parse_args(bad)
    assert "steps per arm" in p.format_help()


def test_arms_table_orders_arms_and_gives_the_gain_over_random_init():
    from tenfold.benchrows import arms_table

    arm = dict(steps=10, epochs=0.5, train_s=12.0, s_per_step=1.2, best_knn=31.0)
    lines = arms_table([{**arm, "arm": "b", "seed": 0, "final_knn": 30.0}, {**arm, "arm": "a", "seed": 1,
                        "final_knn": 29.0}, {**arm, "arm": "a", "seed": 0, "final_knn": 28.0}],
                       {0: 25.0}, ("a", "b"), "s_per_step", "s / step")
    assert lines[0].startswith("| arm | seed | optimizer steps | epochs | train s | s / step |")
    assert [line.split(" | ")[:2] for line in lines[2:5]] == [["| a", "0"], ["| a", "1"], ["| b", "0"]]
    assert lines[2].endswith("| 28.0 | 31.0 | +3.0 |") and lines[3].endswith("| 29.0 | 31.0 |  |")
    assert lines[-1] == "Random init kNN: seed 0: 25.0"
