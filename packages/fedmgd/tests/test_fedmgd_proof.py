"""Real-data proof (spec §7 (b)/(d)): MNIST, 5 clients, Dirichlet alpha = 0.05, equal communication.

One Stage 1 (seed 0) is shared by every arm (the spec allows reusing one G across seeds); each arm's
Stage 2 is then run with independent seeds (data order, dropout, synthetic samples; and the initial
S for the from-scratch arms). Calibration run (seed 0 partition, Stage-2 seeds 0, 1, 2), 2-core CPU:
  client sizes [666, 816, 932, 1071, 518]; routing owner agreement 1.00; G label fidelity 0.772 (judge 0.928)
  FedMGD            64.7 +- 1.1  [0.652, 0.654, 0.634]
  FedAvg same init  53.3 +- 3.6  [0.552, 0.492, 0.556]
  FedAvg scratch    16.9 +- 6.6  [0.210, 0.092, 0.204]
  negative control (FedMGD, S from scratch, no warm-up) 0.114; keep-rate 0.36 -> 0.89 for every seed
  gap 11.3 points vs spread 3.6; 119 s CPU-user single-threaded (540 s wall on the shared machine).
Spread (issue #22; `make test-robust`, 2026-12-07, AVX-512 Intel Xeon; TENFOLD_SLOW_SEED shifts every seed):
  seed 0 (this machine)   FedMGD 64.7 +- 1.7  FedAvg same init 53.6 +- 3.6  scratch 18.3  gap 11.1  fidelity 0.778
  seed 0, AVX2 stand-in   FedMGD 63.5 +- 2.3  FedAvg same init 53.6 +- 3.6  scratch 18.6  gap  9.9  fidelity 0.764
  seeds 1-3               FedMGD 67.1 +- 0.8  FedAvg same init 56.6 +- 2.5  scratch 15.3  gap 10.5  fidelity 0.679
  owner agreement 1.00, negative control 0.114 and keep-rate rising in every draw.
Thresholds sit well inside these margins (lowest observed gap 9.9 points against a spread of at most 3.6):
fidelity >= 0.5, owner agreement >= 0.7, gap > spread and >= 5 points, >= scratch + 2 points, keep-rate rises,
negative control < FedMGD - 20 points.
"""
import math
import os
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fedmgd.config import FedMGDConfig
from fedmgd.data import build_federated_data
from fedmgd.nets import build_models
from fedmgd.stage2 import evaluate
from fedmgd.train import run
from tenfold import checkpoint
from tenfold.config import load

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "mnist_cpu_proof.yaml"
DATA = os.environ.get("TENFOLD_DATA")
SEED = int(os.environ.get("TENFOLD_SLOW_SEED", "0"))  # `make test-robust` varies it; calibration at 0
SEEDS = (SEED, SEED + 1, SEED + 2)

pytestmark = pytest.mark.slow


def _quiet(*a):
    pass


def _ms(xs):
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


@pytest.mark.skipif(not DATA or not (Path(DATA) / "mnist" / "train.npz").is_file(),
                    reason="needs real MNIST: set TENFOLD_DATA to a folder with mnist/{train,test}.npz")
def test_fedmgd_beats_fedavg_on_skewed_mnist(tmp_path):
    t0 = time.process_time()
    cfg = lambda *o: load(FedMGDConfig, CONFIG, [f"data_root={DATA}"] + list(o))
    base = cfg(f"out={tmp_path / 'mgd0'}", f"seed={SEED}")
    fed = build_federated_data(base)
    res = {"mgd": [], "avg_same": [], "avg_scratch": []}
    first = run(base, fed=fed, log=_quiet)
    s1 = str(tmp_path / "mgd0" / "stage1.pt")
    res["mgd"].append(first)
    for s in SEEDS[1:]:
        res["mgd"].append(run(cfg(f"out={tmp_path / f'mgd{s}'}", f"seed={s}", f"fl.stage1_from={s1}"),
                              fed=fed, log=_quiet))
    for s in SEEDS:
        res["avg_same"].append(run(cfg(f"out={tmp_path / f'as{s}'}", f"seed={s}", "fl.method=fedavg", "fl.init=stage1",
                                       f"fl.stage1_from={s1}"), fed=fed, log=_quiet))
        res["avg_scratch"].append(run(cfg(f"out={tmp_path / f'sc{s}'}", f"seed={s}", "fl.method=fedavg"),
                                      fed=fed, log=_quiet))
    neg = run(cfg(f"out={tmp_path / 'neg'}", "fl.init=scratch", "fl.warmup_rounds=0", f"fl.stage1_from={s1}"),
              fed=fed, log=_quiet)

    # generator label fidelity, judged by a classifier trained centrally on the pooled real data
    mg, _, mc = build_models(base.model, 10, 1, 16)
    G = mg()
    G.load_state_dict(checkpoint.load(s1, "fedmgd-stage1")["G"])
    torch.manual_seed(0)
    judge = mc()
    opt = torch.optim.Adam(judge.parameters(), 1e-3, betas=(0.5, 0.999))
    X, Y = torch.cat(fed.client_x), torch.cat(fed.client_y)
    for _ in range(300):
        i = torch.randint(0, len(Y), (64,))
        loss = F.cross_entropy(judge(X[i]), Y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    judge_acc = evaluate(judge, fed.test_x, fed.test_y)
    G.eval()
    judge.eval()
    with torch.no_grad():
        y = torch.arange(10).repeat(100)
        fidelity = float((judge(G(torch.randn(1000, base.model.n_z), F.one_hot(y, 10).float())).argmax(1) == y)
                         .float().mean())

    acc = {k: [r["final_test_acc"] for r in v] for k, v in res.items()}
    stats = {k: _ms(v) for k, v in acc.items()}
    spread = max(stats["mgd"][1], stats["avg_same"][1])
    gap = stats["mgd"][0] - stats["avg_same"][0]
    print(f"\nclient sizes {fed.sizes}; routing owner agreement {first['routing_owner_agreement']:.2f}; "
          f"G label fidelity {fidelity:.3f} (judge {judge_acc:.3f})")
    for k, (m, sd) in stats.items():
        print(f"{k:12s} final acc {100 * m:.1f} +- {100 * sd:.1f}  {[round(a, 3) for a in acc[k]]}")
    print(f"negative control (FedMGD, S from scratch, no warm-up): {neg['final_test_acc']:.3f}")
    keeps = [(round(r["keep_rate_first"], 3), round(r["keep_rate_last"], 3)) for r in res["mgd"]]
    print(f"keep-rate first -> last: {keeps}")
    print(f"FedMGD - FedAvg(same init) = {100 * gap:.1f} points; seed spread (max std) {100 * spread:.1f}; "
          f"CPU {time.process_time() - t0:.0f}s")

    assert fidelity >= 0.5
    assert first["routing_owner_agreement"] >= 0.7
    assert gap > spread and gap >= 0.05
    assert stats["mgd"][0] >= stats["avg_scratch"][0] + 0.02
    assert all(r["keep_rate_last"] > r["keep_rate_first"] for r in res["mgd"])
    assert neg["final_test_acc"] < stats["mgd"][0] - 0.20
