"""NetGraft GPU benchmark (issue #17 contract, spec §7.3): writes <out>/netgraft.json after every measurement.

1. Training-step throughput (images/s) and peak memory of every phase of the official schedule — stage-1
   grafting of units U0/U1/U2 inside the frozen VGG16 teacher, stage-2 chains of 2 and 3 units — and of the
   baselines' steps (prefix-shared plain KD; KD from scratch, the whole student), each the package's own
   `train_step` (teacher no-grad prefix + logits, grafted forward/backward, Adam) on uncached input as with
   augment=crop_flip, batch 64 (the official 10-shot batch) and 256, in bf16 and fp32 (cfg.precision through
   tenfold.runtime.autocast). Ratios: NetGraft / plain-KD images/s over the whole official schedule at equal
   steps (each phase's step time weighted by its epochs), bf16 / fp32 speed-up; evaluation images/s.
   Timing uses randomly initialised networks (same shapes as the shared teacher; no data needed).
2. With budget left (or --long) and CIFAR-10 + the VGG16 teacher under --data-root/--models-root: the official
   10-shot schedule with random crops + flips, NetGraft vs plain KD at equal steps, seeds 0-2, full test set,
   last-epoch checkpoint (then 5- and 1-shot with --long): test accuracy, the gap, wall seconds per run.
--smoke: the same code path on the CPU with a mini VGG on 16×16 inputs and synthetic data (< 30 s).

    python packages/netgraft/bench/gpu.py --out DIR [--smoke] [--budget S] [--data-root D] [--models-root M] [--long]
"""
from __future__ import annotations

import os
import statistics as st
import time
from functools import partial
from pathlib import Path

import torch
from netgraft.config import NetGraftConfig
from netgraft.models import build_teacher
from netgraft.train import _logits, build_models, phase_model, phases, run, student_from_prefix, train_step
from tenfold import bench
from tenfold import config as config_mod
from tenfold.bench import gpu_parser, gpu_report

HERE = Path(__file__).resolve().parents[1]
FULL = dict(overrides=[], batches=(64, 256), warmup=3, repeat=10, eval_n=10000, image=32)
MINI = ["model.teacher_blocks=[[8, 8], [16, 16], [32, 32], [32, 32]]",
        "model.student_blocks=[[8, 8], [16, 16], [16, 16], [16, 16]]", "model.student_head_hidden=16",
        "model.positions=[2, 3, 4]", "stage1.epochs=[2, 1, 1]", "stage2.epochs=[1, 1]", "data.image_size=16"]
SMOKE = dict(overrides=MINI, batches=(8,), warmup=1, repeat=2, eval_n=64, image=16)


def make_cfg(args, sz, method: str, precision: str, extra=()) -> NetGraftConfig:
    device = "cpu" if args.smoke else "cuda"
    return config_mod.load(NetGraftConfig, HERE / "configs" / "cifar10_vgg16_10shot.yaml",
                           sz["overrides"] + [f"method={method}", f"precision={precision}", f"device={device}",
                                              *extra])


def random_teacher_state(cfg: NetGraftConfig) -> dict:
    torch.manual_seed(0)
    return build_teacher(cfg.model.teacher_arch, cfg.model.num_classes, cfg.model.teacher_blocks).state_dict()


