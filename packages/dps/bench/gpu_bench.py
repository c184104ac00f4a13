"""GPU benchmark (spec §7c + the issue's GPU command), one process, wall-clock budgeted.

1. Sampler throughput on a Wikipedia-scale synthetic stream (8,227 users, 1,000 items, 157,474 events,
   172-d Gaussian edge features; preference generator): queries/s for uniform, most-recent, TDS (frozen cache)
   and GAS lookup, batch 200 events × 3 roots × 2 layers; GAS top-K precompute seconds for all (node, prefix).
2. Training throughput: 1 epoch DPS (L=2, K=10+10, D=128, H=2, bs 200) vs TGAT-uniform (L=2, K=20), same code:
   events/s, epoch seconds, peak memory, and the DPS/TGAT epoch-time ratio. Inference events/s (val + test).
3. Real data: DPS vs TGAT-uniform vs TGAT-recent on the graphs under $TENFOLD_DATA (paper graphs first),
   official hyperparameters (L=2, D=128, 10+10 vs 20, lr 1e-4, early stopping) capped at --epochs, one seed;
   runs that do not fit in --budget-s are skipped and listed. AUC/AP/acc/F1 and training events/s.
Throughput parts use a randomly initialised GAS model and random α (timing only, no learning claims).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import torch
from dps.config import DPSConfig
from dps.data import preference_stream
from dps.gas import build_gas_model, precompute_topk
from dps.pipeline import evaluate, prepare, run_epoch
from dps.samplers import RecentSampler, TableSampler, TimeDecaySampler, UniformSampler
from dps.train import build_model, train_link
from tenfold import config as config_mod
from tenfold import runtime
from tenfold.bench import device_name, write_json

PAPER = ["ia_hypertext", "ia_contact", "fb_forum", "bitcoinotc"]
OTHERS = ["uci", "bitcoinalpha", "ia_enron_employees", "sfhh", "enron"]


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def wiki_stream(smoke: bool):
    kw = dict(num_users=300, num_items=60, num_events=6000) if smoke else \
        dict(num_users=8227, num_items=1000, num_events=157474)
    stream, _ = preference_stream(**kw, seed=0)
    stream.data.msg = torch.randn(stream.num_events, 172, generator=torch.Generator().manual_seed(0))
    return stream


def base_cfg(out, device, **ov):
    items = [f"out={out}", f"device={device}", "data.format=synthetic"] + [f"{k}={v}" for k, v in ov.items()]
    return config_mod.load(DPSConfig, None, items)


def throughput(args, dev, res):
    stream = wiki_stream(args.smoke)
    cfg = base_cfg(args.out + "/tp", dev, **{"data.use_rating": False})
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, node_dim=args.dim))
    prep = prepare(cfg, dev, stream)
    if args.smoke:  # a few batches only: the script path is what a smoke run checks
        prep.train = tuple(x[:600] for x in prep.train)
        prep.val, prep.test = (tuple(x[:400] for x in prep.val), tuple(x[:400] for x in prep.test))
    csr = prep.csr
    k = 10
    g = torch.Generator().manual_seed(0)
    alpha = torch.rand(stream.num_nodes + 1, generator=g) * 100
    t0 = time.perf_counter()
    gas_model = build_gas_model(stream.num_nodes, args.dim, stream.num_events, prep.edge_feat).to(dev)
    table = precompute_topk(gas_model, csr, k)
    sync(dev)
    res["gas_precompute_s"] = time.perf_counter() - t0
    samplers = {"uniform": UniformSampler(csr, k), "recent": RecentSampler(csr, k),
                "tds_frozen": TimeDecaySampler(csr, k, alpha, prep.tds_t_min, prep.tds_scale, "frozen"),
                "gas_lookup": TableSampler(csr, k, table)}
    src, dst, t = prep.train
    qs = {}
    for name, s in samplers.items():
        n_q = 0
        s(src[:600], t[:600])
        sync(dev)
        t0 = time.perf_counter()
        for b in range(0, min(src.numel(), 200 * (3 if args.smoke else 50)), 200):
            roots = torch.cat([src[b:b + 200], dst[b:b + 200], dst[b:b + 200].flip(0)])
            tt = torch.cat([t[b:b + 200]] * 3)
            nb, _, tn = s(roots, tt)  # layer 2 queries
            s(nb.reshape(-1), tn.reshape(-1))  # layer 1 queries at the neighbours' times
            n_q += roots.numel() * (1 + k)
        sync(dev)
        qs[name] = n_q / (time.perf_counter() - t0)
    res["sampler_queries_per_s"] = qs
    # training / inference: 1 epoch each model, same code
    for arm in ("dps", "tgat"):
        m = build_model(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name=arm, n_layer=2)),
                        prep, 2 if arm == "dps" else 1).to(dev)
        sm = ([TableSampler(csr, k, table), TimeDecaySampler(csr, k, alpha, prep.tds_t_min, prep.tds_scale)]
              if arm == "dps" else [UniformSampler(csr, 2 * k)])
        opt = torch.optim.Adam(m.parameters(), lr=1e-4)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        sync(dev)
        t0 = time.perf_counter()
        run_epoch(m, sm, opt, prep.train, 200, prep.train_dst, dev)
        sync(dev)
        ep = time.perf_counter() - t0
        t1 = time.perf_counter()
        evaluate(m, sm, prep.val, 200, 0, device=dev)
        evaluate(m, sm, prep.test, 200, 1, device=dev)
        sync(dev)
        inf = (prep.val[0].numel() + prep.test[0].numel()) / (time.perf_counter() - t1)
        res[f"train_{arm}"] = {"epoch_s": ep, "events_per_s": src.numel() / ep, "inference_events_per_s": inf,
                               "peak_mem_gb": torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda"
                               else None}
    res["dps_over_tgat_epoch_time"] = res["train_dps"]["epoch_s"] / res["train_tgat"]["epoch_s"]


def real_data(args, dev, res, t_start):
    root = os.environ.get("TENFOLD_DATA")
    rows, skipped, longest = [], [], 0.0
    graphs = [g for g in args.graphs.split(",") if g] if args.graphs else PAPER + OTHERS
    arms = [("dps", "dps", "uniform"), ("tgat-uniform", "tgat", "uniform"), ("tgat-recent", "tgat", "recent")]
    for g in graphs:
        if not root or not (Path(root) / g / "events.csv").is_file():
            skipped.append(f"{g} (no data)")
            continue
        for label, name, samp in arms:
            if time.perf_counter() - t_start + longest > args.budget_s:  # the next run must fit too
                skipped.append(f"{g}/{label} (budget)")
                continue
            ov = [f"data.name={g}", f"model.name={name}", f"model.tgat_sampler={samp}", f"train.epochs={args.epochs}",
                  f"gas.epochs={args.epochs}", "gas.finetune=false", f"out={args.out}/real/{g}/{label}",
                  f"device={dev}", f"data_root={root}", f"model.node_dim={args.dim}", "seed=0"]
            if args.smoke:
                ov += ["data.max_events=3000", "model.n_layer=1"]
            cfg = config_mod.load(DPSConfig, Path(__file__).resolve().parents[1] / "configs" / "ia-contact.yaml", ov)
            t0 = time.perf_counter()
            s = train_link(cfg, log=lambda *a: None)
            longest = max(longest, time.perf_counter() - t0)
            rows.append({"graph": g, "arm": label, "auc": s["test_auc"], "ap": s["test_ap"], "acc": s["test_acc"],
                         "f1": s["test_f1"], "train_events_per_s": s["train_events_per_s"], "epochs": s["epochs"],
                         "seconds": time.perf_counter() - t0})
            print(f"{g:20s} {label:13s} auc {s['test_auc']:.4f} ap {s['test_ap']:.4f} "
                  f"({time.perf_counter() - t0:.0f}s)", flush=True)
    res["real"] = rows
    res["skipped"] = skipped


def main():
    ap = argparse.ArgumentParser(description="DPS GPU benchmark (throughput + real-data comparison)")
    ap.add_argument("--out", default="runs/gpu-bench")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=5, help="epoch cap of the real-data runs (spec: ≤ 10)")
    ap.add_argument("--budget-s", type=float, default=400, help="wall-clock budget; later real-data runs skip")
    ap.add_argument("--graphs", default="", help="comma-separated graph folders (default: all nine)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script end to end on a CPU")
    args = ap.parse_args()
    t_start = time.perf_counter()
    dev = runtime.select_device(args.device)
    runtime.seed_everything(0)
    res = {"device": device_name(dev), "smoke": args.smoke}
    throughput(args, dev, res)
    real_data(args, dev, res, t_start)
    res["total_s"] = time.perf_counter() - t_start
    write_json(Path(args.out) / "gpu_bench.json", res)
    q = res["sampler_queries_per_s"]
    print(f"\n== DPS GPU benchmark on {res['device']} ({res['total_s']:.0f}s) ==")
    print("sampler q/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in q.items()) +
          f"; GAS precompute {res['gas_precompute_s']:.1f}s")
    for arm in ("dps", "tgat"):
        r = res[f"train_{arm}"]
        print(f"train {arm:5s}: {r['events_per_s']:,.0f} events/s, epoch {r['epoch_s']:.1f}s, inference "
              f"{r['inference_events_per_s']:,.0f} events/s, peak mem {r['peak_mem_gb'] or 0:.2f} GB")
    print(f"DPS / TGAT-uniform epoch time: {res['dps_over_tgat_epoch_time']:.2f}")
    print("| graph | arm | AUC | AP | acc | F1 | train ev/s |\n|---|---|---|---|---|---|---|")
    for r in res["real"]:
        print(f"| {r['graph']} | {r['arm']} | {r['auc']:.4f} | {r['ap']:.4f} | {r['acc']:.4f} | {r['f1']:.4f} | "
              f"{r['train_events_per_s'] or 0:,.0f} |")
    if res["skipped"]:
        print("skipped: " + ", ".join(res["skipped"]))
    print(json.dumps({"json": str(Path(args.out) / "gpu_bench.json")}))


if __name__ == "__main__":
    main()
