import json
import os

import pytest
import torch
from fedmgd.cli import train_main
from fedmgd.config import FedMGDConfig
from fedmgd.data import build_federated_data
from fedmgd.engine import Comm, Streams
from fedmgd.nets import build_models
from fedmgd.stage1 import Stage1
from fedmgd.train import run
from tenfold import checkpoint
from tenfold.config import load

TINY = ["data.dataset=synthetic", "data.synthetic_n=300", "data.img_size=16", "data.test_size=40",
        "partition.num_clients=3", "partition.alpha=0.5", "partition.min_size=20", "partition.seed=0",
        "model.arch=dcgan", "model.n_z=8", "model.ngf=8", "model.ndf=8", "model.c_width1=8", "model.c_width2=8",
        "model.c_hidden=16", "gan.iters=4", "gan.batch_size=16", "gan.ckpt_every=2", "gan.log_every=1",
        "fl.rounds=3", "fl.local_steps=2", "fl.batch_size=16", "fl.lr=0.001", "fl.server_steps=2",
        "fl.gen_batch=32", "fl.ckpt_every=1", "device=cpu"]


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(*over, out="run"):
        return load(FedMGDConfig, None, TINY + [f"out={tmp_path / out}"] + list(over))
    return make


def _quiet(*a):
    pass


def _equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_resume_is_bitwise_exact_in_both_stages(tiny_cfg):
    full = run(tiny_cfg(out="a"), log=_quiet)["S"]
    cfg = tiny_cfg(out="b")
    assert run(cfg, stop_at=("stage1", 2), log=_quiet)["stopped_at"] == ("stage1", 2)
    resumed1 = run(cfg, resume="auto", log=_quiet)["S"]
    cfg = tiny_cfg(out="c")
    run(cfg, stop_at=("stage2", 2), log=_quiet)
    resumed2 = run(cfg, resume=str(cfg.out), log=_quiet)["S"]
    assert _equal(full, resumed1) and _equal(full, resumed2)


def _metrics(path):
    return [json.loads(line) for line in open(path / "metrics.jsonl")]


def test_failed_client_is_dropped_logged_and_training_goes_on(tiny_cfg, tmp_path):
    msgs = []
    res = run(tiny_cfg("fl.method=fedavg", "faults.fail_clients=['2:1']", out="f"), log=msgs.append)
    rows = [m for m in _metrics(tmp_path / "f") if m.get("stage") == 2]
    assert [r["clients_dropped"] for r in rows] == [0, 1, 0] and rows[1]["clients_ok"] == 2
    assert any("client 1 dropped" in m for m in msgs) and res["final_test_acc"] is not None
    ok = run(tiny_cfg("fl.method=fedavg", out="g"), log=_quiet)["S"]
    assert not _equal(ok, res["S"])  # the dropped update really was left out


def test_stage1_update_isolation(tiny_cfg):
    cfg = tiny_cfg()
    fed = build_federated_data(cfg)
    dev = torch.device("cpu")
    mg, md, mc = build_models(cfg.model, fed.num_classes, fed.channels, 16)
    streams = Streams(0, dev)
    st = Stage1(cfg, fed, Comm(3), streams, dev, mg, md, mc, mc())
    recorded = {}
    for name, opts, nets in (("D", st.opt_D, st.D), ("C", st.opt_C, st.C)):
        for k, opt in opts.items():
            orig = opt.step

            def step(*a, _o=orig, _n=nets[k], _key=(name, k), **kw):
                recorded[_key] = [p.grad.clone() for p in _n.parameters()]
                return _o(*a, **kw)
            opt.step = step
    g0 = [p.detach().clone() for p in st.G.parameters()]
    st.iteration(0)
    # the G step added no gradient to any D_k or C_k (their grads are still those of their own steps)
    for (name, k), grads in recorded.items():
        nets = st.D if name == "D" else st.C
        assert all(torch.equal(g, p.grad) for g, p in zip(grads, nets[k].parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g0, st.G.parameters()))
    # classifiers are not averaged in Stage 1: they now differ from each other
    assert not torch.equal(st.C[0].head[0].weight, st.C[1].head[0].weight)


def test_server_takes_exactly_server_steps(tiny_cfg, tmp_path):
    run(tiny_cfg("fl.filter=false", "fl.server_steps=3", out="s"), log=_quiet)
    rows = [m for m in _metrics(tmp_path / "s") if m.get("stage") == 2]
    assert [r["server_steps_taken"] for r in rows] == [3, 3, 3]


def _cli_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        train_main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return e.value.code, err


