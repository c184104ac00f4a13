"""Console scripts: osgan-train, osgan-sample."""
from __future__ import annotations

import argparse
import json

from tenfold.cli import base_parser, main_guard, parse_args, parse_config
from tenfold.errors import CheckpointError

from .config import OSGANConfig


@main_guard
def train(argv: list[str] | None = None) -> None:
    p = base_parser("osgan-train", "Train a GAN in one stage (one forward/backward updates G and D: gradient "
                    "reversal for symmetric losses, per-sample gradient scaling for asymmetric ones) or in the "
                    "usual two stages; --task kd runs data-free adversarial distillation (DFAD) the same way.",
                    train=True,
                    schema=OSGANConfig)
    p.add_argument("--mode", choices=["one", "two"], help="one-stage (default) or the two-stage baseline")
    p.add_argument("--loss", help="minimax | wgan | nonsaturating | lsgan | hinge")
    p.add_argument("--task", choices=["gan", "kd"], help="gan (default) or kd (generator vs student, fixed teacher)")
    args = parse_args(p, argv)
    for flag in ("mode", "loss", "task"):
        if getattr(args, flag):
            args.overrides.append(f"{flag}={getattr(args, flag)}")
    cfg = parse_config(OSGANConfig, args)
    if cfg.task == "kd":
        from .kd import run_kd

        summary = run_kd(cfg, resume=args.resume)
    else:
        from .train import run_gan

        summary = run_gan(cfg, resume=args.resume)
        summary.pop("G"), summary.pop("D")
    print(json.dumps(summary))


@main_guard
def sample(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="osgan-sample", description="Write a grid of generated images (PNG) from a "
                                "generator trained by osgan-train.")
    p.add_argument("run", help="run directory (or its generator.pt)")
    p.add_argument("--out", default=None, help="PNG path (default: <run>/samples.png)")
    p.add_argument("-n", type=int, default=64, help="number of images")
    p.add_argument("--nrow", type=int, default=8, help="images per row")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    args = p.parse_args(argv)
    from pathlib import Path

    import torch
    from tenfold import config as config_mod
    from torchvision.utils import save_image

    from .train import build_gan

    path = Path(args.run)
    path = path / "generator.pt" if path.is_dir() else path
    if not path.is_file():
        raise CheckpointError(f"no generator at {path}: train one with osgan-train")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        cfg = config_mod.from_dict(OSGANConfig, ck["config"])
        G, _ = build_gan(cfg, ck["channels"])
        G.load_state_dict(ck["G"])
    except (KeyError, RuntimeError, EOFError) as e:
        raise CheckpointError(f"{path} is not a generator written by osgan-train ({str(e).splitlines()[0]})") from None
    g = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        x = G(torch.randn(args.n, cfg.model.zdim, generator=g))
    if x.ndim != 4:
        raise CheckpointError("this generator produces points, not images (data.name=ring)")
    out = Path(args.out) if args.out else path.parent / "samples.png"
    save_image((x + 1) / 2, out, nrow=args.nrow)
    print(out)
