"""Issue #19: the server optimizer persists or resets between rounds (switch), and every round logs a
federated evaluation (global test accuracy, mean local accuracy of the global model, mean accuracy of the
clients' own updated models) to metrics.jsonl."""
import json

import pytest
import torch
from fedmgd.config import FedMGDConfig
from fedmgd.stage2 import evaluate
from fedmgd.train import run
from tenfold import checkpoint
from tenfold.config import load
from tenfold.errors import ConfigError
from test_fedmgd_train import TINY, _quiet


def _cfg(tmp_path, out, *over):
    return load(FedMGDConfig, None, TINY + [f"out={tmp_path / out}", "fl.filter=false"] + list(over))


def _opt_steps(out):
    st = checkpoint.load(out / "last.pt", "fedmgd")["state"]["stage2"]["opt_S"]["state"]
    return {int(v["step"]) for v in st.values()}


def test_server_optimizer_persists_or_resets_between_rounds(tmp_path):
    # TINY: 3 rounds x 2 server steps; without the filter every server step is taken
    persist = run(_cfg(tmp_path, "p"), log=_quiet)
    reset = run(_cfg(tmp_path, "r", "fl.server_optim_state=reset"), log=_quiet)
    assert _opt_steps(tmp_path / "p") == {6}  # Adam's step count ran on through all rounds (reference)
    assert _opt_steps(tmp_path / "r") == {2}  # a fresh Adam in every round
    assert any(not torch.equal(persist["S"][k], reset["S"][k]) for k in persist["S"])


def test_server_optim_state_is_validated(tmp_path):
    with pytest.raises(ConfigError, match="server_optim_state"):
        _cfg(tmp_path, "x", "fl.server_optim_state=sometimes")


def test_federated_evaluation_every_round_in_metrics(tmp_path):
    res = run(_cfg(tmp_path, "e", "fl.rounds=3"), log=_quiet)
    rows = [json.loads(line) for line in open(tmp_path / "e" / "metrics.jsonl")]
    rows = [r for r in rows if r.get("stage") == 2]
    assert [r["round"] for r in rows] == [1, 2, 3]
    for r in rows:
        for key in ("test_acc", "local_acc_mean", "client_acc_mean"):
            assert 0.0 <= r[key] <= 1.0, (key, r)
    # the last round's numbers are those of the final global model
    assert rows[-1]["test_acc"] == res["final_test_acc"]
    assert rows[-1]["local_acc_mean"] == pytest.approx(sum(res["local_test_acc"]) / len(res["local_test_acc"]))


def test_evaluate_converts_uint8_chunks_like_the_float_set():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x8 = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8)
    y = torch.randint(0, 3, (50,))
    prep = lambda x: x.float().div(255).sub(0.5).div(0.5)  # noqa: E731
    assert evaluate(net, x8, y, 7, prep) == evaluate(net, prep(x8), y, 7)