def test_cli_bad_inputs_give_one_error_line(tiny_cfg, tmp_path, capsys):
    base = TINY + [f"out={tmp_path / 'cli'}"]
    code, err = _cli_error(base + ["fl.lrr=1"], capsys)
    assert code == 2 and len(err) == 1 and "fl.lr" in err[0]
    code, err = _cli_error(base + ["fl.rounds=abc"], capsys)
    assert code == 2 and len(err) == 1 and "integer" in err[0]
    code, err = _cli_error(base + ["data.dataset=mnist", "--data-root", str(tmp_path / "none")], capsys)
    assert code == 2 and len(err) == 1 and "MNIST not found" in err[0]
    code, err = _cli_error(base + ["partition.num_clients=400"], capsys)
    assert code == 2 and len(err) == 1 and "more clients than samples" in err[0]
    (tmp_path / "cli2").mkdir()  # a fresh folder: the failed runs above left config.yaml in cli/
    (tmp_path / "cli2" / "last.pt").write_bytes(b"not a checkpoint")
    code, err = _cli_error(TINY + [f"out={tmp_path / 'cli2'}", "--resume"], capsys)
    assert code == 2 and len(err) == 1 and "corrupt" in err[0]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_cfg, tmp_path, capsys):
    out = tmp_path / "nan"
    code, err = _cli_error(TINY + [f"out={out}", "gan.iters=6", "gan.lambda_d=.nan"], capsys)
    assert code == 2 and len(err) == 1 and "nan" in err[0].lower()
    code, err = _cli_error(TINY + [f"out={out}", "gan.iters=6", "gan.ckpt_every=1", "gan.lambda_d=.nan"], capsys)
    assert not (out / "last.pt").exists() or checkpoint.load(out / "last.pt", "fedmgd")["step"] < 6


def test_resume_with_other_config_fails_clearly(tiny_cfg, capsys, tmp_path):
    cfg = tiny_cfg(out="r")
    run(cfg, stop_at=("stage2", 1), log=_quiet)
    capsys.readouterr()  # the run's progress lines
    code, err = _cli_error(TINY + [f"out={tmp_path / 'r'}", "partition.alpha=0.9", "--resume"], capsys)
    assert code == 2 and len(err) == 1 and "partition.alpha" in err[0]


def _rank_worker(rank, world, store, cfg, out):
    import fedmgd.train as T
    from tenfold import distributed

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), TENFOLD_QUIET="1")
    torch.set_num_threads(1)
    assert distributed.init(torch.device("cpu"), init_method=f"file://{store}")
    build = T.build_federated_data

    def recording_build(*a, **kw):
        fed = build(*a, **kw)
        out[f"hosted{rank}"] = fed.hosted
        return fed
    T.build_federated_data = recording_build
    res = T.run(cfg, log=_quiet)
    out[f"S{rank}"] = {k: v.clone() for k, v in res["S"].items()}
    distributed.cleanup()


def test_distributed_two_gloo_ranks_match_simulated(tiny_cfg, tmp_path):
    import torch.multiprocessing as mp

    sim = run(tiny_cfg(out="sim"), log=_quiet)["S"]
    out = mp.Manager().dict()
    # spawn, not fork: a parent that has run autograd on a worker thread (the deadline tests) cannot fork safely
    mp.start_processes(_rank_worker, args=(2, str(tmp_path / "store"), tiny_cfg(out="dist"), out), nprocs=2,
                       join=True, start_method="spawn")
    # each rank loaded only the images of its own clients (client k on rank k % 2)
    assert out["hosted0"] == [0, 2] and out["hosted1"] == [1]
    assert (tmp_path / "dist" / "last.rank1.pt").is_file()
    for r in (0, 1):
        for k in sim:
            assert torch.allclose(sim[k], out[f"S{r}"][k], atol=1e-6, rtol=0), (r, k)


@pytest.mark.parametrize("method", ["fedprox", "scaffold", "fedlc", "local"])
def test_baselines_run_and_learn_state(tiny_cfg, method):
    cfg = tiny_cfg(f"fl.method={method}", "fl.rounds=2", out=method)
    res = run(cfg, log=_quiet)
    assert 0.0 <= res["final_test_acc"] <= 1.0 and res["rounds"] == 2
    assert "stage1_iters" not in res  # baselines from scratch need no GAN stage
    if method == "scaffold":
        ck = checkpoint.load(cfg.out + "/last.pt", "fedmgd")["state"]["stage2"]
        assert any(float(c.abs().sum()) > 0 for c in ck["c_global"])  # control variates moved
