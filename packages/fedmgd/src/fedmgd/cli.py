"""Console scripts: fedmgd-train (FedMGD and the baselines) and fedmgd-partition (label histograms)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from tenfold.cli import base_parser, main_guard, parse_config
from tenfold.errors import ConfigError

from .config import METHODS, FedMGDConfig

__all__ = ["train_main", "partition_main"]


@main_guard
def train_main(argv: list[str] | None = None) -> int:
    p = base_parser("fedmgd-train", "Train FedMGD (global conditional GAN + federated enhancement) or a baseline "
                    "(FedAvg, FedProx, SCAFFOLD, FedLC, Local) on a label-skewed partition. Clients are simulated "
                    "in one process; under torchrun they are spread over the ranks (client k on rank k % world); "
                    "engine=flower runs them as Flower ClientApps (one SuperNode each) on the loopback address.",
                    train=True,
                    schema=FedMGDConfig)
    p.add_argument("--method", choices=METHODS, help="federated method (sets fl.method)")
    p.add_argument("--seeds", type=int, nargs="+",
                   help="independent runs (fresh models, own Stage 1) in <out>/seed<s>; summary.json gets mean +- std")
    args = p.parse_intermixed_args(argv)  # KEY=VALUE overrides may come before and after flags
    if args.method:
        args.overrides = list(args.overrides or []) + [f"fl.method={args.method}"]
    cfg = parse_config(FedMGDConfig, args)
    if cfg.engine == "flower":  # a Flower ServerApp + one ClientApp per client (fedmgd.flower, the `flower` extra)
        if args.seeds or args.resume:
            raise ConfigError("engine=flower runs one seed from the start (no --seeds / --resume)")
        from .flower import require_flwr

        require_flwr()
        from .flower.deploy import run_flower

        run_flower(cfg)
        return 0
    if cfg.engine == "torchrun" and "WORLD_SIZE" not in os.environ:
        raise ConfigError("engine=torchrun: launch with torchrun --nproc-per-node N $(which fedmgd-train) ... "
                          "(or use engine=local)")
    from .train import run, run_seeds

    if args.seeds:
        run_seeds(cfg, args.seeds, resume=args.resume)
    else:
        run(cfg, resume=args.resume)
    return 0


@main_guard
def partition_main(argv: list[str] | None = None) -> int:
    p = base_parser("fedmgd-partition", "Draw the configured partition of the pool, print the per-client label "
                    "histogram and save it as a stacked bar plot (<out>/partition.png) plus partition.json.",
                    schema=FedMGDConfig)
    p.add_argument("--png", help="where to save the plot (default <out>/partition.png)")
    args = p.parse_intermixed_args(argv)  # KEY=VALUE overrides may come before and after flags
    cfg = parse_config(FedMGDConfig, args)
    import numpy as np
    from tenfold.meters import write_json

    from .data import build_pool_lazy
    from .partition import format_histogram, label_histogram, make_partition

    pool = build_pool_lazy(cfg)  # labels only: no image is read
    py, nc = pool.labels, pool.num_classes
    parts = make_partition(py, cfg.partition)
    hist = label_histogram(py, parts, nc)
    pc = cfg.partition
    print(f"{cfg.data.dataset}: {len(py)} pool samples, {pc.num_clients} clients, {pc.kind}"
          + (f" alpha={pc.alpha}" if pc.kind == "dirichlet" else "") + f", seed {pc.seed}")
    print(format_histogram(hist))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "partition.json", {"histogram": hist.tolist(), "sizes": [len(x) for x in parts],
                                        "indices": [x.tolist() for x in parts]})
    png = Path(args.png) if args.png else out / "partition.png"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(parts) + 2), 3.5))
    bottom = np.zeros(len(parts))
    cmap = plt.get_cmap("tab20" if nc > 10 else "tab10")
    for c in range(nc):
        ax.bar(range(len(parts)), hist[:, c], bottom=bottom, color=cmap(c % cmap.N), label=str(c))
        bottom += hist[:, c]
    ax.set_xlabel("client")
    ax.set_ylabel("samples")
    ax.set_title(f"{cfg.data.dataset} {pc.kind}" + (f" alpha={pc.alpha}" if pc.kind == "dirichlet" else ""))
    if nc <= 26:
        ax.legend(fontsize=6, ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left", title="class")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    print(f"saved {png}")
    return 0


if __name__ == "__main__":  # python -m fedmgd.cli ... (used under torchrun)
    sys.exit(train_main())
