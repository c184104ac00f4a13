"""Diversity of the synthetic set and the student it gives (issue #20): CMI vs the same generator pipeline
without the contrastive term vs pixel-space DeepInversion, on the real CIFAR-10 WRN-40-2 teacher, CPU only.

For every seed and arm: synthesise N images (same number of inversion iterations per image for every arm),
measure the set's diversity as spec §7(b) defines it -- mean pairwise cosine similarity of the teacher's
instance-mean features (all BN inputs, D = 2704; lower = more diverse) -- plus the mean nearest-neighbour cosine
(near-duplicates) and, for CMI only, the instance-discrimination accuracy of its final head; then distil a fresh
WRN-16-1 student on the set with the same KD budget for every arm and evaluate it on the real test set.

Arms (adv = 0 everywhere: the set is synthesised before KD, with no student -- the paper's "pre-inverted set +
plain KD" pipeline, spec §2.8):
  cmi            generator + latents reset per round, bn 1, oh 1, cr 0.8, tau 0.1, bank = all images so far,
                 n_neg = bank size, head D -> D -> 256 (spec §2.5), Adam lr --lr-gen
  no-contrast    the same with cr = 0
  deepinversion  pixels optimised directly (spec §2.9): bn 10, oh 1, tv 0.001, Adam lr 0.1, batch-shared jitter
KD (every arm): SGD (momentum 0.9, wd 1e-4, cosine over the steps), KL at temperature --kd-T, on the set's images
and their horizontal flips (--views 2) with the teacher's logits computed once per view (cached: the teacher is
frozen, so this is the same loss as computing them every step on that view).

Writes OUT/results.jsonl (one line per seed x arm, appended as each finishes; rows already there are skipped,
so a killed run resumes) and OUT/table.md + OUT/table.json (per-seed values, mean +- sample std over seeds).
Single-threaded by default (--threads 1). The wall time in the table is this invocation's (a resumed run counts
only the cells it ran).

    TENFOLD_DATA=/work/shared/data .venv/bin/python packages/cmi/bench/diversity.py --out runs/cmi-diversity
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from cmi.augment import Normalizer
from cmi.config import DataConfig, SynthConfig, TeacherConfig
from cmi.data import dataset, evaluate, load_teacher_cfg
from cmi.hooks import TeacherTaps
from cmi.method import kldiv
from cmi.metrics import instance_discrimination_accuracy, mean_nearest_neighbour_cosine, mean_pairwise_cosine
from cmi.models import build
from cmi.pool import ImagePool
from cmi.synthesis import CMISynthesizer, DeepInvSynthesizer
from tenfold import runtime
from tenfold.benchrows import cpu_name

ARMS = ("cmi", "no-contrast", "deepinversion")
MEASURES = ("mean_pairwise_cosine", "nn_cosine", "teacher_classes", "student_top1", "cmi_head_ida")


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    ap.add_argument("--images", type=int, default=512, help="synthetic images per arm (a multiple of --batch)")
    ap.add_argument("--batch", type=int, default=64, help="images per synthesis round (CMI: per generator reset)")
    ap.add_argument("--g-steps", type=int, default=5, help="inversion iterations per round, every arm")
    ap.add_argument("--lr-gen", type=float, default=1e-3, help="Adam lr of G, z and head (spec §2.8: 1e-3)")
    ap.add_argument("--lr-pix", type=float, default=0.1, help="DeepInversion's pixel Adam lr (spec §2.9: 0.1)")
    ap.add_argument("--kd-steps", type=int, default=300)
    ap.add_argument("--kd-batch", type=int, default=64)
    ap.add_argument("--kd-lr", type=float, default=0.05)
    ap.add_argument("--kd-T", type=float, default=4.0)
    ap.add_argument("--views", type=int, choices=(1, 2), default=2, help="1 = images only, 2 = + horizontal flips")
    ap.add_argument("--test-subset", type=int, default=0, help="evaluate on the first N test images (0 = 10,000)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--teacher", default="/work/shared/models/cifar10_wrn40_2.pt")
    ap.add_argument("--data-root", default=None, help="default: $TENFOLD_DATA")
    ap.add_argument("--out", default="runs/cmi-diversity")
    a = ap.parse_args(argv)
    if a.images % a.batch:
        ap.error("--images must be a multiple of --batch")
    return a


def synth_config(arm: str, a) -> SynthConfig:
    if arm == "deepinversion":
        return SynthConfig(batch_size=a.batch, g_steps=a.g_steps, lr_g=a.lr_pix, bn=10.0, oh=1.0, adv=0.0, cr=0.0,
                           tv=0.001)
    return SynthConfig(batch_size=a.batch, g_steps=a.g_steps, lr_g=a.lr_gen, bn=1.0, oh=1.0, adv=0.0,
                       cr=0.8 if arm == "cmi" else 0.0, cr_T=0.1, bank_size=a.images, n_neg=a.images, head_dim=256)


@torch.no_grad()
def teacher_pass(teacher, arch, images, norm, flip=False, bs=128):
    """Instance-mean features (B, D) and logits (B, C) of images in [0, 1], one teacher forward."""
    taps = TeacherTaps(teacher, None, arch, bn=False)
    feats, logits = [], []
    try:
        for i in range(0, images.shape[0], bs):
            x = images[i:i + bs]
            logits.append(teacher(norm(x.flip(3) if flip else x)).float())
            feats.append(taps.features().float())
    finally:
        taps.remove()
    return torch.cat(feats), torch.cat(logits)


def distil(teacher_logits, views, norm, a, seed):
    """A fresh WRN-16-1 trained by KD on fixed (image view, teacher logits) pairs."""
    torch.manual_seed(seed + 777)
    student = build("wrn16_1", 10)
    opt = torch.optim.SGD(student.parameters(), lr=a.kd_lr, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.kd_steps)
    x_all, t_all = torch.cat(views), torch.cat(teacher_logits)
    n = x_all.shape[0]
    perm, pos = torch.randperm(n), 0
    student.train()
    for _ in range(a.kd_steps):
        if pos + a.kd_batch > n:
            perm, pos = torch.randperm(n), 0
        idx = perm[pos:pos + a.kd_batch]
        pos += a.kd_batch
        loss = kldiv(student(norm(x_all[idx])), t_all[idx], a.kd_T)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return student


def run_cell(seed, arm, teacher, arch, norm, test, a) -> dict:
    runtime.seed_everything(seed)
    cfg = synth_config(arm, a)
    cls = DeepInvSynthesizer if arm == "deepinversion" else CMISynthesizer
    syn = cls(teacher, None, 10, cfg, norm, "cpu", arch=arch, precision="fp32")
    pool = ImagePool(quantize=True)  # the reference's PNG round trip
    t0 = time.perf_counter()
    try:
        for _ in range(a.images // a.batch):
            pool.add(syn.synthesize()["images"])
        t_syn = time.perf_counter() - t0
        images = pool.tensor()
        ida = None
        if arm == "cmi":
            torch.manual_seed(seed + 999)
            ida = instance_discrimination_accuracy(teacher, syn.head, syn.taps, images, norm)
    finally:
        syn.taps.remove()
    t0 = time.perf_counter()
    feats, logits = teacher_pass(teacher, arch, images, norm)
    views, tlog = [images], [logits]
    if a.views == 2:
        views.append(images.flip(3))
        tlog.append(teacher_pass(teacher, arch, images, norm, flip=True)[1])
    t_teacher = time.perf_counter() - t0
    t0 = time.perf_counter()
    student = distil(tlog, views, norm, a, seed)
    t_kd = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc = evaluate(student, test[0], test[1], norm, "cpu")
    t_eval = time.perf_counter() - t0
    return {"seed": seed, "arm": arm, "n_images": int(images.shape[0]),
            "mean_pairwise_cosine": mean_pairwise_cosine(feats), "nn_cosine": mean_nearest_neighbour_cosine(feats),
            "teacher_classes": int(logits.argmax(1).unique().numel()), "cmi_head_ida": ida,
            "student_top1": acc["top1"], "student_top5": acc["top5"],
            "seconds": {"synthesis": t_syn, "teacher_logits": t_teacher, "kd": t_kd, "eval": t_eval}}


def _stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"mean": m, "std": sd, "min": min(vals), "max": max(vals), "n": len(vals)}


def write_table(rows, a, out: Path, command: str, wall: float | None):
    arms = [x for x in ARMS if any(r["arm"] == x for r in rows)]
    seeds = sorted({r["seed"] for r in rows})
    summary = {arm: {m: _stats([r[m] for r in rows if r["arm"] == arm]) for m in MEASURES} for arm in arms}
    # paired per seed: CMI minus each baseline (negative cosine difference = CMI more diverse)
    paired = {}
    for base in ("no-contrast", "deepinversion"):
        for m in ("mean_pairwise_cosine", "student_top1"):
            d = []
            for s in seeds:
                c = [r[m] for r in rows if r["seed"] == s and r["arm"] == "cmi"]
                b = [r[m] for r in rows if r["seed"] == s and r["arm"] == base]
                if c and b:
                    d.append(c[0] - b[0])
            if d:
                paired[f"cmi_minus_{base}:{m}"] = {"per_seed": d, **_stats(d)}
    fmt = {"mean_pairwise_cosine": "{:.4f}", "nn_cosine": "{:.4f}", "teacher_classes": "{:.0f}",
           "student_top1": "{:.2f}", "cmi_head_ida": "{:.3f}"}
    lines = [f"# CMI diversity bench ({len(seeds)} seeds: {' '.join(map(str, seeds))})", "",
             f"command: `{command}`", "",
             f"date {datetime.date.today().isoformat()}, {cpu_name()}, "
             f"torch {torch.__version__}, {a.threads} thread(s)" + (f", wall {wall / 60:.1f} min" if wall else ""),
             "", f"{a.images} images per arm, {a.images // a.batch} rounds x {a.batch} x {a.g_steps} inversion "
             f"iterations; KD {a.kd_steps} steps x {a.kd_batch} (lr {a.kd_lr}, T {a.kd_T}, views {a.views}); "
             f"test images: {a.test_subset or 10000}", "",
             "| seed | arm | mean pairwise cosine (lower = more diverse) | NN cosine | teacher classes | "
             "CMI head inst.-discr. | student top-1 % | synth s | KD s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["seed"], ARMS.index(r["arm"]))):
        ida = "–" if r["cmi_head_ida"] is None else f"{r['cmi_head_ida']:.3f}"
        lines.append(f"| {r['seed']} | {r['arm']} | {r['mean_pairwise_cosine']:.4f} | {r['nn_cosine']:.4f} | "
                     f"{r['teacher_classes']} | {ida} | {r['student_top1']:.2f} | {r['seconds']['synthesis']:.0f} | "
                     f"{r['seconds']['kd']:.0f} |")
    lines += ["", "mean ± sample std over seeds [min, max]:", "",
              "| arm | " + " | ".join(MEASURES) + " |", "|---|" + "---|" * len(MEASURES)]
    for arm in arms:
        cells = []
        for m in MEASURES:
            s = summary[arm][m]
            cells.append("–" if s is None else
                         f"{fmt[m].format(s['mean'])} ± {fmt[m].format(s['std'])} "
                         f"[{fmt[m].format(s['min'])}, {fmt[m].format(s['max'])}]")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    if paired:
        lines += ["", "paired per seed (CMI − baseline):", ""]
        for k, v in paired.items():
            lines.append(f"* {k}: " + ", ".join(f"{x:+.4f}" for x in v["per_seed"])
                         + f" (mean {v['mean']:+.4f})")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    (out / "table.json").write_text(json.dumps({"command": command, "seeds": seeds, "args": vars(a),
                                                "wall_s": wall, "rows": rows, "summary": summary,
                                                "paired": paired}, indent=1))
    return "\n".join(lines)


def main(argv=None):
    a = parse(argv)
    command = " ".join([Path(sys.executable).name, *sys.argv])
    root = a.data_root or os.environ.get("TENFOLD_DATA")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = out / "results.jsonl"
    rows = [json.loads(x) for x in res.read_text().splitlines() if x.strip()] if res.is_file() else []
    done = {(r["seed"], r["arm"]) for r in rows}
    t_start = time.perf_counter()
    with runtime.num_threads(a.threads):
        norm = Normalizer(DataConfig().mean, DataConfig().std)
        teacher, arch, _ = load_teacher_cfg(TeacherConfig(path=a.teacher), root, "cpu")
        teacher.eval()
        test = dataset(DataConfig(test_subset=a.test_subset), root, train=False).tensors()
        for seed in a.seeds:
            for arm in a.arms:
                if (seed, arm) in done:
                    print(f"[skip] seed {seed} {arm}: already in {res}", flush=True)
                    continue
                r = run_cell(seed, arm, teacher, arch, norm, test, a)
                r["command"] = command
                with res.open("a") as f:
                    f.write(json.dumps(r) + "\n")
                rows.append(r)
                print(f"[done] seed {seed} {arm}: cos {r['mean_pairwise_cosine']:.4f} nn {r['nn_cosine']:.4f} "
                      f"top1 {r['student_top1']:.2f} ida {r['cmi_head_ida']} {r['seconds']} "
                      f"(elapsed {time.perf_counter() - t_start:.0f} s)", flush=True)
    print(write_table(rows, a, out, command, time.perf_counter() - t_start))


if __name__ == "__main__":
    main()
