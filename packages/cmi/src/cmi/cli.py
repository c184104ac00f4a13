"""Console scripts: cmi-distill, cmi-synthesize, cmi-teacher."""
from __future__ import annotations

import argparse

from tenfold import config as config_mod
from tenfold.cli import base_parser, main_guard, prepare_run
from tenfold.errors import ConfigError

from .config import METHODS, DistillConfig, SynthesizeConfig, TeacherTrainConfig, preset


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _common_overrides(args) -> list[str]:
    out = list(args.overrides or [])
    for flag in ("out", "device", "seed", "data_root"):
        val = getattr(args, flag, None)
        if val is not None:
            out.append(f"{flag}={val}")
    return out


def load_distill_config(args) -> DistillConfig:
    """Method preset (§2.9 baselines) < YAML file < KEY=VALUE overrides < --method/--out/... flags."""
    data = config_mod.read_yaml(args.config)
    overrides = _common_overrides(args)
    method = args.method or data.get("method") or "cmi"
    for o in overrides:
        if o.startswith("method="):
            method = o.split("=", 1)[1]
    if method not in METHODS:
        raise ConfigError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    data = _merge(preset(method), data)
    data["method"] = method
    data = config_mod.apply_overrides(data, overrides)
    return config_mod.from_dict(DistillConfig, data)


def distill_parser() -> argparse.ArgumentParser:
    p = base_parser("cmi-distill", "Data-free knowledge distillation: synthesize a transfer set from the teacher "
                    "alone (CMI or a baseline) and distil it into the student; evaluates on the real test set. "
                    "Main keys: teacher.path, student.arch, data.dataset, synth.{batch_size,g_steps,lr_g,bn,oh,adv,cr,"
                    "cr_T,bank_size,n_neg,head_dim,feature_layers}, kd.{epochs,ep_steps,kd_steps,batch_size,lr,T,"
                    "init_pool} (table in the package README; defaults = the paper's scratch-CMI script).", train=True,
                    schema=DistillConfig)
    p.add_argument("--method", choices=METHODS,
                   help="cmi (contrastive model inversion), deepinversion, dafl, zskt, dfq, dfad (baselines, their "
                        "reference settings are applied first), vanilla (KD on real training images: the upper "
                        "bound), noise (KD on uniform noise: the lower bound)")
    return p


@main_guard
def distill_main(argv=None):
    args = distill_parser().parse_intermixed_args(argv)
    cfg = load_distill_config(args)
    prepare_run(cfg, args)  # --out safety and resume checks (tenfold.rundir)
    from .train import distill

    distill(cfg, resume=args.resume)


@main_guard
def synthesize_main(argv=None):
    p = base_parser("cmi-synthesize", "Invert the teacher only (CMI or DeepInversion, no student) and export the "
                    "images as <out>/pool.npz (+ PNGs with png=true), e.g. as a pre-inverted warm start for "
                    "cmi-distill kd.init_pool=<out>/pool.npz.", train=True,
                    schema=SynthesizeConfig)
    p.add_argument("--method", choices=["cmi", "deepinversion"], help="synthesizer (default: cmi)")
    args = p.parse_intermixed_args(argv)
    overrides = _common_overrides(args)
    if args.method:
        overrides.append(f"method={args.method}")
    cfg = config_mod.load(SynthesizeConfig, args.config, overrides)
    prepare_run(cfg, args)
    from .synthesize import synthesize

    synthesize(cfg, resume=args.resume)


@main_guard
def teacher_main(argv=None):
    p = base_parser("cmi-teacher", "Train a teacher (or a 'student from scratch') on real data, the reference "
                    "train_scratch.py; writes <out>/teacher.pt + teacher.json usable as teacher.path. Works under "
                    "torchrun.", train=True,
                    schema=TeacherTrainConfig)
    args = p.parse_intermixed_args(argv)
    cfg = config_mod.load(TeacherTrainConfig, args.config, _common_overrides(args))
    prepare_run(cfg, args)
    from .teacher import train_teacher

    train_teacher(cfg, resume=args.resume)
