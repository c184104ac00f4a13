"""CPU benchmark: neighbour-sampling queries/s of the vectorised temporal index vs a straightforward per-query
Python loop (TGAT-style NeighborFinder: per-node arrays, one np.searchsorted + sampling per query).

Prints "ratio A/B: X" (A = index, B = per-query loop, uniform sampling, the TGAT/GAS-pretrain sampler) and the
same ratio for most-recent and TDS sampling; writes JSON. Data: ia_hypertext from $TENFOLD_DATA, else the
synthetic preference stream. Usage: OMP_NUM_THREADS=1 python bench/cpu.py [--out bench_cpu.json]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from dps.data import from_events_csv, preference_stream
from dps.samplers import RecentSampler, TimeDecaySampler, UniformSampler
from dps.tcsr import TemporalCSR
from tenfold.bench import device_name, write_json


class LoopFinder:
    """The per-query baseline: Python lists of per-node numpy arrays, one query at a time."""

    def __init__(self, src, dst, t, n):
        adj = [[] for _ in range(n + 1)]
        for i, (u, v, tt) in enumerate(zip(src.tolist(), dst.tolist(), t.tolist())):
            adj[u].append((v, i + 1, tt))
            adj[v].append((u, i + 1, tt))
        self.nbr = [np.array([a[0] for a in x], dtype=np.int64) for x in adj]
        self.eid = [np.array([a[1] for a in x], dtype=np.int64) for x in adj]
        self.ts = [np.array([a[2] for a in x], dtype=np.float64) for x in adj]

    def sample(self, nodes, times, k, mode, rng, alpha=None, t_min=0.0, scale=1.0):
        out_n = np.zeros((len(nodes), k), dtype=np.int64)
        out_e, out_t = np.zeros_like(out_n), np.zeros((len(nodes), k))
        for i, (u, t) in enumerate(zip(nodes, times)):
            r = np.searchsorted(self.ts[u], t, side="left")
            if r == 0:
                continue
            if mode == "uniform":
                idx = np.sort(rng.randint(0, r, k))
            elif mode == "recent" or r <= k:
                idx = np.arange(max(0, r - k), r)
            else:  # tds: successive sampling without replacement, p ∝ exp(α τ)
                w = alpha[u] * (self.ts[u][:r] - t_min) / scale
                p = np.exp(w - w.max())
                idx = np.sort(rng.choice(r, k, replace=False, p=p / p.sum()))
            out_n[i, :len(idx)], out_e[i, :len(idx)], out_t[i, :len(idx)] = (
                self.nbr[u][idx], self.eid[u][idx], self.ts[u][idx])
        return out_n, out_e, out_t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench_cpu.json")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch", type=int, default=6600,
                    help="queries per index call: one training batch of a 2-layer model issues 200 events × 3 "
                         "roots = 600 first-hop queries, then 600 × K = 6000 second-hop queries")
    ap.add_argument("--batches", type=int, default=10, help="index calls to time")
    ap.add_argument("--loop-queries", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5, help="best of N timings (CPU time of this process)")
    args = ap.parse_args()
    root = os.environ.get("TENFOLD_DATA")
    path = Path(root or "") / "ia_hypertext" / "events.csv"
    if root and path.is_file():
        stream, name = from_events_csv(path), "ia_hypertext"
    else:
        stream, name = preference_stream(num_events=20000, seed=0)[0], "synthetic (20k events)"
    d = stream.data
    csr = TemporalCSR(d.src, d.dst, d.t, stream.num_nodes)
    loop = LoopFinder(d.src, d.dst, d.t, stream.num_nodes)
    rng = np.random.RandomState(0)
    g = torch.Generator().manual_seed(0)
    B = args.batch
    nq = B * args.batches
    pick = torch.randint(0, d.src.numel(), (nq,), generator=g)
    nodes = torch.where(torch.rand(nq, generator=g) < 0.5, d.src[pick], d.dst[pick])
    times = d.t[pick]
    alpha = torch.from_numpy(rng.uniform(0, 100, stream.num_nodes + 1))
    t_min, scale = float(d.t.min()), float(d.t.max() - d.t.min())
    samplers = {"uniform": UniformSampler(csr, args.k), "recent": RecentSampler(csr, args.k),
                "tds": TimeDecaySampler(csr, args.k, alpha, t_min, scale, cache_mode="resample")}
    frozen = TimeDecaySampler(csr, args.k, alpha, t_min, scale, cache_mode="frozen")
    res = {"batch": B, "data": name, "device": device_name(torch.device("cpu")), "k": args.k,
           "threads": torch.get_num_threads()}
    clock = time.process_time  # CPU time of this process: robust to other jobs time-slicing the cores

    def best(fn, repeat):
        times_ = []
        for _ in range(repeat):
            t0 = clock()
            fn()
            times_.append(clock() - t0)
        return min(times_)

    def run_index(s):
        for b in range(args.batches):
            s(nodes[b * B:(b + 1) * B], times[b * B:(b + 1) * B])

    lq = args.loop_queries
    ln, lt = nodes[:lq].tolist(), times[:lq].tolist()
    for mode, s in samplers.items():
        s(nodes[:B], times[:B])  # warm-up
        idx_qps = nq / best(lambda s=s: run_index(s), args.repeat)
        loop_qps = lq / best(lambda m=mode: loop.sample(ln, lt, args.k, m, rng, alpha.numpy(), t_min, scale),
                             args.repeat)
        res[mode] = {"index_qps": idx_qps, "loop_qps": loop_qps, "ratio": idx_qps / loop_qps}
        print(f"{mode:8s} index {idx_qps:12,.0f} q/s   per-query loop {loop_qps:10,.0f} q/s   "
              f"ratio {idx_qps / loop_qps:6.1f}x")
    # TDS as trained (official frozen cache): after the first touch of a (node, prefix) key it is a lookup
    run_index(frozen)  # first touch fills the cache
    fq = nq / best(lambda: run_index(frozen), args.repeat)
    res["tds_frozen_warm"] = {"index_qps": fq, "ratio_vs_loop_tds": fq / res["tds"]["loop_qps"]}
    print(f"tds (frozen cache, warm) index {fq:12,.0f} q/s   ratio vs per-query TDS loop "
          f"{fq / res['tds']['loop_qps']:.1f}x")
    write_json(args.out, res)
    print(f"ratio A/B: {res['uniform']['ratio']:.2f}  (A = vectorised index, B = per-query loop; uniform "
          f"sampling, K={args.k}, {B} queries per call, {name}, {torch.get_num_threads()} thread(s), "
          f"best of {args.repeat} by process CPU time)")


if __name__ == "__main__":
    main()
