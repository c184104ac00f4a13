"""Console scripts: dps-train, dps-eval, dps-fit-decay."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from tenfold import config as config_mod
from tenfold.cli import base_parser, main_guard, parse_config
from tenfold.errors import CheckpointError

from .config import DPSConfig

MODEL_CHOICES = {"dps": ("dps", None), "tgat": ("tgat", None), "tgat-uniform": ("tgat", "uniform"),
                 "tgat-recent": ("tgat", "recent"), "tds": ("tds", None), "gas": ("gas", None)}


def _log(msg: str) -> None:
    print(msg, flush=True)


def _model_overrides(args) -> None:
    if getattr(args, "model", None):
        name, sampler = MODEL_CHOICES[args.model]
        args.overrides = list(args.overrides or []) + [f"model.name={name}"]
        if sampler:
            args.overrides.append(f"model.tgat_sampler={sampler}")


def train_parser():
    p = base_parser("dps-train", "Train DPS (GAS + TDS samplers, fusion) or a TGAT baseline on temporal link "
                    "prediction: split, fit α (TDS), pretrain GAS + top-K table, train with early stopping, "
                    "test AUC/AP/accuracy/F1. Artifacts, checkpoints and summary.json go to --out.", train=True,
                    schema=DPSConfig)
    p.add_argument("--model", choices=list(MODEL_CHOICES),
                   help="dps = GAS+TDS with fusion (the paper); tgat / tgat-uniform = TGAT with uniform "
                        "sampling; tgat-recent = most-recent sampling; tds / gas = single-sampler ablations "
                        "(same as model.name=...)")
    return p


@main_guard
def train_main(argv=None):
    args = train_parser().parse_args(argv)
    _model_overrides(args)
    cfg = parse_config(DPSConfig, args)
    if args.out is None and args.config is None and cfg.out == "runs/default":
        cfg = dataclasses.replace(cfg, out=f"runs/dps-{cfg.model.name}-{cfg.data.name}")
    from .train import train_seeds

    train_seeds(cfg, resume=args.resume, log=_log)


def _load_run(path: str):
    p = Path(path)
    ck_path = p / "model.pt" if p.is_dir() else p
    if not ck_path.is_file():
        raise CheckpointError(f"no trained model at {ck_path}; pass a dps-train run directory (with model.pt) "
                              f"or the model.pt file itself")
    from tenfold import checkpoint

    from .train import MODEL_KIND

    ck = checkpoint.load(ck_path, kind=MODEL_KIND)
    return ck, ck_path.parent


@main_guard
def eval_main(argv=None):
    p = base_parser("dps-eval", "Evaluate a trained DPS/TGAT run on its val or test split with fixed "
                    "negatives (random, historical or inductive); prints AUC, AP, accuracy and F1.",
                    schema=DPSConfig,
                    examples=["dps-eval --run runs/dps-demo --split test --out runs/dps-demo-eval",
                              "dps-eval --run runs/dps-demo --negatives historical --out runs/dps-demo-eval-hist"])
    p.add_argument("--run", required=True, help="dps-train run directory (holding model.pt) or a model.pt file")
    p.add_argument("--split", choices=["val", "test"], default="test", help="which split to score")
    p.add_argument("--negatives", choices=["random", "historical", "inductive"],
                   help="evaluation negative strategy (default: the run's data.negatives)")
    p.add_argument("--task", choices=["link", "node"], default="link",
                   help="link: score the link-prediction split; node: train the node-classification MLP "
                        "(node.* settings) on the frozen encoder with the events' labels, report test AUC")
    args = p.parse_args(argv)
    ck, run_dir = _load_run(args.run)
    base = config_mod.from_dict(DPSConfig, ck["config"])
    overrides = list(args.overrides or [])
    if args.negatives:
        overrides.append(f"data.negatives={args.negatives}")
    for flag, key in (("device", "device"), ("data_root", "data_root")):
        if getattr(args, flag, None) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    data = config_mod.apply_overrides(config_mod.to_dict(base), overrides)
    data["out"] = str(run_dir)  # the stage artifacts (α, GAS table) live with the run
    cfg = config_mod.from_dict(DPSConfig, data)
    from tenfold import checkpoint, runtime
    from tenfold.meters import write_json

    from .pipeline import build_samplers, evaluate, prepare
    from .train import build_model

    device = runtime.select_device(cfg.device)
    runtime.seed_everything(cfg.seed)
    prep = prepare(cfg, device)
    samplers, _ = build_samplers(cfg, prep, device, _log, ck.get("artifacts"))
    model = build_model(cfg, prep, len(samplers)).to(device)
    checkpoint.load_module_state(model, ck["model"], what="model")
    if len(ck["samplers"]) != len(samplers):
        raise CheckpointError("the checkpoint's samplers do not match model.name; evaluate with the run's config")
    for s, sd in zip(samplers, ck["samplers"]):
        s.load_state_dict(sd)
    if args.task == "node":
        from .node import node_events, train_node_classifier

        m = train_node_classifier(model, samplers, node_events(prep.stream, cfg, device), cfg.node, cfg.seed, _log)
        out = Path(args.out) if args.out else run_dir / "eval-node"
        config_mod.save(cfg, out / "config.yaml")
        write_json(out / "summary.json", {"task": "node", **m})
        return
    events = prep.val if args.split == "val" else prep.test
    seed = cfg.seed if args.split == "val" else cfg.seed + 1
    m = evaluate(model, samplers, events, cfg.eval.batch_size, seed, cfg.eval.ap_on_labels, device, cfg.precision)
    out = Path(args.out) if args.out else run_dir / f"eval-{args.split}-{cfg.data.negatives}"
    config_mod.save(cfg, out / "config.yaml")
    write_json(out / "summary.json", {"split": args.split, "negatives": cfg.data.negatives, **m})
    _log(" ".join(f"{k} {v:.4f}" for k, v in m.items() if k != "events_per_s") +
         f"  ({args.split}, {cfg.data.negatives} negatives)")


@main_guard
def fit_decay_main(argv=None):
    p = base_parser("dps-fit-decay", "Fit the per-node time-decay rates α_u of TDS by maximum likelihood on "
                    "the training graph's repeated interactions (scipy bounded minimiser) and save them.",
                    schema=DPSConfig)
    p.add_argument("--print-top", type=int, default=5, help="print the nodes with the most fitted terms")
    args = p.parse_args(argv)
    cfg = parse_config(DPSConfig, args)
    if args.out is None and cfg.out == "runs/default":
        cfg = dataclasses.replace(cfg, out=f"runs/dps-alpha-{cfg.data.name}")
    import numpy as np
    import torch
    from tenfold.meters import write_json

    from .pipeline import prepare, stage_alpha

    out = Path(cfg.out)
    config_mod.save(cfg, out / "config.yaml")
    prep = prepare(cfg, torch.device("cpu"))
    alpha = stage_alpha(cfg, prep, _log).numpy()
    deg = prep.train_csr.degree.numpy()
    fitted = alpha[1:][alpha[1:] != cfg.tds.alpha_fallback]
    q = np.quantile(fitted, [0.1, 0.5, 0.9]).tolist() if fitted.size else [None] * 3
    torch.save({"alpha": torch.from_numpy(alpha)}, out / "alpha.pt")
    write_json(out / "summary.json", {"nodes": int(len(alpha) - 1), "fitted": int(fitted.size),
                                      "alpha_q10": q[0], "alpha_median": q[1], "alpha_q90": q[2]})
    _log(f"α fitted for {fitted.size}/{len(alpha) - 1} nodes; quantiles 10/50/90%: "
         + ", ".join("n/a" if v is None else f"{v:.2f}" for v in q) + f"; saved {out / 'alpha.pt'}")
    for u in np.argsort(-deg)[: args.print_top]:
        _log(f"  node {u - 1} (file id): degree {deg[u]}, α = {alpha[u]:.2f}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train_main())
