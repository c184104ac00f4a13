"""Console scripts: mosaickd-train (MosaicKD), mosaickd-kd (baselines), mosaickd-teacher (train a teacher)."""
from __future__ import annotations

import json
import sys

from tenfold.cli import base_parser, main_guard, parse_config

from .config import KDConfig, MosaicConfig, TeacherConfig

DATA_HELP = ("Data sets by name: cifar10, cifar100, mnist, svhn, stl10, shapes (offline synthetic), imagenet32, "
             "places365_32, folder:<dir>. Examples: data.ood=[cifar10] data.ood_classes=[0,1,8,9] "
             "data.in_domain_classes=[2,3,4,5,6,7] model.teacher=PATH model.student=wrn16_1")


def _parser(prog, description, schema):
    p = base_parser(prog, description, schema=schema, train=True)
    p.add_argument("--stop-at", type=int, help="stop after this many steps / outer iterations (checkpointed; "
                   "continue with --resume)")
    return p


def _resume(args, cfg):
    return args.resume  # None, "auto" (= <out>/last.pt if present), a checkpoint file or a run directory


def _finish(summary: dict) -> None:
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (dict, list))}))


@main_guard
def train(argv=None) -> None:
    p = _parser("mosaickd-train", "MosaicKD: distil a frozen teacher into a student from out-of-domain data. "
                    "A generator mosaics OOD patches (patch discriminator, 10x10 receptive field) into images the "
                    "teacher finds in-domain, and is pushed towards student-teacher disagreement; the student "
                    "learns from synthetic + OOD images. " + DATA_HELP, MosaicConfig)
    args = p.parse_intermixed_args(argv)  # overrides may follow options
    cfg = parse_config(MosaicConfig, args)
    from .train import run_mosaic

    _finish(run_mosaic(cfg, resume=_resume(args, cfg), stop_at=args.stop_at))


@main_guard
def kd(argv=None) -> None:
    p = _parser("mosaickd-kd", "Baselines at the same teacher/student/data: method=vanilla (KD on the OOD "
                    "images, tau 5), balanced (OOD resampled to balance the teacher's pseudo-labels), datafree "
                    "(DFQ-style generator; DFAD with datafree.oh=0 datafree.ie=0 datafree.bn=0). " + DATA_HELP,
                KDConfig)
    args = p.parse_intermixed_args(argv)  # overrides may follow options
    cfg = parse_config(KDConfig, args)
    from .baselines import run_kd

    _finish(run_kd(cfg, resume=_resume(args, cfg), stop_at=args.stop_at))


@main_guard
def teacher(argv=None) -> None:
    p = _parser("mosaickd-teacher", "Train a teacher on a data set or class subset (teacher.dataset, "
                    "teacher.classes, teacher.arch); writes <out>/teacher.pt + teacher.json for model.teacher.",
                TeacherConfig)
    args = p.parse_intermixed_args(argv)  # overrides may follow options
    cfg = parse_config(TeacherConfig, args)
    from .teacher import run_teacher

    _finish(run_teacher(cfg, resume=_resume(args, cfg), stop_at=args.stop_at))


if __name__ == "__main__":
    sys.exit(train())
