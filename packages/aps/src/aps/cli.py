"""Console scripts: aps-train (pre-training), aps-finetune, aps-eval (kNN + linear probe)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tenfold import config as config_mod
from tenfold.cli import base_parser, main_guard, parse_args, parse_config
from tenfold.errors import CheckpointError, ConfigError

from .config import EvalRunConfig, FinetuneConfig, PretrainConfig

__all__ = ["train", "finetune", "evaluate"]

PAPER = "the paper's CIFAR ViT-Tiny/2 settings"  # where the config defaults come from


def _finish(summary: dict) -> None:
    from tenfold import distributed

    if distributed.is_main():
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary.items()}))
    distributed.cleanup()


@main_guard
def train(argv: list[str] | None = None) -> None:
    p = base_parser("aps-train", "APS self-supervised pre-training of a ViT: sparse patches of view 1, "
                    "view-2 patches chosen to avoid them, K optimizer steps per batch. sampling.mode=full "
                    "runs the MoCo-v3-style full-token baseline.", schema=PretrainConfig, defaults=PAPER,
                    train=True)
    p.add_argument("--stop-at", type=int, help="stop (and checkpoint) after this many batches, for testing resume")
    args = parse_args(p, argv)
    cfg = parse_config(PretrainConfig, args)
    from .train import run

    try:
        summary = run(cfg, resume=args.resume, stop_at=args.stop_at)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _finish(summary)


@main_guard
def finetune(argv: list[str] | None = None) -> None:
    p = base_parser("aps-finetune", "Fine-tune an APS backbone on all tokens with a linear head "
                    "(RandAugment, MixUp/CutMix, random erasing, label smoothing; reports best and final top-1).",
                    schema=FinetuneConfig, defaults=PAPER, train=True)
    p.add_argument("--pretrained", help="aps-train run dir / last.pt or a bare backbone state dict "
                   "(same as pretrained=PATH); omit to train from scratch")
    p.add_argument("--stop-at", type=int, help="stop (and checkpoint) after this many batches, for testing resume")
    args = parse_args(p, argv)
    if args.pretrained:
        args.overrides = list(args.overrides or []) + [f"pretrained={args.pretrained}"]
    cfg = parse_config(FinetuneConfig, args)
    from .finetune import run

    try:
        summary = run(cfg, resume=args.resume, stop_at=args.stop_at)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _finish(summary)


def _load_backbone_state(path: str) -> dict:
    from tenfold import checkpoint

    from .model import finetune_state_from_pretrain

    p = Path(path)
    if p.is_dir():
        p = p / "last.pt"
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    ck = checkpoint.load(p)  # any tenfold kind; corrupt/foreign files fail here with one line
    if ck.get("kind") not in ("aps-pretrain", "aps-finetune"):
        raise CheckpointError(f"{p} was written by '{ck.get('kind')}', not by aps-train or aps-finetune")
    return finetune_state_from_pretrain(ck["state"]["model"])


@main_guard
def evaluate(argv: list[str] | None = None) -> None:
    p = base_parser("aps-eval", "Frozen-feature evaluation of an APS backbone: weighted kNN (cosine) and a "
                    "linear probe on the full-token CLS feature.", schema=EvalRunConfig, defaults=PAPER)
    p.add_argument("--checkpoint", help="aps-train / aps-finetune run dir or last.pt (omit: random init)")
    args = parse_args(p, argv)
    if args.checkpoint:
        args.overrides = list(args.overrides or []) + [f"checkpoint={args.checkpoint}"]
    cfg = parse_config(EvalRunConfig, args)
    from tenfold import checkpoint
    from tenfold.data import root as data_root_mod

    from .augment import eval_transform
    from .data import build_splits
    from .evaluate import knn_monitor, linear_probe_monitor
    from .model import build_backbone
    from .train import _setup

    device = _setup(cfg)
    config_mod.save(cfg, Path(cfg.out) / "config.yaml")
    model = build_backbone(cfg.model)
    if cfg.checkpoint:
        sd = _load_backbone_state(cfg.checkpoint)
        checkpoint.load_module_state(model, {k: v for k, v in sd.items()}, what="backbone", strict=False)
        missing = [k for k in model.state_dict() if k not in sd and not k.startswith("head.")]
        if missing:
            raise CheckpointError(f"{cfg.checkpoint}: {len(missing)} backbone keys missing (e.g. '{missing[0]}'); "
                                  f"set model.* to the checkpoint's architecture")
    model.to(device)
    et = eval_transform(cfg.mean, cfg.std, cfg.model.img_size, cfg.data.dataset == "folder")
    splits = build_splits(cfg.data, data_root_mod.data_root(cfg.data_root), et, et, cfg.model.img_size)
    # every rank extracts its shard of the features (under torchrun), all get the same result
    res = knn_monitor(model, splits.bank, splits.test, device, cfg.eval.knn_k, cfg.eval.knn_t,
                      cfg.eval.batch_size, splits.num_classes, precision=cfg.precision,
                      num_workers=cfg.data.num_workers)
    summary = {"checkpoint": cfg.checkpoint, "knn_top1": res["knn_top1"], "knn_top5": res["knn_top5"]}
    if cfg.eval.linear_probe:
        summary.update(linear_probe_monitor(res["_features"], cfg.seed, num_classes=splits.num_classes,
                                            ecfg=cfg.eval, device=device))
    from tenfold import distributed
    from tenfold.meters import write_json

    if distributed.is_main():
        write_json(Path(cfg.out) / "summary.json", summary)
    _finish(summary)


if __name__ == "__main__":  # pragma: no cover
    sys.exit({"train": train, "finetune": finetune, "eval": evaluate}[sys.argv.pop(1)]())
