"""Console scripts: mgc-train, mgc-eval, mgc-export."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tenfold import cli as tcli
from tenfold import config as config_mod
from tenfold.errors import ConfigError

from .config import EvalConfig, TrainConfig

__all__ = ["train_main", "eval_main", "export_main", "run_eval"]


def train_main(argv: list[str] | None = None) -> None:
    _train_cli(argv)


@tcli.main_guard
def _train_cli(argv: list[str] | None = None) -> dict:
    p = tcli.base_parser("mgc-train", "MGC pre-training: contrast corresponding regions of two overlapping crops at "
                         "several granularities (token, 2x2 cell, scene cell) with a momentum ViT encoder. "
                         "Single process, or several GPUs/nodes with torchrun.", train=True,
                         schema=TrainConfig)
    p.add_argument("--stop-at", type=int, default=None,
                   help="stop (and checkpoint) after this many optimizer steps, e.g. to test --resume")
    args = p.parse_args(argv)
    cfg = tcli.parse_config(TrainConfig, args)
    from .train import train

    resume = args.resume
    summary = train(cfg, resume=resume, stop_at=args.stop_at)
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary.items()}))
    return summary


def run_eval(cfg: EvalConfig) -> dict:
    import torch
    from tenfold import runtime

    from .data import labelled_split
    from .evaluate import correspondence_retrieval, knn_and_probe, retrieval_pairs
    from .export import load_any_backbone

    device = runtime.select_device(cfg.device)
    runtime.seed_everything(cfg.seed)
    vit, tcfg = load_any_backbone(cfg.checkpoint, cfg.encoder)
    vit = vit.to(device).eval()
    bank, test = labelled_split(cfg.dataset, cfg.data_root, cfg.bank, cfg.test, cfg.seed)
    t0 = time.perf_counter()
    res = knn_and_probe(vit, bank, test, tcfg.augment, device, cfg.knn_k, cfg.knn_t, cfg.probe_epochs, cfg.seed)
    if cfg.pairs > 0:
        model_cfg = tcfg.model
        pairs = retrieval_pairs(test.images, model_cfg, tcfg.views, tcfg.augment, cfg.pairs, cfg.seed)
        with torch.no_grad():
            res["corr_retrieval"] = correspondence_retrieval(vit, pairs, tcfg.augment, device, cfg.pairs_k,
                                                             None, cfg.photometric)
    res["seconds"] = time.perf_counter() - t0
    res["checkpoint"] = str(cfg.checkpoint)
    return res


def eval_main(argv: list[str] | None = None) -> None:
    _eval_cli(argv)


@tcli.main_guard
def _eval_cli(argv: list[str] | None = None) -> dict:
    p = tcli.base_parser("mgc-eval", "Evaluate a pre-trained MGC backbone: weighted kNN and linear probe on "
                         "mean-pooled patch tokens, and dense correspondence retrieval between two views "
                         "(share of view-1 tokens whose nearest view-2 token overlaps them).",
                         schema=EvalConfig,
                         examples=["mgc-eval --checkpoint runs/mgc-demo dataset=synthetic --out runs/mgc-demo-eval",
                                   "mgc-eval --checkpoint runs/mgc-demo/last.pt dataset=cifar10 probe_epochs=10 "
                                   "--out runs/mgc-demo-eval-cifar"])
    p.add_argument("--checkpoint", help="training run dir / last.pt, or an mgc-export .pt "
                   "(same as the override checkpoint=PATH)")
    args = p.parse_args(argv)
    if args.checkpoint:
        args.overrides = list(args.overrides or []) + [f"checkpoint={args.checkpoint}"]
    cfg = tcli.parse_config(EvalConfig, args)
    out = Path(cfg.out)
    config_mod.save(cfg, out / "config.yaml")
    res = run_eval(cfg)
    from tenfold.meters import MetricLogger

    MetricLogger(out).summary(**res)
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}))
    return res


def export_main(argv: list[str] | None = None) -> None:
    _export_cli(argv)


@tcli.main_guard
def _export_cli(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(prog="mgc-export", description="Write the pre-trained ViT backbone as a plain "
                                "state_dict (prefix stripped, heads and the other branch dropped) plus a JSON "
                                "with its settings (num_heads, sin-cos positions) for detection/segmentation code.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", help="MGC training run directory or its last.pt")
    p.add_argument("output", help="output .pt file; the JSON is written beside it")
    p.add_argument("--encoder", choices=["base", "momentum"], default="base",
                   help="which encoder to export: the trained base encoder or its EMA (momentum) copy")
    args = p.parse_args(argv)
    if not args.output.endswith((".pt", ".pth")):
        raise ConfigError(f"output '{args.output}' should end in .pt or .pth")
    from .export import export_backbone

    path = export_backbone(args.checkpoint, args.output, args.encoder)
    print(f"wrote {path} and {path.with_suffix('.json')}", file=sys.stdout)
    return str(path)
