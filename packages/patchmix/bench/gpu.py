"""PatchMix GPU benchmark (spec §7(c), issue #17): writes OUT/patchmix.json after every measurement.

    python packages/patchmix/bench/gpu.py --out DIR [--smoke] [--budget S] [--data-root D] [--long]

Rows, all from the training step itself (`patchmix.train.StepFn`: batched augmentation on the device, mixing,
momentum keys, EMA, AdamW; synthetic uint8 images, one process), most important first, each only while the budget
allows: ImageNet ViT-S/16 at 224 px, batch 128, bf16, momentum framework, m = 2 -> images/s, ms/step, peak memory
MiB, MFU from counted FLOPs (torch.utils.flop_counter) against the GPU's dense bf16 peak (target ≥ 40 %);
CIFAR ViT-S/2 at 32 px, batch 512: PatchMix vs the symmetric no-mix MoCo-v3 step and vs src_only (the paper's
overhead: about one extra momentum forward), mixing on/off (mix_p = 0, same passes) and the mixer's time per call;
fp32 vs bf16; ViT-S/16 with 8 x 96-px local crops; torch.compile on vs off (model.compile).
--long adds real CIFAR-10: PatchMix vs the no-mix baseline (src_only, same momentum framework, same seed and steps),
ViT-T/4, kNN (k=20) + linear probe + instance retrieval on the test images.
--smoke runs the very same code on the CPU with a tiny ViT (numbers meaningless; torch.compile with the "eager"
backend there, as inductor needs minutes of C++ compilation on a CPU).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from patchmix.config import PretrainConfig
from patchmix.method import patch_mix
from patchmix.models import build_models
from patchmix.train import StepFn, build_optimizer
from tenfold import config as config_mod
from tenfold.bench import count_flops, gpu_parser, gpu_report, mfu, peak_memory, time_it
from tenfold.loop import LoopState

PACKAGE = "patchmix"


def make_step(overrides: list[str], batch: int, img: int, device):
    """A closure running one full training step (StepFn.__call__) on a fixed synthetic uint8 batch."""
    cfg = config_mod.load(PretrainConfig, None, [f"device={device}", f"optim.batch_size={batch}",
                                                 f"aug.input_size={img}", "optim.warmup_epochs=0", *overrides])
    torch.manual_seed(0)
    online, mom = build_models(cfg.model, cfg.model.framework)
    online.to(device)
    if mom is not None:
        mom.to(device)
    step = StepFn(cfg, online, mom, build_optimizer(cfg, online), device, 1000, 100000)
    x = torch.randint(0, 256, (batch, 3, img, img), dtype=torch.uint8, device=device)
    state = LoopState()

    def one():
        out = step((x, None), state)
        state.step += 1
        return out

    return one, cfg


def measure(rep, name: str, one, batch: int, device, warmup: int, repeat: int, flops: bool = True) -> float:
    t = time_it(one, warmup=warmup, repeat=repeat, device=device)["median_s"]
    rep.row(f"{name}: images/s", batch / t, "images/s")
    rep.row(f"{name}: time per step", 1e3 * t, "ms")
    rep.row(f"{name}: peak memory", peak_memory(one, device) / 2**20, "MiB")
    if flops:
        f = count_flops(one)
        rep.row(f"{name}: model FLOPs per step", f / 1e9, "GFLOP")
        u = mfu(f, t, device)
        rep.row(f"{name}: MFU (bf16 dense peak)", None if u is None else 100 * u, "%")
    return t


def real_data(rep, args, device) -> None:
    """--long: PatchMix vs the no-mix baseline on real CIFAR-10 (ViT-T/4 so both arms fit a short slot)."""
    from patchmix.proof import compare_arms
    from tenfold.data import root as data_root_mod

    root = data_root_mod.data_root(args.data_root)
    if not (Path(root) / "cifar10" / "test.npz").is_file() and not (Path(root) / "cifar-10-batches-py").is_dir():
        rep.row("real CIFAR-10 comparison skipped (no cifar10 under the data root)", None, "-")
        return
    ov = [f"device={device}", f"data_root={root}", "data.dataset=cifar10", "model.arch=vit_tiny",
          "model.patch_size=4", "model.img_size=32", "mix.patch_size=[4]", "model.framework=momentum",
          "aug.local_crops=0", "aug.input_size=32", "aug.global_scale=[0.1,1.0]", "optim.batch_size=512",
          "optim.epochs=30", "optim.warmup_epochs=5", "optim.base_lr=2e-3", "optim.weight_decay=0.04",
          "optim.weight_decay_end=0.4", "optim.momentum=0.99", "data.num_workers=8", "seed=7", "log_every=50"]
    if args.smoke:
        ov += ["data.train_per_class=20", "data.test_per_class=10", "optim.batch_size=32", "optim.steps=4",
               "model.depth=1", "model.proj_hidden=64", "model.pred_hidden=64", "data.num_workers=0"]
    cfg = config_mod.load(PretrainConfig, None, ov)
    r = compare_arms(cfg, Path(args.out) / "patchmix-real", baseline="src_only", log=lambda m: None)
    for arm in ("random_init", "patchmix", "baseline"):
        o = r[arm].get("momentum", r[arm]["online"])
        for key in ("knn_top1", "linear_top1", "instance_top1"):
            rep.row(f"CIFAR-10 {arm}: {key}", o[key], "%")
    rep.row("CIFAR-10 kNN gap PatchMix - baseline (online)", r["knn_gap_online"], "points")


def main(argv=None) -> int:
    args = gpu_parser(PACKAGE, __doc__.splitlines()[0]).parse_args(argv)
    rep = gpu_report(PACKAGE, args)
    dev = rep.device
    s = args.smoke
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    warm, reps = (1, 2) if s else (3, 10)
    small = ["model.depth=1", "model.proj_hidden=64", "model.pred_hidden=64", "model.embed_dim=64",
             "model.num_heads=2"] if s else []
    vit_s16 = ["model.arch=vit_small", "model.patch_size=16", "model.img_size=224", "mix.patch_size=[16]", *small]
    vit_s2 = ["model.arch=vit_small", "model.patch_size=2", "model.img_size=32", "mix.patch_size=[2]",
              "aug.local_crops=0", "aug.global_scale=[0.1,1.0]", *small]
    bi, bc, img_i = (4, 8, 64) if s else (128, 512, 224)
    if s:  # the same settings on a tiny grid: 64-px images with patch 16, 32-px images with patch 8
        vit_s16 = [o.replace("img_size=224", "img_size=64") for o in vit_s16]
        vit_s2 = [o.replace("patch_size=2", "patch_size=8").replace("patch_size=[2]", "patch_size=[8]")
                  for o in vit_s2]
    last = [0.0]  # seconds the previous measurement took: the next one starts only if it likely fits

    def fits(factor: float = 1.5) -> bool:
        return s or rep.remaining() > factor * last[0]

    def timed(fn):
        t0 = time.monotonic()
        out = fn()
        last[0] = time.monotonic() - t0
        return out

    one, _ = make_step(vit_s16 + ["aug.local_crops=0"], bi, img_i, dev)
    t_in = timed(lambda: measure(rep, f"ViT-S/16 {img_i}px b{bi} bf16", one, bi, dev, warm, reps))
    del one
    one, cfg = make_step(vit_s2, bc, 32, dev)
    t_pm = timed(lambda: measure(rep, f"ViT-S/2 32px b{bc} PatchMix bf16", one, bc, dev, warm, reps))
    g = torch.Generator().manual_seed(0)
    xm = torch.randn(bc, 3, 32, 32, device=dev)
    mix = time_it(lambda: patch_mix(xm, 2, cfg.model.patch_size, g), warmup=2, repeat=10, device=dev)["median_s"]
    rep.row("mixer time per call (batch of view 2)", 1e3 * mix, "ms")
    rep.row("mixer share of a PatchMix step (2 calls)", 100 * 2 * mix / t_pm, "%")
    del one
    for name, extra in (("MoCo-v3 symmetric no-mix", ["loss.objective=mocov3"]),
                        ("mix_p=0 (same passes)", ["mix.mix_p=0"]), ("src_only", ["loss.objective=src_only"]),
                        ("PatchMix fp32", ["precision=fp32"])):
        if not fits():
            rep.row(f"ViT-S/2 {name} skipped (budget)", None, "-")
            continue
        one, _ = make_step(vit_s2 + extra, bc, 32, dev)
        t = timed(lambda one=one, name=name: measure(rep, f"ViT-S/2 32px b{bc} {name}", one, bc, dev, warm, reps,
                                                     flops=False))
        rep.row(f"step time PatchMix / {name}", t_pm / t, "x")
        del one
    if fits(2.0):
        one, _ = make_step(vit_s16 + ["aug.local_crops=8", "aug.local_size=32" if s else "aug.local_size=96"],
                           bi, img_i, dev)
        t = timed(lambda: measure(rep, f"ViT-S/16 {img_i}px b{bi} +8 local crops bf16", one, bi, dev, warm, reps))
        rep.row("step time with / without 8 local crops", t / t_in, "x")
        del one
    else:
        rep.row("ViT-S/16 with local crops skipped (budget)", None, "-")
    backend = "eager" if s else "inductor"
    if s or args.long or rep.remaining() > 150:
        one, _ = make_step(vit_s2 + ["model.compile=true", f"model.compile_backend={backend}"], bc, 32, dev)
        t0 = time.monotonic()
        one()
        rep.row(f"torch.compile ({backend}) first step incl. compilation", time.monotonic() - t0, "s")
        t = measure(rep, f"ViT-S/2 32px b{bc} PatchMix bf16 compiled", one, bc, dev, warm, reps, flops=False)
        rep.row("PatchMix step time compiled / eager", t / t_pm, "x")
        del one
    else:
        rep.row("torch.compile skipped (budget; run with --long)", None, "-")
    if args.long:
        real_data(rep, args, dev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
