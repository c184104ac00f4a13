"""GPU benchmark (spec §7(c) + the issue's GPU comparison), one command: bench/gpu.sh.

Part 1, throughput (random-init wrn40_2 teacher, wrn16_1 student, no data): synthesis it/s and images/s
with cr=0.8 and cr=0, DeepInversion-style synthesis, KD steps/s from an in-memory pool, peak memory,
projected full-run time 200 x (200 iterations + 400 KD steps).
Part 2, real data: teacher ../shared/models/cifar10_wrn40_2.pt -> wrn16_1, CMI vs DeepInversion vs DAFL
at identical synthesis iterations and KD steps, evaluated on all 10,000 CIFAR-10 test images.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from cmi.augment import Normalizer
from cmi.cli import distill_parser, load_distill_config
from cmi.config import SynthConfig
from cmi.synthesis import CMISynthesizer, DeepInvSynthesizer
from cmi.train import Distiller
from tenfold import nets
from tenfold.bench import device_name, write_json
from tenfold.data.transforms import CIFAR10_MEAN, CIFAR10_STD


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def throughput(dev, b=256, g_steps=20, kd_steps=50, bank=40960, n_neg=4096):
    norm = Normalizer(CIFAR10_MEAN, CIFAR10_STD)
    teacher = nets.create("wrn40_2", 10).to(dev).eval().requires_grad_(False)
    student = nets.create("wrn16_1", 10).to(dev)
    out = {}
    for name, cls, kw in [("cmi", CMISynthesizer, {}), ("cmi_cr0", CMISynthesizer, {"cr": 0.0}),
                          ("deepinv", DeepInvSynthesizer, {"cr": 0.0, "lr_g": 0.1, "adv": 0.0})]:
        cfg = SynthConfig(batch_size=b, g_steps=g_steps, bank_size=bank, n_neg=n_neg, head_dim=256, **kw)
        syn = cls(teacher, student, 10, cfg, norm, dev, img_size=32, arch="wrn40_2")
        if name == "cmi":  # a full bank (40960 x 2D), as in the steady state
            syn.bank.data = torch.randn(bank, 2 * syn.feat_dim, device=dev)
            syn.bank.n_updates = bank
        syn.synthesize()  # warm-up
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        _sync()
        t0 = time.perf_counter()
        syn.synthesize()
        _sync()
        dt = time.perf_counter() - t0
        # images/s at the official 200 iterations per batch: B * it/s / 200
        out[name] = {"it_per_s": g_steps / dt, "images_per_s": b * g_steps / dt / 200,
                     "peak_gb": torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None}
    pool = torch.rand(4096, 3, 32, 32, device=dev)
    opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
    from cmi.augment import random_crop_flip
    from cmi.method import kldiv
    from tenfold.runtime import autocast

    def kd_step():
        x = norm(random_crop_flip(pool[torch.randint(0, 4096, (128,), device=dev)], 4))
        with torch.no_grad(), autocast(dev):
            t = teacher(x)
        with autocast(dev):
            s = student(x)
        loss = kldiv(s.float(), t.float(), 20.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for _ in range(5):
        kd_step()
    _sync()
    t0 = time.perf_counter()
    for _ in range(kd_steps):
        kd_step()
    _sync()
    kd_sps = kd_steps / (time.perf_counter() - t0)
    out["kd"] = {"steps_per_s": kd_sps, "images_per_s": kd_sps * 128}
    out["projected_full_run_h"] = 200 * (200 / out["cmi"]["it_per_s"] + 400 / kd_sps) / 3600
    out["ratio_cmi_vs_deepinv_time_per_image"] = out["deepinv"]["images_per_s"] / out["cmi"]["images_per_s"]
    out["ratio_cmi_vs_cr0_time_per_image"] = out["cmi_cr0"]["images_per_s"] / out["cmi"]["images_per_s"]
    return out


def compare(args):
    common = ["--device", "auto", "--seed", "0", "teacher.path=../shared/models/cifar10_wrn40_2.pt",
              "student.arch=wrn16_1", f"synth.batch_size={args.b}", f"synth.g_steps={args.g_steps}",
              "kd.epochs=1", f"kd.ep_steps={args.rounds * args.kd_steps}", f"kd.kd_steps={args.kd_steps}",
              f"kd.batch_size={args.kd_batch}", "kd.lr=0.1", "eval_teacher=true",
              f"data.test_subset={args.test_subset}"]
    arms = {"cmi": ["--method=cmi"],
            "deepinversion": ["--method=deepinversion", "synth.lr_g=0.1", "synth.adv=0"],
            # DAFL: same number of generator updates and KD steps
            "dafl": ["--method=dafl", f"synth.g_steps={args.g_steps}"]}
    res = {}
    for name, extra in arms.items():
        argv = common + extra + ["--out", f"{args.out_dir}/{name}"]
        if args.data_root:
            argv += ["--data-root", args.data_root]
        cfg = load_distill_config(distill_parser().parse_intermixed_args(argv))
        t0 = time.perf_counter()
        d = Distiller(cfg, quiet=True)
        s = d.run()
        s["wall_s"] = time.perf_counter() - t0
        res[name] = s
        print(name, json.dumps({k: s[k] for k in ("last_top1", "best_top1", "synth_images_per_s", "wall_s")}),
              flush=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--b", type=int, default=256)
    ap.add_argument("--g-steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--kd-steps", type=int, default=100)
    ap.add_argument("--kd-batch", type=int, default=256)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out-dir", default="runs/bench_gpu")
    ap.add_argument("--test-subset", type=int, default=0, help="0 = all 10,000 test images")
    ap.add_argument("--tp-batch", type=int, default=256, help="throughput part: synthesis batch B")
    ap.add_argument("--tp-steps", type=int, default=20, help="throughput part: timed synthesis iterations")
    ap.add_argument("--tp-bank", type=int, default=40960, help="throughput part: bank rows (full)")
    ap.add_argument("--skip-compare", action="store_true")
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    result = {"device": device_name(dev),
              "throughput": throughput(dev, args.tp_batch, args.tp_steps, kd_steps=max(args.tp_steps, 5),
                                       bank=args.tp_bank, n_neg=min(4096, args.tp_bank))}
    print("throughput", json.dumps(result["throughput"]), flush=True)
    if not args.skip_compare:
        result["compare"] = compare(args)
    write_json(f"{args.out_dir}/bench_gpu.json", result)
    tp = result["throughput"]
    print(f"\n== CMI GPU benchmark on {result['device']} ==")
    print(f"{'arm':16s} {'synth it/s':>10s} {'synth img/s':>11s} {'peak GB':>8s}")
    for k in ("cmi", "cmi_cr0", "deepinv"):
        pk = tp[k]["peak_gb"]
        pk = "n/a" if pk is None else f"{pk:.2f}"
        print(f"{k:16s} {tp[k]['it_per_s']:10.1f} {tp[k]['images_per_s']:11.1f} {pk:>8s}")
    print(f"KD: {tp['kd']['steps_per_s']:.1f} steps/s; projected full scratch run {tp['projected_full_run_h']:.2f} h")
    if "compare" in result:
        c = result["compare"]
        print(f"{'method':16s} {'last top1':>9s} {'best top1':>9s} {'synth img/s':>11s}")
        for k, s in c.items():
            print(f"{k:16s} {s['last_top1']:9.2f} {s['best_top1']:9.2f} {s['synth_images_per_s'] or 0:11.1f}")
        print(f"CMI - DeepInv (last top1): {c['cmi']['last_top1'] - c['deepinversion']['last_top1']:+.2f} points; "
              f"teacher {c['cmi'].get('teacher_top1', float('nan')):.2f}")


if __name__ == "__main__":
    main()
