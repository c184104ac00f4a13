"""Flower path on the MNIST CPU proof setting (issue #21): agreement with the in-process engine and the
communication cost per round, measured.

    python bench/flower_loopback.py --mode inmemory   # the Flower apps, messages handed over in one process
    python bench/flower_loopback.py --mode loopback   # SuperLink + 5 SuperNodes on 127.0.0.1, `flwr run`

Both run configs/mnist_cpu_proof.yaml with a short schedule (overrides below) through the in-process engine and
the Flower path at the same seed, and write bench/flower_<mode>.json: the largest |difference| of G (after Stage 1)
and S (after Stage 2), both accuracies, and bytes down/up and seconds per Flower round of each stage."""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from fedmgd.config import FedMGDConfig
from fedmgd.train import run
from tenfold import checkpoint, configs
from tenfold.config import load

HERE = Path(__file__).parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["inmemory", "loopback"], default="inmemory")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--per-round", type=int, default=10)
    ap.add_argument("--port-base", type=int, default=19290)
    ap.add_argument("--warmup", type=int, default=1, help="fl.warmup_rounds (the proof config has 5)")
    a = ap.parse_args()
    over = [f"gan.iters={a.iters}", f"fl.rounds={a.rounds}", f"fl.warmup_rounds={a.warmup}", "fl.eval_every=1",
            f"flower.gan_iters_per_round={a.per_round}", "flower.reply_timeout_s=300",
            f"flower.port_base={a.port_base}"]
    path = configs.resolve("fedmgd", "mnist_cpu_proof")
    tmp = Path(tempfile.mkdtemp(prefix="fedmgd-flower-"))
    t = time.perf_counter()
    ref = run(load(FedMGDConfig, path, over + [f"out={tmp / 'local'}"]), log=lambda *x: None)
    t_local = time.perf_counter() - t
    G_ref = checkpoint.load(tmp / "local" / "stage1.pt", "fedmgd-stage1")["G"]
    t = time.perf_counter()
    if a.mode == "inmemory":
        from fedmgd.flower.apps import client_app, run_server
        from fedmgd.flower.inmemory import InMemoryGrid

        cfg = load(FedMGDConfig, path, over + [f"out={tmp / 'fl'}"])
        grid = InMemoryGrid(client_app, {"config": path, "overrides": " ".join(over), "out": str(tmp / "fl")},
                            [{"partition-id": k} for k in range(cfg.partition.num_clients)])
        summary = run_server(grid, cfg, log=print)
    else:
        from fedmgd.flower.deploy import run_flower

        cfg = load(FedMGDConfig, path, over + [f"out={tmp / 'fl'}"])
        summary = run_flower(cfg)
    t_flower = time.perf_counter() - t
    fin = torch.load(tmp / "fl" / "flower_final.pt")
    dG = max(float((fin["G"][k].double() - G_ref[k].double()).abs().max()) for k in G_ref)
    dS = max(float((fin["S"][k].double() - ref["S"][k].double()).abs().max()) for k in ref["S"])
    res = {"mode": a.mode, "config": "mnist_cpu_proof", "overrides": over, "max_abs_diff_G": dG, "max_abs_diff_S": dS,
           "test_acc_local": ref["final_test_acc"], "test_acc_flower": summary["final_test_acc"],
           "communication": summary["communication"], "rounds_detail": summary["rounds_detail"],
           "wall_s_local": t_local, "wall_s_flower": t_flower, "cpu": platform.processor() or platform.machine(),
           "torch": torch.__version__}
    out = HERE / f"flower_{a.mode}_{a.iters}it_{a.rounds}r.json"
    out.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "rounds_detail"}, indent=1))


if __name__ == "__main__":
    main()