def method_rows(rep, args, sz, method: str, precision: str, batch: int, secs: dict) -> None:
    """images/s of each phase's training step of `method` (peak MiB of its largest), into `secs` by phase."""
    cfg = make_cfg(args, sz, method, precision, ["loss=kl"] if method == "kd_scratch" else [])
    s = build_models(cfg, random_teacher_state(cfg))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, sz["image"], sz["image"], generator=g).to(s.device)
    for ph in phases(cfg):
        model, opt = phase_model(cfg, s, ph)
        step = partial(train_step, cfg, s, ph, model, opt, x)
        name = {"block": f"stage-1 unit U{ph.index}", "net": f"stage-2 chain of {ph.index + 2}",
                "kd": "plain KD (prefix shared)", "kd_scratch": "KD from scratch (whole student)"}[ph.kind]
        t = bench.time_it(step, sz["warmup"], sz["repeat"], s.device)["median_s"]
        secs[f"{ph.kind}{ph.index}"] = t
        rep.row(f"{name} step, batch {batch}, {precision}", batch / t, "images/s")
        if ph.kind == "kd_scratch" or (ph.kind == "net" and ph.index == len(cfg.stage2.epochs) - 1):
            rep.row(f"{name} step, batch {batch}, {precision}: peak memory",
                    bench.peak_memory(step, s.device) / 2**20, "MiB")
    if method == "netgraft":
        xe = torch.randn(sz["eval_n"], 3, sz["image"], sz["image"], generator=g)
        ev = partial(_logits, s, student_from_prefix(s), xe)
        t = bench.time_it(ev, 1, max(1, sz["repeat"] // 3), s.device)["median_s"]
        rep.row(f"evaluation of the student ({sz['eval_n']} images, batch 500), {precision}", sz["eval_n"] / t,
                "images/s")


def step_rows(rep, args, sz, precision: str, batch: int) -> dict[str, float]:
    """Step throughput of every phase of NetGraft and both baselines; returns seconds per step by phase."""
    secs: dict[str, float] = {}
    for method in ("netgraft", "kd", "kd_scratch"):
        method_rows(rep, args, sz, method, precision, batch, secs)
    # the whole official schedule at equal steps: NetGraft's phases weighted by their epochs vs KD for as many
    gcfg = make_cfg(args, sz, "netgraft", precision)
    plan = phases(gcfg)
    t_graft = sum(p.epochs * secs[f"{p.kind}{p.index}"] for p in plan)
    total = sum(p.epochs for p in plan)
    rep.row(f"NetGraft / plain KD images/s, whole schedule, batch {batch}, {precision}",
            total * secs["kd0"] / t_graft, "x")
    rep.row(f"NetGraft / KD-from-scratch images/s, whole schedule, batch {batch}, {precision}",
            total * secs["kd_scratch0"] / t_graft, "x")
    return secs


def accuracy_rows(rep, args, sz, shots_list, seeds) -> None:
    """Official schedule on real CIFAR-10 (or synthetic data under --smoke), NetGraft vs plain KD."""
    data_root = args.data_root or os.environ.get("TENFOLD_DATA")
    models_root = args.models_root or os.environ.get("TENFOLD_MODELS")
    teacher = Path(models_root) / "cifar10_vgg16_blockwise.pt" if models_root else None
    extra, state = [], None
    if args.smoke:
        extra = ["data.name=synthetic", "data.synthetic_train=200", "data.synthetic_test=64", "batch_size=8"]
        state = random_teacher_state(make_cfg(args, sz, "netgraft", "fp32"))
    elif not (data_root and (Path(data_root) / "cifar10" / "test.npz").is_file()):
        rep.skip(f"accuracy runs not made: no cifar10/ under --data-root ({data_root})", exit=False)
        return
    elif teacher is None or not teacher.is_file():
        rep.skip(f"accuracy runs not made: no cifar10_vgg16_blockwise.pt under --models-root ({models_root})",
                 exit=False)
        return
    else:
        extra = [f"data_root={data_root}", f"model.teacher_ckpt={teacher}"]
    per_run = None
    for shots in shots_list:
        acc: dict[str, list[float]] = {"netgraft": [], "kd": []}
        for seed in seeds:
            for method in ("netgraft", "kd"):
                if per_run is not None and rep.remaining() < 1.3 * per_run:
                    return
                out = Path(args.out) / "netgraft-runs" / f"{method}-{shots}shot-s{seed}"
                cfg = make_cfg(args, sz, method, "bf16", extra + [f"data.n_shot={shots}", f"seed={seed}",
                                                                  f"out={out}"])
                t0 = time.monotonic()
                s = run(cfg, teacher_state=state)
                per_run = max(per_run or 0.0, time.monotonic() - t0)
                acc[method].append(s["test_acc"])
                rep.row(f"{shots}-shot {method} test acc, seed {seed} ({s['steps']} steps, bf16)", s["test_acc"],
                        "%")
                rep.row(f"{shots}-shot {method} run wall time, seed {seed}", time.monotonic() - t0, "s")
        if acc["netgraft"] and len(acc["netgraft"]) == len(acc["kd"]):
            gaps = [a - b for a, b in zip(acc["netgraft"], acc["kd"])]
            rep.row(f"{shots}-shot NetGraft − plain KD, mean over {len(gaps)} seeds", st.mean(gaps), "points")
            if len(gaps) > 1:
                rep.row(f"{shots}-shot NetGraft − plain KD, std over seeds", st.stdev(gaps), "points")


def main():
    args = gpu_parser("netgraft", __doc__.splitlines()[0]).parse_args()
    rep = gpu_report("netgraft", args)
    sz = SMOKE if args.smoke else FULL
    if rep.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    fp32 = {}
    for batch in sz["batches"]:
        for precision in ("fp32", "bf16"):
            if precision == "bf16" and rep.device.type == "cuda" and not torch.cuda.is_bf16_supported():
                continue
            secs = step_rows(rep, args, sz, precision, batch)
            if precision == "fp32":
                fp32 = secs
            elif fp32:
                for key, label in (("net1", "stage-2 chain of 3"), ("kd0", "plain KD")):
                    rep.row(f"bf16 / fp32 speed-up, {label} step, batch {batch}", fp32[key] / secs[key], "x")
    # short accuracy comparison when the budget allows it, the longer one behind --long
    if args.smoke:
        accuracy_rows(rep, args, sz, [10], [0])
    elif args.long or rep.remaining() > 120:
        accuracy_rows(rep, args, sz, [10, 5, 1] if args.long else [10], [0, 1, 2])


if __name__ == "__main__":
    main()
