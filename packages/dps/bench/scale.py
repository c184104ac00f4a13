"""Measured growth (issue #18): time and peak memory of each DPS stage on a JODIE-like heavy-tailed synthetic
graph (`dps.data.jodie_like_stream`: Pareto user activity, Zipf item popularity, repeats; 172-d edge features
as JODIE's) at several sizes, each size in a fresh process so its peak RSS is its own.

Stages: neighbour index build (the full-graph temporal CSR); prepare (split, evaluation negatives, training and
evaluation indices); α fit (all nodes at once); leak-free GAS setup (static per-entry scores of a random-weight
G; pretraining is a training epoch of a 1-layer model and is not timed separately); the official exact GAS
top-K precompute — run when its estimated cost is within --gas-budget, else reported as refused with the
estimate; and DPS training at D = 32 (1 layer, 5 GAS + 5 TDS, batch 200, cpu-proof settings): the first
--batches batches, evenly spaced over the epoch, are timed and the epoch time is extrapolated from them
(--full-epoch runs the whole epoch).
Peak memory per stage = peak bytes of tensors allocated inside it (tenfold.bench.peak_memory's tracker);
"RSS" = the process's maximum resident set after the stage.

Usage: OMP_NUM_THREADS=1 python bench/scale.py [--sizes 100000,300000,700000] [--out runs/scale.json]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from dps.alpha import fit_alpha
from dps.config import DPSConfig
from dps.data import jodie_like_stream
from dps.gas import build_gas_model, gas_precompute_cost, gas_sampler, precompute_topk
from dps.pipeline import prepare, train_step
from dps.samplers import TimeDecaySampler
from dps.tcsr import TemporalCSR
from dps.train import build_model
from tenfold import config as config_mod
from tenfold.bench import TensorMemoryTracker


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage(res, name, fn, track=True):
    t0, c0 = time.perf_counter(), time.process_time()
    if track:
        with TensorMemoryTracker() as tr:
            out = fn()
        peak = tr.peak / 2**20
    else:
        out, peak = fn(), None
    res[name] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "tensor_peak_mib": peak,
                 "rss_mib": rss_mib()}
    print(f"  {name}: {res[name]['cpu_s']:.1f} s CPU, tensors {peak or 0:.0f} MiB, RSS {rss_mib():.0f} MiB",
          flush=True)
    return out


def one(n: int, args) -> dict:
    torch.manual_seed(0)
    users, items = int(10_000 * min(1.0, n / 672_447) ** 0.5) + 1_000, 984
    stream = jodie_like_stream(n, users, items, edge_dim=172, seed=0)
    d = stream.data
    deg = torch.bincount(torch.cat([d.src, d.dst]))
    res = {"events": n, "nodes": stream.num_nodes, "max_degree": int(deg.max())}
    print(f"{n} events, {stream.num_nodes} nodes, max degree {res['max_degree']}", flush=True)
    stage(res, "index build", lambda: TemporalCSR(d.src, d.dst, d.t, stream.num_nodes))
    cfg = config_mod.load(DPSConfig, None, ["out=/tmp/dps-scale", "device=cpu", "data.format=synthetic",
                                            "model.node_dim=32", "model.n_layer=1", "model.n_degree=10"])
    prep = stage(res, "prepare (split, negatives, indices)", lambda: prepare(cfg, torch.device("cpu"), stream))
    tr_t = prep.train[2]
    alpha = stage(res, "alpha fit", lambda: fit_alpha(prep.train_csr, float(tr_t.min()),
                                                      float(tr_t.max() - tr_t.min()) or 1.0)[0])
    gas_model = build_gas_model(stream.num_nodes, 32, n, prep.edge_feat).eval()
    lazy = stage(res, "GAS leak-free setup (static scores)", lambda: gas_sampler(gas_model, prep.csr, 5, "lazy"))
    est = gas_precompute_cost(prep.csr.degree, 5, None, 32)
    res["GAS official precompute estimate (element-ops)"] = est
    if est <= args.gas_budget:
        stage(res, "GAS official precompute (exact)", lambda: precompute_topk(gas_model, prep.csr, 5))
    else:
        print(f"  GAS official precompute: refused, estimate {est:.3g} > budget {args.gas_budget:.3g}", flush=True)
    samplers = [lazy, TimeDecaySampler(prep.csr, 5, alpha, prep.tds_t_min, prep.tds_scale)]
    model = build_model(cfg, prep, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    src, dst, t = prep.train
    n_b = (src.numel() + 199) // 200 if args.full_epoch else min(args.batches, (src.numel() + 199) // 200)

    total_b = (src.numel() + 199) // 200
    # evenly spaced over the epoch: early batches have short histories, late ones long (heavy tails grow)
    picks = torch.linspace(0, total_b - 1, n_b).round().long().unique().tolist()

    def epoch():
        for b in picks:
            s = slice(200 * b, 200 * (b + 1))
            train_step(model, samplers, opt, (src[s], dst[s], t[s]), prep.train_dst, torch.device("cpu"))

    stage(res, f"training, {n_b} batches", epoch)
    per = res[f"training, {n_b} batches"]
    res["train events/s (CPU time)"] = sum(min(200, src.numel() - 200 * b) for b in picks) / per["cpu_s"]
    res["epoch CPU s (extrapolated)" if not args.full_epoch else "epoch CPU s"] = src.numel() / \
        res["train events/s (CPU time)"]
    res["train events"] = int(src.numel())
    res["max RSS MiB"] = rss_mib()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,300000,700000")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--full-epoch", action="store_true")
    ap.add_argument("--gas-budget", type=float, default=1e10, help="element-ops (default 1e10 ≈ minutes on a CPU)")
    ap.add_argument("--out", default="runs/scale.json")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args)), flush=True)
        return
    results = []
    for n in [int(x) for x in args.sizes.split(",")]:
        cmd = [sys.executable, __file__, "--one", str(n), "--batches", str(args.batches),
               "--gas-budget", str(args.gas_budget)] + (["--full-epoch"] if args.full_epoch else [])
        out = subprocess.run(cmd, capture_output=True, text=True)
        sys.stdout.write("\n".join(line for line in out.stdout.splitlines() if not line.startswith("{")) + "\n")
        if out.returncode:
            print(out.stderr[-2000:])
            break
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    keys = ["index build", "prepare (split, negatives, indices)", "alpha fit", "GAS leak-free setup (static scores)",
            "GAS official precompute (exact)"]
    print("| events | nodes | max deg | " + " | ".join(keys) + " | training events/s | epoch (extrap.) | max RSS |")
    print("|---" * (len(keys) + 6) + "|")
    for r in results:
        cells = [f"{r[k]['cpu_s']:.1f} s / {r[k]['tensor_peak_mib']:.0f} MiB" if k in r else
                 f"refused (est. {r['GAS official precompute estimate (element-ops)']:.2g})" for k in keys]
        ep = r.get("epoch CPU s (extrapolated)", r.get("epoch CPU s"))
        print(f"| {r['events']:,} | {r['nodes']:,} | {r['max_degree']:,} | " + " | ".join(cells) +
              f" | {r['train events/s (CPU time)']:.0f} | {ep / 60:.1f} min | {r['max RSS MiB'] / 1024:.2f} GiB |")


if __name__ == "__main__":
    main()
