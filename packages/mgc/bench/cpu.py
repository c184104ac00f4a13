"""CPU benchmark: the cost of MGC's extra granularities.

One run times a full training step (photometric rendering, base + momentum forwards, backward,
per-parameter clipping, AdamW) of MGC (levels {1,2,4}, K 10/10/2) and of the global-only model
(levels {8}, K 1) on the same tiny ViT and batch, and prints `ratio MGC/global step time: X`.
It also times the loader-side view + correspondence transform at 224 px (pairs/s per worker).

    OMP_NUM_THREADS=1 python bench/cpu.py [--out bench/results/cpu.json] [--batch 64]
"""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
from mgc.config import ModelConfig, TrainConfig, ViewConfig
from mgc.method import clip_per_parameter
from mgc.model import MGC
from mgc.views import TwoViewBoxTransform, render
from tenfold.bench import device_name, time_it, write_json
from tenfold.config import load
from torch.utils.data import default_collate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def step_timer(cfg: TrainConfig, batch_size: int, repeat: int):
    torch.manual_seed(0)
    model = MGC(cfg.model, cfg.loss)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    tr = TwoViewBoxTransform(cfg.model, cfg.views, cfg.augment)
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (batch_size, 3, 32, 32), generator=g, dtype=torch.uint8)
    batch = default_collate([tr(imgs[i], random.Random(i)) for i in range(batch_size)])
    dev = torch.device("cpu")

    def step():
        x1, x2 = render(batch, cfg.augment, dev)
        loss, _ = model(x1, x2, batch["corr"], 0.99)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_per_parameter(params, 3.0)
        opt.step()

    return time_it(step, warmup=2, repeat=repeat)


def transform_rates(n: int = 200) -> dict:
    """Per-worker rates at 224 px from 640x480 images: the geometry + correspondence sampler alone
    (3 levels), and the whole loader transform (plus two resized crops and photometric parameters).
    CPU process time, so other processes' load does not count."""
    tr = TwoViewBoxTransform(ModelConfig(), ViewConfig())
    img = torch.randint(0, 256, (3, 480, 640), dtype=torch.uint8)
    rng = random.Random(0)
    tr(img, rng)
    t0 = time.process_time()
    for _ in range(n):
        tr.correspondences(*tr.geometry(640, 480, rng))
    t1 = time.process_time()
    for _ in range(n):
        tr(img, rng)
    t2 = time.process_time()
    return {"sampler_ms_per_pair": (t1 - t0) / n * 1e3, "transform_ms_per_pair": (t2 - t1) / n * 1e3}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench/results/cpu.json")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    cfg_m = load(TrainConfig, CONFIGS / "cifar10_tiny.yaml")
    cfg_g = load(TrainConfig, CONFIGS / "cifar10_tiny_global.yaml")
    tm = step_timer(cfg_m, args.batch, args.repeat)
    tg = step_timer(cfg_g, args.batch, args.repeat)
    ratio = tm["median_s"] / tg["median_s"]
    rates = transform_rates()
    res = {"device": device_name(torch.device("cpu")), "batch": args.batch, "mgc_step_s": tm["median_s"],
           "global_step_s": tg["median_s"], "ratio_mgc_over_global": ratio,
           **rates}
    write_json(args.out, res)
    print(f"step time (batch {args.batch}, configs/cifar10_tiny*.yaml: dim 64 depth 3 ViT, heads "
          f"{cfg_m.model.proj_hidden}): MGC {tm['median_s'] * 1e3:.0f} ms, global-only {tg['median_s'] * 1e3:.0f} ms")
    print(f"224 px, per worker: correspondence sampler {rates['sampler_ms_per_pair']:.2f} ms/pair, whole view "
          f"transform (crops incl.) {rates['transform_ms_per_pair']:.2f} ms/pair")
    print(f"ratio MGC/global step time: {ratio:.2f}")


if __name__ == "__main__":
    main()
