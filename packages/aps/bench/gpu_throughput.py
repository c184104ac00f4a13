"""GPU throughput (spec §7(c)): one APS optimizer sub-step (n = 64 of 256 tokens per view) vs one full-token
step (MoCo-v3-style, same network and loss), bf16 autocast, synthetic tensors, both in ONE process.

    python bench/gpu_throughput.py --arch small --batch 512 --out runs/bench-gpu/throughput.json
"""
from __future__ import annotations

import argparse

import torch
from aps.config import ModelConfig, OptimConfig
from aps.model import ARCHS, APSModel, build_backbone
from aps.train import build_optimizer, pretrain_step
from tenfold.bench import device_name, peak_memory, time_it, write_json
from tenfold.runtime import select_device


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=list(ARCHS), default="small")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="runs/bench-gpu/throughput.json")
    args = ap.parse_args()
    dev = select_device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    d, depth, h = ARCHS[args.arch]
    mcfg = ModelConfig(img_size=32, patch_size=2, embed_dim=d, depth=depth, num_heads=h)
    model = APSModel(build_backbone(mcfg)).to(dev)
    opt = build_optimizer(model, OptimConfig(batch_size=args.batch))
    b = args.batch
    x1, x2 = torch.randn(b, 3, 32, 32, device=dev), torch.randn(b, 3, 32, 32, device=dev)
    idx = torch.rand(2, b, 256, device=dev).argsort(-1)[..., :64].unsqueeze(2)  # [2, B, K=1, 64]
    batch = ((x1, idx[0], x2, idx[1]), None)
    step = {"aps": lambda: pretrain_step(model, opt, batch, device=dev, tau=0.1, full_tokens=False),
            "full": lambda: pretrain_step(model, opt, batch, device=dev, tau=0.1, full_tokens=True)}
    res = {"device": device_name(dev), "arch": f"vit_{args.arch}_patch2", "batch": b, "dtype": "bf16 autocast"}
    for name, fn in step.items():
        t = time_it(fn, warmup=args.warmup, repeat=args.repeat, device=dev)
        res[f"{name}_ms_per_step"] = t["median_s"] * 1e3
        res[f"{name}_pairs_per_s"] = b / t["median_s"]
        res[f"{name}_peak_mem_gib"] = peak_memory(fn, dev) / 2**30
    res["speedup_full_over_aps"] = res["full_ms_per_step"] / res["aps_ms_per_step"]
    res["mem_ratio_full_over_aps"] = res["full_peak_mem_gib"] / res["aps_peak_mem_gib"]
    write_json(args.out, res)
    for k, v in res.items():
        print(f"{k:28s} {v:.4g}" if isinstance(v, float) else f"{k:28s} {v}")


if __name__ == "__main__":
    main()
