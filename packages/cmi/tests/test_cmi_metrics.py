"""Diversity measures on hand cases (the issue-#20 bench reports both): all-pairs mean cosine and the mean
nearest-neighbour cosine, plus the bench's mean/sample-std helper."""
import importlib.util
from pathlib import Path

import pytest
import torch
from cmi.metrics import mean_nearest_neighbour_cosine, mean_pairwise_cosine


def test_pairwise_and_nearest_neighbour_cosine_hand_case():
    # rows: e1, 3*e1 (same direction), e2 -> cos(0,1) = 1, every other pair 0
    f = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    assert mean_pairwise_cosine(f) == pytest.approx(2 / 6)  # 2 of the 6 ordered pairs are 1
    assert mean_nearest_neighbour_cosine(f) == pytest.approx(2 / 3)  # rows 0, 1 have a duplicate; row 2 none
    # a self-match must not count: three orthogonal rows have nearest-neighbour cosine 0, not 1
    assert mean_nearest_neighbour_cosine(torch.eye(3)) == pytest.approx(0.0)
    # negative similarity: two opposite rows
    assert mean_nearest_neighbour_cosine(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-1.0)


def test_bench_stats_sample_std():
    path = Path(__file__).resolve().parents[1] / "bench" / "diversity.py"
    spec = importlib.util.spec_from_file_location("cmi_bench_diversity", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    s = mod._stats([1.0, 2.0, 3.0, None])
    assert s["mean"] == pytest.approx(2.0) and s["std"] == pytest.approx(1.0) and s["n"] == 3
    assert s["min"] == 1.0 and s["max"] == 3.0
    assert mod._stats([None]) is None
