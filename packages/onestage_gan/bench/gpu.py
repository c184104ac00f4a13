"""GPU benchmark (issue #17, spec §7c): one- vs two-stage time per iteration on the paper's DCGAN networks
(64 px, d = 128, zdim 100, 3 channels, batch 128; minimax with a BatchNorm D, non-saturating with a GroupNorm D),
in fp32 (the paper's end-to-end setting) and bf16, with images/s, the speed-up two/one (paper: 1.43-1.71x) and
peak memory per step; then the data-free KD game (DFAD: cifar10_wrn40_2 teacher -> wrn16_1 student, CIFAR shape,
batch 256) one vs two stages. --long adds a short quality comparison (DCGAN 32 px on CIFAR-10, equal iterations,
Frechet distance in the teacher's feature space). Speed is reported here, never asserted in a test.

    python packages/onestage_gan/bench/gpu.py --out DIR [--smoke] [--budget S] [--data-root D] [--models-root M]
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from onestage_gan.kd import kd_one_stage_step, kd_two_stage_step
from onestage_gan.losses import get_loss
from onestage_gan.method import one_stage_step, two_stage_step
from onestage_gan.nets import DCDiscriminator, DCGenerator
from tenfold import bench, nets, runtime

FULL = {"size": 64, "width": 128, "batch": 128, "warmup": 15, "repeat": 60, "kd_batch": 256, "kd_repeat": 30}
SMOKE = {"size": 16, "width": 8, "batch": 8, "warmup": 1, "repeat": 2, "kd_batch": 2, "kd_repeat": 1}
ARMS = (("minimax", "bn"), ("nonsaturating", "gn"))  # the paper's symmetric and asymmetric DCGANs


def _gan_step_fns(loss_name, d_norm, precision, p, dev):
    """(one-stage step, two-stage step) closures on fresh DCGANs with identical initial weights."""
    loss = get_loss(loss_name)
    scaler = runtime.grad_scaler(dev, precision)
    scaler = scaler if scaler.is_enabled() else None
    x = torch.rand(p["batch"], 3, p["size"], p["size"], device=dev) * 2 - 1  # stands in for a real batch

    def build():
        torch.manual_seed(0)
        G = DCGenerator(100, 3, p["width"], p["size"]).to(dev).train()
        D = DCDiscriminator(3, p["width"], p["size"], d_norm).to(dev).train()
        return G, D, torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999)), \
            torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))

    g1, d1, og1, od1 = build()
    g2, d2, og2, od2 = build()

    def z():
        return torch.randn(p["batch"], 100, device=dev)

    def one():
        with runtime.autocast(dev, precision):
            one_stage_step(g1, d1, og1, od1, x, z(), loss, scaler=scaler)

    def two():
        with runtime.autocast(dev, precision):
            two_stage_step(g2, d2, og2, od2, x, z(), z(), loss, scaler=scaler)

    return one, two


def gan_throughput(rep, p, dev):
    ms = {}
    for precision in ("fp32", "bf16"):
        for loss_name, d_norm in ARMS:
            if rep.remaining() < 10 and not rep.smoke:
                rep.row(f"DCGAN{p['size']} {loss_name} {precision}: left out (budget)", None, "")
                continue
            one, two = _gan_step_fns(loss_name, d_norm, precision, p, dev)
            tag = f"DCGAN{p['size']} d={p['width']} B={p['batch']} {loss_name} ({d_norm.upper()} D) {precision}"
            t = {}
            for mode, fn in (("one", one), ("two", two)):
                t[mode] = bench.time_it(fn, warmup=p["warmup"], repeat=p["repeat"], device=dev)["median_s"]
                rep.row(f"{tag}: {mode}-stage ms/iteration", 1e3 * t[mode], "ms")
                rep.row(f"{tag}: {mode}-stage images/s", p["batch"] / t[mode], "images/s")
                rep.row(f"{tag}: {mode}-stage peak memory", bench.peak_memory(fn, dev) / 2**20, "MiB")
            ms[(loss_name, precision)] = t
            rep.row(f"{tag}: speed-up two/one-stage time per iteration (paper 1.43-1.71x)", t["two"] / t["one"], "x")
    for loss_name, _ in ARMS:
        a, b = ms.get((loss_name, "fp32")), ms.get((loss_name, "bf16"))
        if a and b:
            rep.row(f"DCGAN{p['size']} {loss_name}: bf16 speed-up over fp32 (one-stage)", a["one"] / b["one"], "x")


def _teacher(models_root, smoke, dev):
    path = Path(models_root or os.environ.get("TENFOLD_MODELS", "")) / "cifar10_wrn40_2.pt"
    if path.is_file():
        return nets.load_teacher(path).to(dev).eval().requires_grad_(False), "wrn40_2"
    if smoke:  # same code path with a random teacher when no models are around
        return nets.create("wrn16_1", 10).to(dev).eval().requires_grad_(False), "random wrn16_1"
    return None, f"teacher missing: {path}"


def kd_throughput(rep, p, dev, models_root):
    T, name = _teacher(models_root, rep.smoke, dev)
    if T is None:
        rep.row(f"DFAD KD: left out ({name})", None, "")
        return
    if rep.remaining() < 15 and not rep.smoke:
        rep.row("DFAD KD: left out (budget)", None, "")
        return
    b = p["kd_batch"]
    for precision in ("fp32", "bf16"):
        t = {}
        for mode in ("one", "two"):
            torch.manual_seed(0)
            S = nets.create("wrn16_1", 10).to(dev).train()
            G = DCGenerator(256, 3, 64, 32).to(dev).train()
            og = torch.optim.Adam(G.parameters(), 1e-3)
            os_ = torch.optim.SGD(S.parameters(), 0.1, momentum=0.9)

            def step(mode=mode, G=G, S=S, og=og, os_=os_, precision=precision):
                with runtime.autocast(dev, precision):
                    z = torch.randn(b, 256, device=dev)
                    if mode == "one":
                        kd_one_stage_step(G, S, T, og, os_, z)
                    else:
                        kd_two_stage_step(G, S, T, og, os_, z, torch.randn(b, 256, device=dev))

            t[mode] = bench.time_it(step, warmup=p["warmup"], repeat=p["kd_repeat"], device=dev)["median_s"]
            rep.row(f"DFAD {name}->wrn16_1 B={b} {precision}: {mode}-stage images/s", b / t[mode], "images/s")
        rep.row(f"DFAD {name}->wrn16_1 {precision}: speed-up two/one-stage", t["two"] / t["one"], "x")


def quality_long(rep, dev, smoke):
    """Equal-iteration quality on real CIFAR-10 (only with --long): DCGAN 32 px, non-saturating, GN D."""
    from onestage_gan.config import OSGANConfig
    from onestage_gan.train import run_gan
    from tenfold import config

    steps = 4 if smoke else 3000
    base = ["data.name=cifar10", "model.size=32", "model.g_width=64", "model.d_width=64", "batch_size=128",
            f"max_steps={steps}", f"eval_samples={64 if smoke else 5000}", "loss=nonsaturating", "model.d_norm=gn",
            f"device={dev.type}", "precision=fp32", "ckpt_every=100000", "log_every=500"]
    if smoke:
        base += ["model.g_width=8", "model.d_width=8", "batch_size=8"]
    out = Path(rep.path).parent / "onestage_gan-runs"
    res = {}
    for mode, lr_d in (("two", "2e-4"), ("one", "5e-5")):
        t0 = time.perf_counter()
        res[mode] = run_gan(config.load(OSGANConfig, None, base + [f"mode={mode}", f"optim.lr_d={lr_d}",
                                                                    f"out={out / mode}"]))
        rep.row(f"CIFAR-10 DCGAN32 {steps} it. {mode}-stage: FD (wrn40_2 features)", res[mode].get("fd"), "")
        rep.row(f"CIFAR-10 DCGAN32 {mode}-stage wall time", time.perf_counter() - t0, "s")


def main(argv=None):
    ap = bench.gpu_parser("onestage_gan", __doc__.splitlines()[0])
    args = ap.parse_args(argv)
    if args.data_root:
        os.environ["TENFOLD_DATA"] = args.data_root
    if args.models_root:
        os.environ["TENFOLD_MODELS"] = args.models_root
    rep = bench.gpu_report("onestage_gan", args)
    dev = rep.device
    runtime.set_deterministic(False)  # cudnn.benchmark on: the fastest kernels for fixed shapes
    p = SMOKE if args.smoke else FULL
    gan_throughput(rep, p, dev)
    kd_throughput(rep, p, dev, args.models_root)
    if args.long:
        data = Path(os.environ.get("TENFOLD_DATA", "")) / "cifar10" / "test.npz"
        if data.is_file():
            quality_long(rep, dev, args.smoke)
        else:
            rep.row(f"CIFAR-10 quality: left out (data missing: {data})", None, "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
