"""DPS GPU benchmark (issue #17 contract): writes <out>/dps.json after every measurement.

On a Wikipedia-scale synthetic stream (8,227 users, 1,000 items, 157,474 events, 172-d edge features; the
spec §7c generator; no data files needed):
1. neighbour index build time, and the index speed-up: vectorised uniform sampling on the device vs the
   per-query Python loop of TGAT's NeighborFinder (`bench/cpu.py`'s baseline, on the CPU);
2. sampler queries/s (uniform, most recent, TDS frozen cache, leak-free lazy GAS, official GAS lookup) and
   the official GAS top-K precompute (estimated cost and seconds);
3. training events/s and peak memory for DPS (L=2, 10 GAS + 10 TDS, D=128, leak-free GAS) and TGAT-uniform
   (K=20) in fp32 and bf16 (cfg.precision through tenfold.runtime.autocast), the bf16/fp32 speed-up and the
   paper-specific DPS/TGAT time ratio (spec: ≤ 1.3×); inference events/s;
4. with budget left (or --long) and the graphs under --data-root: test AUC of leak-free DPS vs DPS with the
   official t* vs TGAT-uniform on ia_hypertext (official hyperparameters, few epochs).
Random GAS weights and α in parts 1-3 (timing only). --smoke: the same code path on the CPU with tiny sizes.
Usage: python packages/dps/bench/gpu.py --out DIR [--smoke] [--budget S] [--data-root D] [--long]
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from dps.config import DPSConfig
from dps.data import preference_stream
from dps.gas import build_gas_model, gas_precompute_cost, gas_sampler, precompute_topk
from dps.pipeline import evaluate, prepare, run_epoch
from dps.samplers import RecentSampler, TimeDecaySampler, UniformSampler
from dps.tcsr import TemporalCSR
from dps.train import build_model, train_link
from tenfold import config as config_mod
from tenfold import runtime
from tenfold.bench import gpu_parser, gpu_report

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu import LoopFinder  # noqa: E402  (the per-query baseline lives beside this script)

FULL = dict(num_users=8227, num_items=1000, num_events=157474, dim=128, batches=20, batch=200, loop_queries=3000)
SMOKE = dict(num_users=120, num_items=40, num_events=2500, dim=16, batches=2, batch=20, loop_queries=300)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev):
    sync(dev)
    t0 = time.perf_counter()
    out = fn()
    sync(dev)
    return time.perf_counter() - t0, out


def peak_mib(fn, dev):
    """(seconds, peak MiB) of fn: CUDA allocator peak on the GPU, None on the CPU (no allocator statistics)."""
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    s, _ = timed(fn, dev)
    return s, (torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None)


def wiki_stream(sz):
    stream, _ = preference_stream(num_users=sz["num_users"], num_items=sz["num_items"],
                                  num_events=sz["num_events"], seed=0)
    stream.data.msg = torch.randn(stream.num_events, 172, generator=torch.Generator().manual_seed(0))
    return stream


def index_rows(rep, stream, dev, sz):
    d = stream.data
    s, csr = timed(lambda: TemporalCSR(d.src, d.dst, d.t, stream.num_nodes, device=dev), dev)
    rep.row(f"index build ({stream.num_events} events)", s, "s")
    k, g = 10, torch.Generator().manual_seed(0)
    pick = torch.randint(0, d.src.numel(), (6600,), generator=g)
    nodes, times = d.src[pick].to(dev), d.t[pick].to(dev)
    uni = UniformSampler(csr, k)
    uni(nodes, times)
    s, _ = timed(lambda: [uni(nodes, times) for _ in range(10)], dev)
    index_qps = 66000 / s
    loop = LoopFinder(d.src, d.dst, d.t, stream.num_nodes)
    n = sz["loop_queries"]
    ln, lt = d.src[pick[:n]].tolist(), d.t[pick[:n]].tolist()
    s_loop, _ = timed(lambda: loop.sample(ln, lt, k, "uniform", np.random.RandomState(0)), torch.device("cpu"))
    rep.row("uniform sampling, vectorised index", index_qps, "queries/s")
    rep.row("index speed-up over the per-query loop (uniform, K=10)", index_qps / (n / s_loop), "x")
    return csr


def sampler_rows(rep, prep, dev, dim):
    csr, n = prep.csr, prep.stream.num_nodes
    g = torch.Generator().manual_seed(0)
    alpha = torch.rand(n + 1, generator=g) * 100
    gas_model = build_gas_model(n, dim, prep.stream.num_events, prep.edge_feat).to(dev).eval()
    k = 10
    est = gas_precompute_cost(csr.degree, k, None, dim)
    rep.row("official GAS precompute, estimated cost", est, "element-ops")
    table = None
    if est < 2e11:
        s, table = timed(lambda: precompute_topk(gas_model, csr, k), dev)
        rep.row("official GAS precompute (all (node, prefix) pairs)", s, "s")
    samplers = {"uniform": UniformSampler(csr, k), "most recent": RecentSampler(csr, k),
                "TDS frozen cache": TimeDecaySampler(csr, k, alpha, prep.tds_t_min, prep.tds_scale, "frozen"),
                "GAS leak-free (lazy)": gas_sampler(gas_model, csr, k, "lazy")}
    if table is not None:
        samplers["GAS official lookup"] = gas_sampler(gas_model, csr, k, "official", table=table)
    src, dst, t = prep.train
    for name, smp in samplers.items():
        def run(smp=smp):
            q = 0
            for b in range(0, min(src.numel(), 200 * 5), 200):  # 200 events × 3 roots, then their K neighbours
                roots = torch.cat([src[b:b + 200], dst[b:b + 200], dst[b:b + 200].flip(0)])
                nb, _, tn = smp(roots, torch.cat([t[b:b + 200]] * 3))
                smp(nb.reshape(-1), tn.reshape(-1))
                q += roots.numel() * (1 + k)
            return q
        run()  # warm-up (fills the TDS cache as training would)
        s, q = timed(run, dev)
        rep.row(f"sampler {name}", q / s, "queries/s")
    return gas_model, alpha, table


def training_rows(rep, cfg, prep, dev, gas_model, alpha, batches, bs):
    src = prep.train[0]
    nb = min(batches, max(1, src.numel() // bs - 1))
    events = tuple(x[bs:bs * (nb + 1)] for x in prep.train)  # first batch is the warm-up
    warm = tuple(x[:bs] for x in prep.train)
    k = 10
    res = {}
    for arm in ("dps", "tgat"):
        for prec in ("fp32", "bf16"):
            if rep.remaining() < (2 if rep.smoke else 10) and res:
                rep.row(f"train {arm} {prec}", None, "events/s (skipped: budget)")
                continue
            c = dataclasses.replace(cfg, precision=prec, model=dataclasses.replace(cfg.model, name=arm, n_layer=2))
            torch.manual_seed(0)
            model = build_model(c, prep, 2 if arm == "dps" else 1).to(dev)
            sm = ([gas_sampler(gas_model, prep.csr, k, "lazy"),
                   TimeDecaySampler(prep.csr, k, alpha, prep.tds_t_min, prep.tds_scale)]
                  if arm == "dps" else [UniformSampler(prep.csr, 2 * k)])
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            run_epoch(model, sm, opt, warm, bs, prep.train_dst, dev, prec)
            s, mib = peak_mib(lambda m=model, sm=sm, o=opt, p=prec: run_epoch(m, sm, o, events, bs, prep.train_dst,
                                                                               dev, p), dev)
            res[arm, prec] = s
            rep.row(f"train {arm} {prec} (L=2, D={cfg.model.node_dim}, batch {bs})", events[0].numel() / s,
                    "events/s")
            rep.row(f"train {arm} {prec} peak memory", mib, "MiB")
            if arm == "dps" and prec == "bf16":
                val = tuple(x[:bs * nb] for x in prep.val)
                s_inf, _ = timed(lambda m=model, sm=sm, v=val: evaluate(m, sm, v, bs, 0, device=dev, precision="bf16"),
                                 dev)
                rep.row("inference dps bf16 (val events)", val[0].numel() / s_inf, "events/s")
    for arm in ("dps", "tgat"):
        if (arm, "fp32") in res and (arm, "bf16") in res:
            rep.row(f"{arm} bf16 speed-up over fp32", res[arm, "fp32"] / res[arm, "bf16"], "x")
    for prec in ("fp32", "bf16"):
        if ("dps", prec) in res and ("tgat", prec) in res:
            rep.row(f"DPS / TGAT-uniform training time ({prec}; spec: ≤ 1.3)", res["dps", prec] / res["tgat", prec],
                    "ratio")


def real_rows(rep, args, dev, smoke):
    root = args.data_root or os.environ.get("TENFOLD_DATA")
    if not root or not (Path(root) / "ia_hypertext" / "events.csv").is_file():
        rep.row("real data ia_hypertext", None, "AUC (skipped: no data under --data-root)")
        return
    arms = [("DPS leak-free", ["model.name=dps"]), ("DPS official t*", ["model.name=dps", "gas.mode=official"]),
            ("TGAT-uniform", ["model.name=tgat", "model.tgat_sampler=uniform"])]
    for label, ov in arms:
        if rep.remaining() < (5 if smoke else 60):
            rep.row(f"ia_hypertext {label}", None, "test AUC (skipped: budget)")
            continue
        items = ov + [f"out={args.out}/dps-real/{label.replace(' ', '_')}", f"device={dev}", f"data_root={root}",
                      "seed=0", f"train.epochs={1 if smoke else 5}", f"gas.epochs={1 if smoke else 5}",
                      "gas.finetune=false"]
        if smoke:
            items += ["data.max_events=2000", "model.n_layer=1", "model.node_dim=16"]
        cfg = config_mod.load(DPSConfig, Path(__file__).resolve().parents[1] / "configs" /
                              "ia-contacts-hypertext2009.yaml", items)
        s = train_link(cfg, log=lambda *a: None)
        rep.row(f"ia_hypertext {label} test AUC", s["test_auc"], "AUC")
        rep.row(f"ia_hypertext {label} training", s["train_events_per_s"], "events/s")


def main(argv=None):
    args = gpu_parser("dps", "DPS: index, samplers, training events/s, bf16 vs fp32, DPS/TGAT ratio").parse_args(argv)
    rep = gpu_report("dps", args)
    dev = rep.device
    sz = SMOKE if args.smoke else FULL
    runtime.seed_everything(0)
    stream = wiki_stream(sz)
    index_rows(rep, stream, dev, sz)
    cfg = config_mod.load(DPSConfig, None, [f"out={args.out}/dps-tp", f"device={dev}", "data.format=synthetic",
                                            f"model.node_dim={sz['dim']}"])
    prep = prepare(cfg, dev, stream)
    gas_model, alpha, _ = sampler_rows(rep, prep, dev, sz["dim"])
    training_rows(rep, cfg, prep, dev, gas_model, alpha, sz["batches"], sz["batch"])
    if args.long or args.smoke or rep.remaining() > 120:
        real_rows(rep, args, dev, args.smoke)
    print(f"dps: wrote {rep.path}")


if __name__ == "__main__":
    main()
