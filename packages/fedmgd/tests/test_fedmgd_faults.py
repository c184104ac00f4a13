"""Issue #18: the round deadline is real (the server stops waiting; a late client is left out of that
round's aggregation) and Stage 1 survives clients that drop out for some iterations (left out of routing).
Each is tested with a client that sleeps past the deadline and with one that raises."""
import json
import time

import pytest
import torch
from fedmgd.config import FedMGDConfig
from fedmgd.data import build_federated_data
from fedmgd.engine import Comm, Streams
from fedmgd.faults import ClientLate, call_with_deadline
from fedmgd.nets import build_models
from fedmgd.stage1 import Stage1
from fedmgd.train import run
from tenfold.config import load
from tenfold.errors import ConfigError
from test_fedmgd_train import TINY, _equal, _quiet


def _cfg(tmp_path, out, *over):
    return load(FedMGDConfig, None, TINY + [f"out={tmp_path / out}"] + list(over))


def _rows(path, stage):
    return [r for r in map(json.loads, open(path / "metrics.jsonl")) if r.get("stage") == stage]


def test_deadline_stops_waiting_for_a_sleeping_client():
    def sleepy(guard):
        time.sleep(3.0)  # outside its step: the server must not wait for this
        with guard:
            return "late work"

    t0 = time.perf_counter()
    with pytest.raises(ClientLate):
        call_with_deadline(sleepy, 0.2, "client 9")
    assert time.perf_counter() - t0 < 1.5
    assert call_with_deadline(lambda guard: 7, 5.0) == 7
    with pytest.raises(ZeroDivisionError):  # a raising client's error reaches the server
        call_with_deadline(lambda guard: 1 / 0, 5.0)


def test_stage2_late_client_left_out_of_that_round_only(tmp_path):
    ok = run(_cfg(tmp_path, "ok", "fl.method=fedavg"), log=_quiet)
    msgs = []
    t0 = time.perf_counter()
    late = run(_cfg(tmp_path, "late", "fl.method=fedavg", "faults.client_timeout_s=0.5",
                    "faults.delay_clients=['2:1']", "faults.delay_s=6"), log=msgs.append)
    assert time.perf_counter() - t0 < 6  # round 2 did not wait for the sleeping client
    rows = _rows(tmp_path / "late", 2)
    assert [r["clients_dropped"] for r in rows] == [0, 1, 0] and rows[1]["clients_ok"] == 2
    assert any("client 1" in m and "ClientLate" in m for m in msgs)
    assert rows[0]["test_acc"] == _rows(tmp_path / "ok", 2)[0]["test_acc"]  # round 1 untouched
    assert not _equal(ok["S"], late["S"])  # its update really was left out of round 2


def test_stage2_all_late_leaves_global_model_unchanged(tmp_path):
    every = [f"{r}:{k}" for r in (1, 2, 3) for k in (0, 1, 2)]
    cfg = _cfg(tmp_path, "t", "fl.method=fedavg", "faults.client_timeout_s=0.05", f"faults.delay_clients={every}",
               "faults.delay_s=0.3")
    res = run(cfg, log=_quiet)
    fed = build_federated_data(cfg)
    _, _, make_c = build_models(cfg.model, fed.num_classes, fed.channels, cfg.data.img_size)
    with Streams(cfg.seed, torch.device("cpu")).use("init_S"):
        s0 = make_c().state_dict()
    assert res["clients_dropped_total"] == 9 and _equal(s0, res["S"])


def _stage1(tmp_path, *over):
    cfg = _cfg(tmp_path, "s1", *over)
    fed = build_federated_data(cfg)
    dev = torch.device("cpu")
    mg, md, mc = build_models(cfg.model, fed.num_classes, fed.channels, 16)
    msgs = []
    st = Stage1(cfg, fed, Comm(3), Streams(0, dev), dev, mg, md, mc, mc(), logger=msgs.append)
    return st, msgs


def test_stage1_survives_a_raising_and_a_late_client(tmp_path):
    st, msgs = _stage1(tmp_path, "faults.stage1_fail_clients=['1:0', '2:0', '3:2']",
                       "faults.stage1_delay_clients=['2:1']", "faults.stage1_timeout_s=0.5", "faults.delay_s=5")
    t0 = time.perf_counter()
    out = [st.iteration(t) for t in range(4)]
    assert time.perf_counter() - t0 < 5
    assert [o["clients_absent"] for o in out] == [1, 2, 1, 0]
    assert all(o["loss_G"] is not None and o["loss_G"] == o["loss_G"] for o in out)
    assert sum("left out" in m for m in msgs) == 4
    # an absent client is never routed a sample: iteration 1 (client 0 absent) alone routes nothing to client 0
    st2, _ = _stage1(tmp_path, "faults.stage1_fail_clients=['1:0']")
    st2.iteration(0)
    assert int(st2.route_counts[0].sum()) == 0 and int(st2.route_counts.sum()) == st2.batch


def test_stage1_with_every_client_absent_skips_the_generator_step(tmp_path):
    st, _ = _stage1(tmp_path, "faults.stage1_fail_clients=['1:0', '1:1', '1:2']")
    g0 = [p.detach().clone() for p in st.G.parameters()]
    out = st.iteration(0)
    assert out["clients_absent"] == 3 and out["loss_G"] is None and out["loss_C"] is None
    assert all(torch.equal(a, b) for a, b in zip(g0, st.G.parameters()))


def test_fault_events_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="step:client"):
        _cfg(tmp_path, "v", "faults.stage1_fail_clients=['x']")
