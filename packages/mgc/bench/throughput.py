"""GPU training throughput (spec 7c): ViT-S/16 at 224 px with the full MGC heads (3 x proj/pred 4096),
bf16 autocast, synthetic views and pre-computed random valid correspondences (loader excluded),
20 warm-up + 50 timed steps; MGC (levels {1,2,7}) vs global-only (levels {14}, K 1) in one run.

    python bench/throughput.py --batch 128 256 --out bench/results/gpu_throughput.json
"""
from __future__ import annotations

import argparse
import random

import numpy as np
import torch
from mgc.config import ModelConfig
from mgc.correspondence import OFFICIAL_STRIDE_RULES, multigrain_correspondence, sample_view_boxes
from mgc.method import clip_per_parameter
from mgc.model import MGC
from tenfold import runtime
from tenfold.bench import device_name, peak_memory, time_it, write_json


def correspondences(cfg: ModelConfig, batch: int, device, rules) -> list:
    rng = random.Random(0)
    per = [[] for _ in cfg.levels]
    for _ in range(batch):
        b1, b2 = sample_view_boxes(640, 480, rng=rng)
        f1, f2 = rng.random() < 0.5, rng.random() < 0.5
        for i, (c, k) in enumerate(zip(cfg.levels, cfg.pairs)):
            per[i].append(multigrain_correspondence(b1, b2, f1, f2, cfg.grid // c, k, rules[i]))
    return [tuple(torch.as_tensor(np.stack([p[j] for p in lv])).to(device) for j in range(3))
            for lv in per]


def measure(cfg: ModelConfig, batch: int, device, rules, warmup: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = MGC(cfg).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    x1 = torch.randn(batch, 3, cfg.img_size, cfg.img_size, device=device)
    x2 = torch.randn_like(x1)
    corr = correspondences(cfg, batch, device, rules)

    def step():
        with runtime.autocast(device):
            loss, _ = model(x1, x2, corr, 0.996)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_per_parameter(params, 3.0)
        opt.step()

    t = time_it(step, warmup=warmup, repeat=steps, device=device)
    mem = peak_memory(step, device)
    return {"batch": batch, "step_s": t["median_s"], "pairs_per_s": batch / t["median_s"], "peak_mem_gb": mem / 2**30}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[128, 256])
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="bench/results/gpu_throughput.json")
    args = p.parse_args()
    dev = runtime.select_device(args.device)
    mgc = ModelConfig()
    glob = ModelConfig(levels=[14], pairs=[1])
    rows = []
    for b in args.batch:
        try:
            m = measure(mgc, b, dev, OFFICIAL_STRIDE_RULES, args.warmup, args.steps)
            g = measure(glob, b, dev, [None], args.warmup, args.steps)
        except torch.OutOfMemoryError:
            print(f"batch {b}: out of memory, skipped")
            continue
        rows.append({"batch": b, "mgc": m, "global": g, "ratio_pairs_per_s": m["pairs_per_s"] / g["pairs_per_s"]})
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    write_json(args.out, {"device": device_name(dev), "rows": rows})
    print(f"ViT-S/16 224 px, bf16, {device_name(dev)}")
    print(f"{'batch':>5} {'MGC pairs/s':>12} {'MGC GB':>7} {'global pairs/s':>15} {'global GB':>9} {'ratio':>6}")
    for r in rows:
        print(f"{r['batch']:>5} {r['mgc']['pairs_per_s']:>12.0f} {r['mgc']['peak_mem_gb']:>7.1f} "
              f"{r['global']['pairs_per_s']:>15.0f} {r['global']['peak_mem_gb']:>9.1f} {r['ratio_pairs_per_s']:>6.2f}")


if __name__ == "__main__":
    main()
