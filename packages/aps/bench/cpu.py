"""CPU benchmark: one APS optimizer sub-step (n = r·M kept tokens per view) vs one full-token step
(MoCo-v3-style, all M tokens, same network and loss), measured in ONE process; plus the sampler cost.

    OMP_NUM_THREADS=1 python bench/cpu.py [--arch demo|tiny] [--batch 128] [--out runs/bench-cpu/cpu.json]
Prints "ratio full/APS step time: X" (the issue's goal: ≥ 3 at r = 0.25) and the peak-memory ratio.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from aps.config import ModelConfig, OptimConfig
from aps.model import APSModel, build_backbone
from aps.sampling import asymmetric_patch_sampling, non_overlap_ratio, non_overlap_ratio_loop, random_resized_crop_box
from aps.train import build_optimizer, pretrain_step
from tenfold.bench import device_name, peak_memory, time_it, write_json

ARCHS = {"demo": dict(img_size=32, patch_size=4, embed_dim=96, depth=4, num_heads=3, hidden_dim=256, out_dim=64),
         "tiny": dict(img_size=32, patch_size=2, embed_dim=192, depth=12, num_heads=3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=list(ARCHS), default="demo")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--ratio", type=float, default=0.25)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/bench-cpu/cpu.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    mcfg = ModelConfig(**ARCHS[args.arch])
    dev = torch.device("cpu")
    model = APSModel(build_backbone(mcfg), mcfg.hidden_dim, mcfg.out_dim)
    opt = build_optimizer(model, OptimConfig(batch_size=args.batch))
    g = mcfg.img_size // mcfg.patch_size
    m = g * g
    n = int(m * args.ratio)
    x1, x2 = torch.randn(args.batch, 3, mcfg.img_size, mcfg.img_size), torch.randn(args.batch, 3, mcfg.img_size,
                                                                                    mcfg.img_size)
    idx = torch.stack([torch.randperm(m)[:n] for _ in range(2 * args.batch)]).view(2, args.batch, 1, n)
    aps_batch = ((x1, idx[0], x2, idx[1]), None)  # K = 1: time ONE optimizer sub-step
    full_batch = ((x1, idx[0], x2, idx[1]), None)

    def aps():
        pretrain_step(model, opt, aps_batch, device=dev, tau=0.1, full_tokens=False)

    def full():
        pretrain_step(model, opt, full_batch, device=dev, tau=0.1, full_tokens=True)

    res = {"device": device_name(dev), "arch": args.arch, "batch": args.batch, "tokens_aps": n, "tokens_full": m}
    # interleave the two arms so background load affects both alike
    t_aps, t_full = [], []
    for _ in range(2):
        aps(), full()
    for _ in range(args.repeat):
        t_aps.append(time_it(aps, warmup=0, repeat=1)["median_s"])
        t_full.append(time_it(full, warmup=0, repeat=1)["median_s"])
    res["aps_step_s"], res["full_step_s"] = float(np.median(t_aps)), float(np.median(t_full))
    res["aps_peak_bytes"], res["full_peak_bytes"] = peak_memory(aps), peak_memory(full)
    res["ratio_time_full_over_aps"] = res["full_step_s"] / res["aps_step_s"]
    res["ratio_mem_full_over_aps"] = res["full_peak_bytes"] / res["aps_peak_bytes"]

    rng = np.random.default_rng(0)
    boxes = [(random_resized_crop_box(32, 32, rng=rng), random_resized_crop_box(32, 32, rng=rng)) for _ in range(200)]
    t0 = time.perf_counter()
    for b1, b2 in boxes:
        asymmetric_patch_sampling(b1, b2, False, True, 16, 0.25, 4, 3.0, rng, True)
    res["sampler_ms_per_image"] = (time.perf_counter() - t0) / len(boxes) * 1e3
    i1 = rng.permutation(256)[:64]
    t0 = time.perf_counter()
    for b1, b2 in boxes[:10]:
        for _ in range(4):
            non_overlap_ratio_loop(b1, b2, i1, 16)
    res["loop_ratio_ms_per_image_K4"] = (time.perf_counter() - t0) / 10 * 1e3
    t0 = time.perf_counter()
    for b1, b2 in boxes[:10]:
        non_overlap_ratio(b1, b2, np.stack([i1] * 4), 16)
    res["vectorised_ratio_ms_per_image_K4"] = (time.perf_counter() - t0) / 10 * 1e3
    write_json(args.out, res)
    for k, v in res.items():
        print(f"{k:36s} {v:.4g}" if isinstance(v, float) else f"{k:36s} {v}")
    print(f"ratio full/APS peak memory: {res['ratio_mem_full_over_aps']:.2f}")
    print(f"ratio full/APS step time: {res['ratio_time_full_over_aps']:.2f}")


if __name__ == "__main__":
    main()
