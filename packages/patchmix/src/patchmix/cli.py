"""Console scripts: patchmix-train (pre-training) and patchmix-eval (kNN, linear probe, fine-tune)."""
from __future__ import annotations

import json
import sys

from tenfold.cli import base_parser, main_guard, parse_config

from .config import EvalConfig, PretrainConfig

__all__ = ["train_main", "eval_main"]

TRAIN_HELP = """PatchMix contrastive pre-training of a ViT. Each step mixes the m images of every cyclic batch group at
patch level (one shared permutation, positions kept) and trains with L_src + L_m2o/2 + L_m2m/2 (+ multi-crop
terms) against the momentum encoder's keys. Key settings: model.arch/patch_size/img_size/framework,
mix.mix_num/mix_p/patch_size/scope, loss.objective (patchmix | src_only | mocov3 baselines), loss.temp and the
term weights, aug.* (two asymmetric views, local crops), optim.* (epochs or steps, global batch_size, base_lr,
weight_decay -> weight_decay_end, momentum mu0, faithful_momentum_per_epoch), monitor.* (online kNN).
Writes <out>/config.yaml, metrics.jsonl, last.pt, backbone.pt (timm key names) and summary.json.
Multi-GPU: torchrun --nproc_per_node=N $(which patchmix-train) --config ..."""

EVAL_HELP = """Evaluate a patchmix-train checkpoint on frozen or fine-tuned features. protocol=knn: weighted kNN on the
CLS feature after the final LayerNorm for each k in knn.k (knn.faithful_random_head=true reproduces the
reference's random 1000-d head); protocol=linear: linear probe (Nesterov SGD, cosine per epoch, RandomResizedCrop
+ flip); protocol=finetune: full fine-tuning (AdamW, layer-wise lr decay, Mixup/CutMix, label smoothing).
Linear and fine-tune report both last-epoch and best-epoch test accuracy. encoder=auto uses the momentum encoder
when the checkpoint has one."""


def _train_parser():
    p = base_parser("patchmix-train", TRAIN_HELP, schema=PretrainConfig, train=True)
    p.add_argument("--steps", type=int, help="total optimizer steps (shortcut for optim.steps=N)")
    p.add_argument("--stop-at", type=int, help="stop (and checkpoint) after this many steps; resume later")
    return p


@main_guard
def train_main(argv: list[str] | None = None) -> int:
    args = _train_parser().parse_intermixed_args(argv)
    if args.steps is not None:
        args.overrides = list(args.overrides or []) + [f"optim.steps={args.steps}"]
    cfg = parse_config(PretrainConfig, args)
    from .train import pretrain

    summary = pretrain(cfg, resume=args.resume, stop_at=args.stop_at)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (list, dict))}, default=str))
    return 0


def _eval_parser():
    p = base_parser("patchmix-eval", EVAL_HELP, schema=EvalConfig)
    p.add_argument("--checkpoint", help="patchmix-train run directory or its last.pt (= checkpoint=PATH)")
    p.add_argument("--protocol", choices=["knn", "linear", "finetune"], help="= protocol=NAME")
    return p


@main_guard
def eval_main(argv: list[str] | None = None) -> int:
    args = _eval_parser().parse_intermixed_args(argv)
    extra = []
    if args.checkpoint:
        extra.append(f"checkpoint={args.checkpoint}")
    if args.protocol:
        extra.append(f"protocol={args.protocol}")
    args.overrides = list(args.overrides or []) + extra
    cfg = parse_config(EvalConfig, args)
    from .probe import run_eval

    res = run_eval(cfg, resume=args.resume)
    print(json.dumps(res, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train_main())
