"""GPU benchmark (issue #17, spec §7c): CMI synthesis iterations/s (with a full memory bank, as in the steady
state) and DeepInversion's for comparison, KD images/s from the uint8 image pool (the real data path: gather,
pinned copy, convert and augment on the device), peak memory, in fp32 and bf16 with the bf16 speed-up; teacher
wrn40_2 -> student wrn16_1 at random init (no data needed). --long adds the quality comparison on real CIFAR-10
(CMI vs DeepInversion vs DAFL at equal synthesis iterations and KD steps; needs the data and the teacher).

    python packages/cmi/bench/gpu.py --out DIR [--smoke] [--budget S] [--data-root D] [--models-root M] [--long]
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from cmi.augment import Normalizer
from cmi.config import SynthConfig
from cmi.method import kldiv
from cmi.pool import ImagePool
from cmi.synthesis import CMISynthesizer, DeepInvSynthesizer
from tenfold import bench, nets, runtime
from tenfold.data.transforms import CIFAR10_MEAN, CIFAR10_STD

FULL = dict(b=256, g_steps=20, kd_steps=50, kd_batch=256, pool=20480, bank=40960, n_neg=4096, head_dim=256,
            teacher="wrn40_2", student="wrn16_1")
SMOKE = dict(b=4, g_steps=2, kd_steps=2, kd_batch=4, pool=16, bank=16, n_neg=8, head_dim=16,
             teacher="wrn16_1", student="wrn16_1")
REFERENCE_ITERS = 200  # the reference's synthesis iterations per batch: images/s = B * it/s / 200


def _synthesizer(arm, teacher, student, p, precision, dev):
    norm = Normalizer(CIFAR10_MEAN, CIFAR10_STD)
    if arm == "cmi":
        cfg = SynthConfig(batch_size=p["b"], g_steps=p["g_steps"], bank_size=p["bank"], n_neg=p["n_neg"],
                          head_dim=p["head_dim"])
        syn = CMISynthesizer(teacher, student, 10, cfg, norm, dev, img_size=32, arch=p["teacher"],
                             precision=precision)
        syn.bank.data = torch.randn(p["bank"], 2 * syn.feat_dim, device=dev)  # a full bank: the steady state
        syn.bank.n_updates = p["bank"]
        return syn
    cfg = SynthConfig(batch_size=p["b"], g_steps=p["g_steps"], cr=0.0, lr_g=0.1, adv=0.0)
    return DeepInvSynthesizer(teacher, student, 10, cfg, norm, dev, img_size=32, arch=p["teacher"],
                              precision=precision)


def synthesis_rows(rep, p, dev, teacher, student):
    its = {}
    for precision in ("fp32", "bf16"):
        for arm in ("cmi", "deepinversion"):
            if rep.remaining() < 10 and not rep.smoke:
                rep.row(f"{arm} synthesis {precision}: left out (budget)", None, "")
                continue
            syn = _synthesizer(arm, teacher, student, p, precision, dev)
            syn.synthesize()  # warm-up (cudnn autotuning, allocator)
            t = bench.time_it(syn.synthesize, warmup=0, repeat=1 if rep.smoke else 2, device=dev)["median_s"]
            its[(arm, precision)] = p["g_steps"] / t
            tag = f"{arm} synthesis {p['teacher']} B={p['b']} {precision}"
            rep.row(f"{tag}: iterations/s", its[(arm, precision)], "it/s")
            rep.row(f"{tag}: images/s at {REFERENCE_ITERS} iterations per batch",
                    p["b"] * its[(arm, precision)] / REFERENCE_ITERS, "images/s")
            rep.row(f"{tag}: peak memory", bench.peak_memory(syn.synthesize, dev) / 2**20, "MiB")
            syn.taps.remove()
    for arm in ("cmi", "deepinversion"):
        if (arm, "fp32") in its and (arm, "bf16") in its:
            rep.row(f"{arm} synthesis: bf16 speed-up over fp32", its[(arm, "bf16")] / its[(arm, "fp32")], "x")
    if ("cmi", "fp32") in its and ("deepinversion", "fp32") in its:
        rep.row("CMI / DeepInversion time per synthesis iteration (fp32)",
                its[("deepinversion", "fp32")] / its[("cmi", "fp32")], "x")


def kd_rows(rep, p, dev, teacher, student):
    """KD steps on the uint8 pool: batches gathered on the host, pinned, converted and augmented on the device."""
    pool = ImagePool(quantize=True)
    pool.add(torch.rand(p["pool"], 3, 32, 32))
    norm = Normalizer(CIFAR10_MEAN, CIFAR10_STD)
    opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
    speed = {}
    for precision in ("fp32", "bf16"):
        if rep.remaining() < 5 and not rep.smoke:
            rep.row(f"KD {precision}: left out (budget)", None, "")
            continue

        def run(n, precision=precision):
            for x in pool.batches(n, p["kd_batch"], norm, dev):
                with torch.no_grad(), runtime.autocast(dev, precision):
                    t = teacher(x)
                with runtime.autocast(dev, precision):
                    s = student(x)
                loss = kldiv(s.float(), t.float(), 20.0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        run(2)
        t = bench.time_it(lambda run=run: run(p["kd_steps"]), warmup=0, repeat=1, device=dev)["median_s"]
        speed[precision] = p["kd_steps"] * p["kd_batch"] / t
        rep.row(f"KD {p['teacher']}->{p['student']} B={p['kd_batch']} {precision}: images/s", speed[precision],
                "images/s")
        rep.row(f"KD {precision}: peak memory per step", bench.peak_memory(lambda run=run: run(1), dev) / 2**20,
                "MiB")
    if len(speed) == 2:
        rep.row("KD: bf16 speed-up over fp32", speed["bf16"] / speed["fp32"], "x")


def quality_long(rep, dev, smoke, models_root):
    """CMI vs DeepInversion vs DAFL on real CIFAR-10 at equal synthesis iterations and KD steps (--long only)."""
    from cmi.cli import distill_parser, load_distill_config
    from cmi.train import Distiller

    teacher = Path(models_root or os.environ.get("TENFOLD_MODELS", "")) / "cifar10_wrn40_2.pt"
    if not teacher.is_file():
        rep.row(f"quality comparison: left out (teacher missing: {teacher})", None, "")
        return
    b, g, rounds, kd = (8, 2, 1, 2) if smoke else (256, 100, 20, 100)
    common = ["--device", dev.type, "--seed", "0", f"teacher.path={teacher}", "student.arch=wrn16_1",
              f"synth.batch_size={b}", f"synth.g_steps={g}", "kd.epochs=1", f"kd.ep_steps={rounds * kd}",
              f"kd.kd_steps={kd}", f"kd.batch_size={b}", "kd.lr=0.1", f"data.test_subset={200 if smoke else 0}"]
    arms = {"cmi": ["--method=cmi"], "deepinversion": ["--method=deepinversion", "synth.lr_g=0.1", "synth.adv=0"],
            "dafl": ["--method=dafl"]}
    out = Path(rep.path).parent / "cmi-runs"
    for name, extra in arms.items():
        argv = common + extra + ["--out", str(out / name)]
        if os.environ.get("TENFOLD_DATA"):
            argv += ["--data-root", os.environ["TENFOLD_DATA"]]
        t0 = time.perf_counter()
        s = Distiller(load_distill_config(distill_parser().parse_intermixed_args(argv)), quiet=True).run()
        rep.row(f"{name}: student top-1 after {rounds} rounds x {kd} KD steps", s["last_top1"], "%")
        rep.row(f"{name}: wall time", time.perf_counter() - t0, "s")


def main(argv=None):
    args = bench.gpu_parser("cmi", __doc__.splitlines()[0]).parse_args(argv)
    if args.data_root:
        os.environ["TENFOLD_DATA"] = args.data_root
    if args.models_root:
        os.environ["TENFOLD_MODELS"] = args.models_root
    rep = bench.gpu_report("cmi", args)
    dev = rep.device
    runtime.set_deterministic(False)  # cudnn.benchmark on: fixed shapes
    p = SMOKE if args.smoke else FULL
    torch.manual_seed(0)
    teacher = nets.create(p["teacher"], 10).to(dev).eval().requires_grad_(False)
    student = nets.create(p["student"], 10).to(dev)
    synthesis_rows(rep, p, dev, teacher, student)
    kd_rows(rep, p, dev, teacher, student)
    if args.long:
        quality_long(rep, dev, args.smoke, args.models_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
