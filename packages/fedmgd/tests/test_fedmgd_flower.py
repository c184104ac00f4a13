"""The Flower path (issue #21) through Flower's own Message / RecordDict / ClientApp / Strategy objects, with the
messages handed over in this process (fedmgd.flower.inmemory.InMemoryGrid): it must reach the in-process engine's
server weights (G after Stage 1, S after Stage 2) at the same seed, survive a client that stops answering, and stop
bad input with one clear line. The real SuperLink/SuperNode deployment is the slow test_fedmgd_flower_deploy.py."""
import subprocess
import sys

import pytest
import torch
from fedmgd.config import FedMGDConfig
from fedmgd.train import run
from tenfold import checkpoint
from tenfold.config import load
from tenfold.errors import ConfigError

flwr = pytest.importorskip("flwr", reason="the Flower path needs the flower extra: "
                                         "pip install -c constraints.txt 'packages/fedmgd[flower]'")

from fedmgd.flower.apps import client_app, run_server  # noqa: E402
from fedmgd.flower.inmemory import InMemoryGrid  # noqa: E402

TINY = ["data.dataset=synthetic", "data.synthetic_n=300", "data.img_size=16", "data.test_size=40",
        "partition.num_clients=3", "partition.alpha=0.5", "partition.min_size=20", "partition.seed=0",
        "model.arch=dcgan", "model.n_z=8", "model.ngf=8", "model.ndf=8", "model.c_width1=8", "model.c_width2=8",
        "model.c_hidden=16", "gan.iters=4", "gan.batch_size=16", "fl.rounds=3", "fl.local_steps=2",
        "fl.batch_size=16", "fl.lr=0.001", "fl.server_steps=2", "fl.gen_batch=32", "device=cpu",
        "flower.gan_iters_per_round=3"]


def _quiet(*a):
    pass


def _flower(tmp_path, over=(), nodes=None, kill_after=None):
    over = TINY + list(over)
    cfg = load(FedMGDConfig, None, over + [f"out={tmp_path / 'fl'}"])
    grid = InMemoryGrid(client_app, {"config": "", "overrides": " ".join(over), "out": str(tmp_path / "fl")},
                        nodes if nodes is not None else [{"partition-id": k} for k in range(3)])
    if kill_after is not None:
        node = list(grid.contexts)[kill_after[0]]
        grid.kill_after[node] = kill_after[1]
    summary = run_server(grid, cfg, log=_quiet)
    return summary, torch.load(tmp_path / "fl" / "flower_final.pt"), grid


@pytest.mark.parametrize("graph", ["selected", "all"])
def test_flower_path_reaches_the_in_process_weights(tmp_path, graph):
    """Same seed, same config: G after Stage 1 and S after Stage 2 equal the in-process engine's to 1e-6 (measured:
    bit-identical on this CPU for both gan.g_graph settings). Both Stage-1 iterations per round (3) and a partial
    last round (4 = 3 + 1) are crossed."""
    over = [f"gan.g_graph={graph}"]
    ref = run(load(FedMGDConfig, None, TINY + over + [f"out={tmp_path / 'local'}"]), log=_quiet)
    G_ref = checkpoint.load(tmp_path / "local" / "stage1.pt", "fedmgd-stage1")["G"]
    summary, fin, grid = _flower(tmp_path, over)
    for name, a, b in [("G", fin["G"], G_ref), ("S", fin["S"], ref["S"])]:
        worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in b)
        assert worst <= 1e-6, f"{name} differs by {worst}"
    assert summary["final_test_acc"] == pytest.approx(ref["final_test_acc"], abs=1e-9)
    c = summary["communication"]
    assert c["stage1"]["rounds"] == 2 and c["stage2"]["rounds"] == 3
    # down: the fake batch (16 x 1 x 16 x 16 float32 = 16 KiB) to 3 clients per iteration; up: scores, per-sample
    # losses and the image gradient (16 KiB) from each -- measured from Flower's serialized RecordDicts
    per_iter = 16 * 16 * 16 * 4 * 3
    r1 = summary["rounds_detail"]["stage1"][0]  # 3 iterations
    assert r1["iters"] == 3 and per_iter < r1["bytes_down"] / 3 < 1.2 * per_iter
    assert per_iter < r1["bytes_up"] / 3 < 1.2 * per_iter
    assert grid.sent_bytes > 0 and grid.received_bytes > 0


