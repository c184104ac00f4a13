"""APS GPU benchmark (spec §7(c), issue #17): writes OUT/aps.json after every measurement.

    python packages/aps/bench/gpu.py --out DIR [--smoke] [--budget S] [--data-root D] [--long]

Rows, all from the training code path (`aps.train.pretrain_step` on synthetic tensors, ViT-S/2 at 32 px, batch
512, one process): APS optimizer sub-step (n = 64 of 256 tokens per view) and full-token step (MoCo-v3-style
baseline, same network and loss) -> images/s, ms/step, peak memory MiB, MFU from counted FLOPs
(torch.utils.flop_counter) against the GPU's dense bf16 peak; the paper's ratio full/APS step time (target ≥ 3)
and memory; bf16 vs fp32 (and fp16 + GradScaler, the official AMP); torch.compile on vs off (model.compile).
--long adds real CIFAR-10: ViT-Tiny/2 APS vs the full-token baseline at EQUAL optimizer steps and equal warm-up
(optim.warmup_steps), kNN (k=20) and L-BFGS linear probe on the test split, time per optimizer step.
--smoke runs the very same code on the CPU with a tiny ViT (numbers meaningless; torch.compile with the
"eager" backend there, as inductor needs minutes of C++ compilation on a CPU).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from aps.config import ModelConfig, OptimConfig
from aps.model import APSModel, build_backbone
from aps.train import build_optimizer, maybe_compile, pretrain_step
from tenfold.bench import count_flops, gpu_parser, gpu_report, mfu, peak_memory, time_it

PACKAGE = "aps"


def _sizes(smoke: bool) -> dict:
    if smoke:
        return dict(model=ModelConfig(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, hidden_dim=32,
                                      out_dim=16), batch=8, warmup=1, repeat=2, label="tiny ViT (smoke)")
    return dict(model=ModelConfig(img_size=32, patch_size=2, embed_dim=384, depth=12, num_heads=6), batch=512,
                warmup=5, repeat=20, label="ViT-S/2 32px b512")


def make_step(mcfg: ModelConfig, batch: int, device, full: bool, precision: str, compile_backend: str | None = None):
    """A closure running one training batch through pretrain_step: K = 4 sub-steps (APS) or 1 step (full)."""
    torch.manual_seed(0)
    model = APSModel(build_backbone(mcfg), mcfg.hidden_dim, mcfg.out_dim).to(device)
    opt = build_optimizer(model, OptimConfig(batch_size=batch))
    fwd = model
    if compile_backend:
        fwd = maybe_compile(model, ModelConfig(**{**mcfg.__dict__, "compile": True,
                                                  "compile_backend": compile_backend}))
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16" and device.type == "cuda")
    g = mcfg.img_size // mcfg.patch_size
    m, n, k = g * g, max(1, (g * g) // 4), 4
    x1 = torch.randint(0, 256, (batch, 3, mcfg.img_size, mcfg.img_size), dtype=torch.uint8, device=device)
    x2 = torch.randint(0, 256, x1.shape, dtype=torch.uint8, device=device)
    idx = torch.rand(2, batch, m, device=device).argsort(-1)[..., : k * n].view(2, batch, k, n)
    data = ((x1, idx[0], x2, idx[1]), None)

    def one():
        return pretrain_step(fwd, opt, data, device=device, tau=0.1, full_tokens=full, precision=precision,
                             amp=precision != "fp32", scaler=scaler)

    return one, (1 if full else k)


def measure(rep, name: str, one, steps_per_call: int, batch: int, device, s: dict, flops: bool = True) -> dict:
    """Time per optimizer step, images/s, peak memory and (optionally) MFU of one arm; a row each."""
    t = time_it(one, warmup=s["warmup"], repeat=s["repeat"], device=device)["median_s"] / steps_per_call
    out = {"step_s": t}
    rep.row(f"{name}: images/s", batch / t, "images/s")
    rep.row(f"{name}: time per optimizer step", 1e3 * t, "ms")
    out["mem"] = peak_memory(one, device) / 2**20
    rep.row(f"{name}: peak memory", out["mem"], "MiB")
    if flops:
        f = count_flops(one) / steps_per_call
        out["mfu"] = mfu(f, t, device)
        rep.row(f"{name}: model FLOPs per optimizer step", f / 1e9, "GFLOP")
        rep.row(f"{name}: MFU (bf16 dense peak)", None if out["mfu"] is None else 100 * out["mfu"], "%")
    return out


def real_data(rep, args, device) -> None:
    """--long: APS vs full-token at equal optimizer steps on real CIFAR-10 (ViT-Tiny/2), kNN + linear probe."""
    from aps.config import DataConfig, EvalConfig, PretrainConfig, SamplingConfig
    from aps.train import run
    from tenfold.data import root as data_root_mod

    root = data_root_mod.data_root(args.data_root)
    if not (Path(root) / "cifar10" / "test.npz").is_file() and not (Path(root) / "cifar-10-batches-py").is_dir():
        rep.row("real CIFAR-10 comparison skipped (no cifar10 under the data root)", None, "-")
        return
    steps = 8 if args.smoke else 2000  # optimizer steps per arm
    warm = 2 if args.smoke else 200
    out = Path(args.out) / "aps-real"
    res = {}
    for mode in ("aps", "full"):
        k = 1 if mode == "full" else 4
        mcfg = _sizes(args.smoke)["model"] if args.smoke else ModelConfig()  # ViT-Tiny/2
        cfg = PretrainConfig(
            out=str(out / mode), seed=0, device=str(device), data_root=str(root), model=mcfg,
            sampling=SamplingConfig(mode=mode),
            data=DataConfig(dataset="cifar10", num_workers=0 if args.smoke else 8,
                            train_per_class=20 if args.smoke else 0, test_per_class=10 if args.smoke else 0),
            optim=OptimConfig(batch_size=16 if args.smoke else 512, epochs=1000, max_steps=steps // k,
                              warmup_steps=warm, schedule_unit="step"),
            eval=EvalConfig(final_knn=True, linear_probe=True, batch_size=1024), ckpt_every=0, log_every=50)
        res[mode] = run(cfg)
        for key, unit in (("knn_top1", "%"), ("linear_top1", "%"), ("s_per_opt_step", "s")):
            rep.row(f"CIFAR-10 {mode} ({steps} optimizer steps): {key}", res[mode].get(key), unit)
    rep.row("CIFAR-10 time per optimizer step full/APS", res["full"]["s_per_opt_step"] / res["aps"]["s_per_opt_step"],
            "x")


def main(argv=None) -> int:
    args = gpu_parser(PACKAGE, __doc__.splitlines()[0]).parse_args(argv)
    rep = gpu_report(PACKAGE, args)
    device = rep.device
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    s = _sizes(args.smoke)
    mcfg, b, label = s["model"], s["batch"], s["label"]
    t0 = time.monotonic()
    bf16 = "bf16"
    aps_one, k = make_step(mcfg, b, device, full=False, precision=bf16)
    aps = measure(rep, f"{label} APS sub-step bf16", aps_one, k, b, device, s)
    del aps_one
    full_one, _ = make_step(mcfg, b, device, full=True, precision=bf16)
    full = measure(rep, f"{label} full-token step bf16", full_one, 1, b, device, s)
    del full_one
    rep.row("step time full/APS (paper: APS cheaper; target >= 3)", full["step_s"] / aps["step_s"], "x")
    rep.row("peak memory full/APS", full["mem"] / max(aps["mem"], 1e-9), "x")
    per_arm = (time.monotonic() - t0) / 2
    for prec in ("fp32", "fp16"):
        if rep.remaining() < 1.5 * per_arm:
            rep.row(f"APS {prec} skipped (budget)", None, "-")
            continue
        one, k = make_step(mcfg, b, device, full=False, precision=prec)
        r = measure(rep, f"{label} APS sub-step {prec}", one, k, b, device, s, flops=False)
        rep.row(f"APS step time {prec}/bf16", r["step_s"] / aps["step_s"], "x")
        del one
    # torch.compile: inductor on the GPU (its compile time is long: only when the budget allows or --long)
    backend = "eager" if args.smoke else "inductor"
    if args.smoke or args.long or rep.remaining() > 120:
        one, k = make_step(mcfg, b, device, full=False, precision=bf16, compile_backend=backend)
        tc = time.monotonic()
        one()
        rep.row(f"torch.compile ({backend}) first batch incl. compilation", time.monotonic() - tc, "s")
        r = measure(rep, f"{label} APS sub-step bf16 compiled", one, k, b, device, s, flops=False)
        rep.row("APS step time compiled/eager", r["step_s"] / aps["step_s"], "x")
        del one
    else:
        rep.row("torch.compile skipped (budget; run with --long)", None, "-")
    if args.long:
        real_data(rep, args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
