"""CPU benchmark: time (CPU seconds of this single-threaded process) per federated round with 100 clients vs
10 clients at the same total
data and the same number of local steps in total (IID split, one local epoch). The serial engine runs one
working model for every client, so the ratio should be close to 1 (per-client overhead only).

    OMP_NUM_THREADS=1 python bench/cpu.py [--out bench/cpu.json]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from fedmgd.config import FedMGDConfig
from fedmgd.data import build_federated_data
from fedmgd.engine import Comm, Streams
from fedmgd.nets import build_models
from fedmgd.stage2 import Stage2
from tenfold.bench import device_name, write_json
from tenfold.config import load


def time_rounds(k: int, total: int, rounds: int) -> dict:
    cfg = load(FedMGDConfig, None, ["data.dataset=blobs", f"data.synthetic_n={total}", "data.img_size=16",
                                    "data.test_size=10", "data.rest_of_test_in_pool=false", "partition.kind=iid",
                                    f"partition.num_clients={k}",
                                    "partition.train_frac=1.0", "partition.min_size=1", "fl.method=fedavg",
                                    "fl.local_epochs=1", "fl.batch_size=32", "fl.eval_every=1000000",
                                    "model.c_width1=16", "model.c_width2=32", "model.c_hidden=128", "device=cpu"])
    fed = build_federated_data(cfg)
    dev = torch.device("cpu")
    _, _, make_c = build_models(cfg.model, fed.num_classes, fed.channels, 16)
    torch.manual_seed(0)
    st = Stage2(cfg, fed, Comm(k), Streams(0, dev), dev, make_c())
    st.round(0)  # warm-up (allocations, first Adam states); fl.eval_every keeps evaluation out of the timed rounds
    cpu, wall = [], []
    for r in range(1, rounds + 1):
        t, c = time.perf_counter(), time.process_time()
        st.round(r)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    # CPU time of this (single-threaded) process is the robust measure on a shared machine
    return {"clients": k, "steps_per_client": st.steps, "total_local_steps": st.steps * k,
            "median_round_cpu_s": statistics.median(cpu), "median_round_wall_s": statistics.median(wall),
            "rounds_timed": rounds}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="bench/cpu.json")
    ap.add_argument("--total", type=int, default=6400, help="total training samples over all clients")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    small = time_rounds(10, args.total, args.rounds)
    large = time_rounds(100, args.total, args.rounds)
    ratio = large["median_round_cpu_s"] / small["median_round_cpu_s"]
    res = {"device": device_name(torch.device("cpu")), "torch": torch.__version__, "k10": small, "k100": large,
           "ratio_k100_over_k10": ratio}
    write_json(args.out, res)
    for r in (small, large):
        print(f"K={r['clients']:>3d}: {r['steps_per_client']} steps/client, {r['total_local_steps']} steps/round, "
              f"{r['median_round_cpu_s']:.3f} CPU-s/round ({r['median_round_wall_s']:.3f} s wall)")
    print(f"ratio K100/K10: {ratio:.2f}")


if __name__ == "__main__":
    main()