def test_a_client_that_stops_answering_is_left_out_and_the_run_finishes(tmp_path):
    """Client 2's node dies after its hello and two Stage-1 messages: iteration 3 routes over clients 0 and 1
    only, Stage 2 averages the two, and the run ends with a global model."""
    summary, fin, _ = _flower(tmp_path, kill_after=(2, 3))
    assert summary["clients_at_end"] == [0, 1] and summary["final_test_acc"] is not None
    s1 = summary["rounds_detail"]["stage1"]
    assert [r["clients"] for r in s1] == [2, 2]  # the round in which it died ends without it
    assert all(r["clients"] == 2 for r in summary["rounds_detail"]["stage2"])


def test_too_few_clients_left_stops_with_one_line(tmp_path):
    """flower.min_clients=2 and two of three nodes die after their hello and first Stage-1 message."""
    over = TINY + ["flower.min_clients=2"]
    cfg = load(FedMGDConfig, None, over + [f"out={tmp_path / 'fl'}"])
    grid = InMemoryGrid(client_app, {"config": "", "overrides": " ".join(over), "out": str(tmp_path / "fl")},
                        [{"partition-id": k} for k in range(3)])
    for node in list(grid.contexts)[1:]:
        grid.kill_after[node] = 2
    with pytest.raises(ConfigError, match=r"stage-1 iteration 2: 1 client\(s\) replied, fewer than "
                                          r"flower.min_clients=2"):
        run_server(grid, cfg, log=_quiet)


@pytest.mark.parametrize("node,match", [
    ({"partition-id": 7}, r"partition-id 7 is out of range: the config has 3 clients \(0..2\)"),
    ({"partition-id": 2, "overrides": "partition.alpha=0.9"},
     r"server/client config mismatch: partition.alpha: server 0.5, client 0.9"),
    ({"partition-id": 2, "num-partitions": 4}, r"num-partitions=4, the config has partition.num_clients=3"),
    ({"partition-id": 2, "overrides": "data.dataset=mnist data_root=/nonexistent"}, r"not found under /nonexistent"),
    ({}, r"no partition-id"),
])
def test_bad_client_input_stops_with_one_clear_line(tmp_path, node, match):
    nodes = [{"partition-id": 0}, {"partition-id": 1}, node]
    with pytest.raises(ConfigError, match=match) as e:
        _flower(tmp_path, nodes=nodes)
    assert "\n" not in str(e.value)


def test_duplicate_partition_id_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="have partition-id 1"):
        _flower(tmp_path, nodes=[{"partition-id": 0}, {"partition-id": 1}, {"partition-id": 1}])


def test_a_client_without_data_is_refused(tmp_path):
    """A client whose local data holds nothing of the configured pool: an empty .npz on that machine."""
    import numpy as np

    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 16, 16), np.uint8), labels=np.zeros(0, np.int64))
    node = {"partition-id": 2, "overrides": f"data.dataset=npz data.path={tmp_path / 'empty.npz'}"}
    with pytest.raises(ConfigError, match="client node .*: (DataError|ConfigError): "):
        _flower(tmp_path, nodes=[{"partition-id": 0}, {"partition-id": 1}, node])


def test_without_flwr_nothing_imports_it_and_engine_flower_says_what_to_install(tmp_path):
    """One subprocess: the engine's modules import no flwr; then, with flwr made unimportable, engine=flower stops
    with one line saying what to install (exit 2)."""
    code = (
        "import sys\n"
        "import fedmgd, fedmgd.train, fedmgd.cli, fedmgd.data, fedmgd.stage1, fedmgd.stage2, fedmgd.flower\n"
        "print('flwr imported:', 'flwr' in sys.modules, flush=True)\n"
        "sys.modules['flwr'] = None\n"  # as if flwr were not installed
        "from fedmgd.cli import train_main\n"
        f"train_main({TINY + ['engine=flower', '--out', str(tmp_path / 'x')]!r})\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == "flwr imported: False"
    assert p.returncode == 2, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: engine=flower needs Flower: pip install 'tenfold-fedmgd[flower]'")


def test_engine_flower_refuses_methods_that_need_server_state_on_clients(tmp_path):
    with pytest.raises(ConfigError, match="engine=flower runs fl.method"):
        _flower(tmp_path, ["fl.method=scaffold"])
