"""Real-data proof (spec §7d "slow test"): DPS (GAS 5 + TDS 5, fusion) vs TGAT-uniform (K = 10) at equal
epochs, batch, neighbour budget and seed (D = 32, 1 layer, lr 1e-3, 3 epochs, configs/cpu-proof.yaml), TDS-only
reported; unique-timestamp 70/15/15 split, fixed seeded test negatives. GAS is the leak-free default
(gas.mode=lazy, t* = the query time; issue #19).

Observed (seed 0, 2-core CPU shared with other jobs; 76 s CPU-user, 6.5 min wall for this file; 2026-12-07):
  ia_hypertext (all 20,818 events): test AUC  DPS 0.9153  TGAT-uniform 0.7596  TDS-only 0.8584  (gap +0.156)
  ia_contact (first 10,000 events): test AUC  DPS 0.7731  TGAT-uniform 0.7072  TDS-only 0.7454  (gap +0.066)
  α median on ia_hypertext (nodes with ≥ 20 training events): high-repetition half 55.2, low half 32.1
  Before the leak-free default (official GAS t*, which sees the future) DPS had 0.9276 and 0.8102.
  Spread over seeds 0-2 (bench/compare.sh, same settings): ia_hypertext DPS 0.9153 / 0.9083 / 0.9183 (TGAT-uniform
  0.7609 ± 0.0090); ia_contact is the full graph there (DPS 0.8920 ± 0.0014), not the 10k-event slice.
This test over draws (issue #22, `make test-robust`, 2026-12-07, this Xeon; test AUC DPS / TGAT-uniform / TDS-only):
  seed 1:               ia_hypertext 0.9083 / 0.7694 / 0.8558   ia_contact 0.7605 / 0.7284 (gap +0.032)  α 51.3 vs 31.1
  seed 2:               ia_hypertext 0.9183 / 0.7674 / 0.8472   ia_contact 0.7502 / 0.7098 (gap +0.040)  α 62.1 vs 30.8
  seed 0, AVX2 stand-in ia_hypertext 0.9111 / 0.7640 / 0.8449   ia_contact 0.7712 / 0.7112 (gap +0.060)  α 55.2 vs 32.1
Thresholds (from the spec's plan), outside all four draws: every arm ≥ 0.60 AUC on ia_hypertext (lowest arm
0.76), DPS ≥ TGAT-uniform − 0.01 on both (gaps +0.14 to +0.16 and +0.03 to +0.07), α higher for high-repetition
nodes (51-62 vs 31-32). (Until 2026-12-07 this test pinned seed 0 and ignored TENFOLD_SLOW_SEED.)
"""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from dps.config import DPSConfig
from dps.pipeline import prepare, stage_alpha
from dps.train import train_link
from tenfold import config as config_mod

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cpu-proof.yaml"
GRAPHS = {"ia_hypertext": None, "ia_contact": 10_000}  # graph -> max_events (None: all)
ARMS = ["dps", "tgat", "tds"]
SEED = int(os.environ.get("TENFOLD_SLOW_SEED", "0"))  # `make test-robust` varies it; calibration at 0


def data_root():
    root = os.environ.get("TENFOLD_DATA")
    if not root or not all((Path(root) / g / "events.csv").is_file() for g in GRAPHS):
        pytest.skip("real temporal graphs not available: set TENFOLD_DATA to the folder holding "
                    "ia_hypertext/ and ia_contact/ (../shared/data)")
    return root


def cfg_for(graph, arm, out, root):
    ov = [f"data.name={graph}", f"model.name={arm}", "model.tgat_sampler=uniform", f"out={out}", "device=cpu",
          f"data_root={root}", f"seed={SEED}"]
    if GRAPHS[graph]:
        ov.append(f"data.max_events={GRAPHS[graph]}")
    return config_mod.load(DPSConfig, CONFIG, ov)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = data_root()
    res = {}
    for g in GRAPHS:
        for arm in ARMS:
            out = tmp_path_factory.mktemp(f"{g}-{arm}")
            res[g, arm] = train_link(cfg_for(g, arm, out, root), log=lambda *a: None)
    for g in GRAPHS:
        row = "  ".join(f"{a} auc {res[g, a]['test_auc']:.4f} ap {res[g, a]['test_ap']:.4f} "
                        f"acc {res[g, a]['test_acc']:.4f} f1 {res[g, a]['test_f1']:.4f}" for a in ARMS)
        print(f"\n{g}: {row}\n{g}: gap DPS − TGAT-uniform = "
              f"{res[g, 'dps']['test_auc'] - res[g, 'tgat']['test_auc']:+.4f} AUC")
    return res


@pytest.mark.slow
def test_every_arm_learns_ia_hypertext(results):
    for arm in ARMS:
        assert results["ia_hypertext", arm]["test_auc"] >= 0.60, arm


@pytest.mark.slow
@pytest.mark.parametrize("graph", list(GRAPHS))
def test_dps_not_worse_than_tgat_uniform(results, graph):
    dps, tgat = results[graph, "dps"], results[graph, "tgat"]
    assert dps["test_auc"] >= tgat["test_auc"] - 0.01, (dps["test_auc"], tgat["test_auc"])


@pytest.mark.slow
def test_alpha_higher_for_high_repetition_nodes(tmp_path):
    root = data_root()
    cfg = cfg_for("ia_hypertext", "tds", tmp_path, root)
    prep = prepare(cfg, torch.device("cpu"))
    alpha = stage_alpha(cfg, prep, log=lambda *a: None).numpy()
    csr = prep.train_csr
    off, nbr = csr.offset.numpy(), csr.nbr.numpy()
    rep, alphas = [], []
    for u in range(1, csr.num_nodes + 1):
        h = nbr[off[u]:off[u + 1]]
        if h.size >= 20:  # repetition as in Table I: same neighbour as the previous interaction
            rep.append(np.mean(h[1:] == h[:-1]))
            alphas.append(alpha[u])
    rep, alphas = np.array(rep), np.array(alphas)
    hi = rep >= np.median(rep)
    print(f"\nia_hypertext α median: high-repetition nodes {np.median(alphas[hi]):.2f}, "
          f"low {np.median(alphas[~hi]):.2f} ({hi.sum()} / {(~hi).sum()} nodes)")
    assert np.median(alphas[hi]) > np.median(alphas[~hi])
