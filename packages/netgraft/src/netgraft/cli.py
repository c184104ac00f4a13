"""Console scripts: netgraft-train, netgraft-eval, netgraft-teacher.

Only the parsers load at import (tenfold.cli and the torch-free config): torch and the method are imported
after the arguments are read, so --help returns at once (test_cli_help)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tenfold.cli import base_parser, main_guard, parse_args, parse_config
from tenfold.errors import CheckpointError

from .config import NetGraftConfig, TeacherConfig


@main_guard
def train(argv: list[str] | None = None) -> None:
    p = base_parser("netgraft-train", "Few-shot knowledge distillation by progressive network grafting "
                    "(stage 1: graft each student block into the frozen teacher; stage 2: graft growing chains). "
                    "--method kd|scratch runs the baselines on the same few shots and step budget.",
                    schema=NetGraftConfig, defaults="the official CIFAR-10 10-shot settings", train=True)
    p.add_argument("--method", choices=["netgraft", "kd", "scratch"],
                   help="netgraft (default), kd = plain few-shot KD with the same loss, "
                        "scratch = CE on the shots' labels")
    p.add_argument("--shots", type=int, help="images per class (sets data.n_shot)")
    args = parse_args(p, argv)
    if args.method:
        args.overrides.append(f"method={args.method}")
    if args.shots:
        args.overrides.append(f"data.n_shot={args.shots}")
    cfg = parse_config(NetGraftConfig, args)
    from .train import check_method, run

    check_method(cfg)
    summary = run(cfg, resume=args.resume)
    print(json.dumps(summary))


def load_student(path: str | Path):
    """(config, student module) of a run's student.pt."""
    from tenfold import checkpoint
    from tenfold import config as config_mod
    from torch import nn

    from .method import Student, build_units
    from .models import build_student, build_teacher, partition

    ck = checkpoint.load(Path(path) / "student.pt" if Path(path).is_dir() else path, kind="netgraft-student")
    cfg = config_mod.from_dict(NetGraftConfig, ck["config"])
    mc = cfg.model
    student = build_student(mc.student_arch, mc.num_classes, mc.student_blocks, mc.student_head_hidden,
                            mc.student_width)
    if cfg.method == "scratch":
        checkpoint.load_module_state(student, ck["student"], what="student")
        return cfg, student
    teacher = build_teacher(mc.teacher_arch, mc.num_classes, mc.teacher_blocks)  # shapes only
    tpart, spart = partition(teacher), partition(student)
    model = Student(nn.ModuleList(list(spart.blocks[:mc.positions[0]])),
                    build_units(tpart, spart, mc.positions, mc.force_adapters))
    checkpoint.load_module_state(model, ck["student"], what="student")
    return cfg, model


@main_guard
def evaluate(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="netgraft-eval", description="Test accuracy of a trained student "
                                "(with its adaptation layers and after merging them exactly).")
    p.add_argument("student", help="<run dir> or <run dir>/student.pt written by netgraft-train")
    p.add_argument("--data-root", help="data directory (default: $TENFOLD_DATA)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--limit", type=int, default=0, help="evaluate on a fixed random subset of N test images (0 = all)")
    p.add_argument("--no-merge", action="store_true", help="skip the merged-student evaluation")
    args = p.parse_args(argv)
    import torch
    from tenfold.runtime import select_device

    from .method import Student, merge_adapters
    from .train import dataset_stats, load_split, normalised

    device = select_device(args.device)
    cfg, model = load_student(args.student)
    model.to(device).eval()
    x, y = normalised(load_split(cfg, False, args.data_root), *dataset_stats(cfg.data.name), args.limit)

    def acc(m):
        with torch.no_grad():
            pred = torch.cat([m(x[i:i + 500].to(device)).argmax(1).cpu() for i in range(0, len(x), 500)])
        return (pred == y).float().mean().item() * 100

    res = {"test_acc": acc(model), "params": sum(t.numel() for t in model.parameters())}
    if isinstance(model, Student) and not args.no_merge:
        merged = merge_adapters(model).to(device)
        res.update(test_acc_merged=acc(merged), params_merged=sum(t.numel() for t in merged.parameters()))
    print(json.dumps(res))


@main_guard
def teacher(argv: list[str] | None = None) -> None:
    p = base_parser("netgraft-teacher", "Train a VGG16-blockwise (or other) teacher with labels; writes "
                    "<out>/teacher.pt (plain state_dict) and teacher.json for model.teacher_ckpt.", train=True,
                    schema=TeacherConfig)
    args = parse_args(p, argv)
    cfg = parse_config(TeacherConfig, args)
    from .teacher import train_teacher

    print(json.dumps(train_teacher(cfg, resume=args.resume)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train())


__all__ = ["train", "evaluate", "teacher", "load_student", "CheckpointError"]
