"""MGC GPU benchmark (issue #17 contract, spec 7c): the training step of `mgc.train.optimize_step` on synthetic
views with pre-computed random valid correspondences (the loader is excluded), ViT-S/16 at 224 px with the full
heads (3 x projector/predictor 4096), one GPU:

* image pairs/s, peak GPU memory and MFU (FLOPs counted by torch.utils.flop_counter on that very step, against the
  GPU's bf16 peak) in bf16, the same in fp32 and the bf16/fp32 ratio;
* the global-only baseline (levels {14}, K = 1) in bf16 and the MGC/global pairs/s ratio (the heads' cost);
* torch.compile on (cfg.compile) vs off;
* the CPU view + correspondence transform (what one loader worker sustains, pairs/s).

    python packages/mgc/bench/gpu.py --out DIR [--smoke] [--budget SECONDS]

--smoke: the same code on the CPU with a tiny ViT (fp32 and bf16 rows both run; CPU autocast is off, so the ratio
is ~1 there), compile with the `eager` backend (graph capture only). Writes DIR/mgc.json after every row."""
from __future__ import annotations

import random
import sys
import time

import numpy as np
import torch
from mgc.config import AugmentConfig, ModelConfig, TrainConfig, ViewConfig
from mgc.correspondence import OFFICIAL_STRIDE_RULES, multigrain_correspondence, sample_view_boxes
from mgc.model import MGC
from mgc.train import maybe_compile, optimize_step
from mgc.views import TwoViewBoxTransform
from tenfold import runtime
from tenfold.bench import count_flops, gpu_parser, gpu_report, mfu, peak_memory, time_it

FULL = dict(model=ModelConfig())  # ViT-S/16, 224 px, 8 heads, levels {1,2,7}, K (10,10,2), heads 4096
SMOKE = dict(model=ModelConfig(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, levels=[1, 2, 4],
                               pairs=[4, 4, 1], proj_hidden=64, pred_hidden=64, out_dim=32))


def correspondences(cfg: ModelConfig, batch: int, device, rules) -> list:
    """Valid correspondences of random view pairs on a 640 x 480 image (the sampler the loader runs)."""
    rng = random.Random(0)
    per = [[] for _ in cfg.levels]
    for _ in range(batch):
        b1, b2 = sample_view_boxes(640, 480, rng=rng)
        f1, f2 = rng.random() < 0.5, rng.random() < 0.5
        for i, (c, k) in enumerate(zip(cfg.levels, cfg.pairs)):
            per[i].append(multigrain_correspondence(b1, b2, f1, f2, cfg.grid // c, k, rules[i]))
    return [tuple(torch.as_tensor(np.stack([p[j] for p in lv])).to(device) for j in range(3)) for lv in per]


def _global(model: ModelConfig) -> ModelConfig:
    return ModelConfig(**{**model.__dict__, "levels": [model.grid], "pairs": [1]})


def step_fn(model_cfg: ModelConfig, batch: int, device, precision: str, compile_backend: str = ""):
    """A closure running one optimizer step of MGC on fixed synthetic views, and the config it used."""
    cfg = TrainConfig(model=model_cfg, precision=precision, compile=bool(compile_backend),
                      compile_backend=compile_backend or "inductor")
    torch.manual_seed(0)
    model = maybe_compile(MGC(cfg.model, cfg.loss).to(device), cfg)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.05)
    scaler = runtime.grad_scaler(device, precision)
    x1 = torch.randn(batch, 3, model_cfg.img_size, model_cfg.img_size, device=device)
    x2 = torch.randn_like(x1)
    rules = OFFICIAL_STRIDE_RULES if model_cfg.levels == [1, 2, 7] else [None] * len(model_cfg.levels)
    corr = correspondences(model_cfg, batch, device, rules)

    def step():
        return optimize_step(model, opt, scaler, trainable, x1, x2, corr, 0.996, cfg, device)

    return step


def measure(rep, name: str, model_cfg, batch, device, precision, warmup, repeat, flops=False, compile_backend=""):
    step = step_fn(model_cfg, batch, device, precision, compile_backend)
    t = time_it(step, warmup=warmup, repeat=repeat, device=device)["median_s"]
    rep.row(f"{name}: train step, {precision}, batch {batch}", batch / t, "image pairs/s")
    out = {"step_s": t}
    if flops:
        mem = peak_memory(step, device)
        rep.row(f"{name}: peak memory, {precision}, batch {batch}", mem / 2 ** 20, "MiB")
        f = count_flops(step)
        out["flops"] = f
        rep.row(f"{name}: counted FLOPs per step (forward + backward)", f / 1e12, "TFLOP")
        rep.row(f"{name}: model FLOPs utilisation, {precision}", mfu(f, t, device), "fraction of the GPU's bf16 peak")
    return out


def loader_rate(model_cfg: ModelConfig, seconds: float) -> float:
    """Pairs/s of the per-image CPU transform (crops, photometric draws, all levels' correspondences)."""
    tr = TwoViewBoxTransform(model_cfg, ViewConfig(), AugmentConfig())
    img = torch.randint(0, 256, (3, 480, 640), dtype=torch.uint8)
    rng = random.Random(0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        tr(img, rng)
        n += 1
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    args = gpu_parser("mgc", __doc__.splitlines()[0]).parse_args(argv)
    rep = gpu_report("mgc", args)
    dev = rep.device
    smoke = args.smoke
    cfg = (SMOKE if smoke else FULL)["model"]
    batch = 4 if smoke else 128
    warm, repeat = (1, 2) if smoke else (5, 15)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (the bf16/fp32 ratio is against true fp32)
    bf16 = measure(rep, "MGC", cfg, batch, dev, "bf16", warm, repeat, flops=True)
    if rep.remaining() > 20 or smoke:
        fp32 = measure(rep, "MGC", cfg, batch, dev, "fp32", warm, repeat)
        rep.row("MGC: bf16 / fp32 speed-up", fp32["step_s"] / bf16["step_s"], "x")
    if rep.remaining() > 15 or smoke:
        glob = measure(rep, "global-only", _global(cfg), batch, dev, "bf16", warm, repeat)
        rep.row("MGC / global-only pairs/s (head cost of the 3 levels)", glob["step_s"] / bf16["step_s"], "x")
    if rep.remaining() > 30 or smoke:
        backend = "eager" if smoke else "inductor"
        comp = measure(rep, f"MGC torch.compile({backend})", cfg, batch, dev, "bf16", warm + 2, repeat,
                       compile_backend=backend)
        rep.row("MGC: compiled / eager speed-up", bf16["step_s"] / comp["step_s"], "x")
    rep.row("loader: view + correspondence transform on one CPU worker", loader_rate(cfg, 0.5 if smoke else 3.0),
            "image pairs/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
