"""GPU benchmark (spec §7(c), §7(d)); run through bench/gpu.sh. Prints a short table last, writes JSON.

1. Throughput (synthetic tensors, bf16 autocast, momentum framework, m=2): ImageNet ViT-S/16 224 px batch 128
   without and with 8 x 96-px local crops; CIFAR ViT-S/2 32 px batch 512 with mixing, mix_p=0, src_only and the
   symmetric MoCo-v3 step -> images/s, peak memory, MFU, mixer time per call, PatchMix / no-mix ratio.
2. Real data: PatchMix vs the no-mix baseline (src_only, same momentum framework, same seed and steps) on the
   50,000 CIFAR-10 train images, ViT-T, kNN (k=20) + linear probe on the 10,000 test images.
--smoke runs everything tiny on CPU (a check of the script itself, numbers meaningless).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from patchmix.config import PretrainConfig
from patchmix.method import patch_mix
from patchmix.models import build_models
from patchmix.proof import compare_arms
from patchmix.train import StepFn, build_optimizer
from tenfold import config as config_mod
from tenfold.bench import count_flops, device_name, mfu, peak_memory, time_it, write_json
from tenfold.loop import LoopState

ROOT = Path(__file__).resolve().parents[1]


def throughput(name, overrides, batch, img, device, warmup, repeat):
    cfg = config_mod.load(PretrainConfig, None, ["device=" + str(device), f"optim.batch_size={batch}",
                                                 f"aug.input_size={img}", *overrides])
    torch.manual_seed(0)
    online, mom = build_models(cfg.model, cfg.model.framework)
    online.to(device)
    if mom is not None:
        mom.to(device)
    step = StepFn(cfg, online, mom, build_optimizer(cfg, online), device, 1000, 100000)
    x = torch.rand(batch, 3, img, img, device=device)
    state = LoopState()

    def one():
        step((x, None), state)
        state.step += 1

    t = time_it(one, warmup=warmup, repeat=repeat, device=device)
    mem = peak_memory(one, device)
    flops = count_flops(one)
    g = torch.Generator().manual_seed(0)
    xm = torch.randn(batch, 3, img, img, device=device)
    mixer = time_it(lambda: patch_mix(xm, 2, cfg.model.patch_size, g), warmup=3, repeat=20, device=device)
    return {"name": name, "img_per_s": batch / t["median_s"], "step_s": t["median_s"], "peak_mem_gb": mem / 1e9,
            "tflops_per_step": flops / 1e12, "mfu": mfu(flops, t["median_s"], device),
            "mixer_ms_per_call": 1e3 * mixer["median_s"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench-gpu")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--epochs", type=float, default=30)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--skip-real", action="store_true")
    args = ap.parse_args(argv)
    dev = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    s = args.smoke
    warm, rep = (1, 2) if s else (10, 30)
    small = ["model.depth=1", "model.proj_hidden=64", "model.pred_hidden=64"] if s else []
    vit_s16 = ["model.arch=vit_small", "model.patch_size=16", "model.img_size=224", "mix.patch_size=[16]", *small]
    vit_s2 = ["model.arch=vit_small", "model.patch_size=2", "model.img_size=32", "mix.patch_size=[2]",
              "aug.local_crops=0", "aug.global_scale=[0.1,1.0]", *small]
    bi, bc = (4, 8) if s else (128, 512)
    rows = [
        throughput("ViT-S/16 224px", vit_s16 + ["aug.local_crops=0"], bi, 224, dev, warm, rep),
        throughput("ViT-S/16 224px +8x96", vit_s16 + ["aug.local_crops=8"], bi, 224, dev, warm, rep),
        throughput("ViT-S/2 32px", vit_s2, bc, 32, dev, warm, rep),
        throughput("ViT-S/2 32px mix_p=0", vit_s2 + ["mix.mix_p=0"], bc, 32, dev, warm, rep),
        throughput("ViT-S/2 32px src_only", vit_s2 + ["loss.objective=src_only"], bc, 32, dev, warm, rep),
        throughput("ViT-S/2 32px mocov3", vit_s2 + ["loss.objective=mocov3"], bc, 32, dev, warm, rep),
    ]
    res = {"device": device_name(dev), "throughput": rows,
           "ratio_patchmix_over_mocov3_step": rows[2]["step_s"] / rows[5]["step_s"],
           "ratio_mix_on_over_mix_off_step": rows[2]["step_s"] / rows[3]["step_s"]}
    write_json(out / "gpu.json", res)
    if not args.skip_real:
        # ViT-T/4 (64 tokens) keeps >= 30 epochs of both arms inside the 8-minute budget; ViT-T/2 needs ~4x longer.
        ov = ["device=" + str(dev), "data.dataset=cifar10", "model.arch=vit_tiny", "model.patch_size=4",
              "model.img_size=32", "mix.patch_size=[4]", "model.framework=momentum", "aug.local_crops=0",
              "aug.input_size=32", "aug.global_scale=[0.1,1.0]", "optim.batch_size=512", f"optim.epochs={args.epochs}",
              "optim.warmup_epochs=5", "optim.base_lr=2e-3", "optim.weight_decay=0.04", "optim.weight_decay_end=0.4",
              "optim.momentum=0.99", "data.num_workers=4", "seed=7", "log_every=1"]
        if args.data_root:
            ov.append(f"data_root={args.data_root}")
        if s:
            ov += ["data.dataset=shapes", "data.shapes_train=256", "data.shapes_test=128", "optim.batch_size=64",
                   "optim.steps=4", "model.depth=1", "model.proj_hidden=64", "model.pred_hidden=64",
                   "data.num_workers=0"]
        cfg = config_mod.load(PretrainConfig, None, ov)
        real = compare_arms(cfg, out / "real", baseline="src_only", log=lambda m: print(m, flush=True))
        res["real"] = real
        write_json(out / "gpu.json", res)
    res["total_s"] = time.perf_counter() - t0
    write_json(out / "gpu.json", res)
    print(f"\nPatchMix GPU benchmark on {res['device']} ({res['total_s']:.0f} s)")
    print(f"{'setting':<26}{'img/s':>10}{'step ms':>10}{'mem GB':>9}{'MFU':>8}{'mix ms':>8}")
    for r in rows:
        m = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        print(f"{r['name']:<26}{r['img_per_s']:>10.0f}{1e3 * r['step_s']:>10.1f}{r['peak_mem_gb']:>9.2f}{m:>8}"
              f"{r['mixer_ms_per_call']:>8.2f}")
    print(f"ratio PatchMix / MoCo-v3 step: {res['ratio_patchmix_over_mocov3_step']:.2f}; "
          f"mixing on / off: {res['ratio_mix_on_over_mix_off_step']:.3f}")
    if "real" in res:
        r = res["real"]
        for arm in ("random_init", "patchmix", "baseline"):
            o = r[arm].get("momentum", r[arm]["online"])
            print(f"{arm:<12} kNN20 {o['knn_top1']:6.2f}  linear {o['linear_top1']:6.2f}  "
                  f"instance {o['instance_top1']:6.2f}  img/s {r[arm].get('samples_per_s') or 0:8.0f}")
        print(f"kNN gap PatchMix - baseline (online): {r['knn_gap_online']:+.2f}")
    print(json.dumps({"json": str(out / "gpu.json")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
