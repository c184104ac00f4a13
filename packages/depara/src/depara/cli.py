"""Console scripts: depara-zoo (train a zoo + measure transfer), depara-score (graphs + similarity
matrices), depara-select (rank sources or layers for a target, evaluated against measured transfer)."""
from __future__ import annotations

import time
from pathlib import Path

from tenfold import config as config_mod
from tenfold.cli import base_parser, main_guard, parse_config

from .config import DeparaConfig

# torch, numpy and the method load after the arguments are read (in each command), so --help returns at once

__all__ = ["zoo_main", "score_main", "select_main"]


def _setup(prog: str, description: str, argv, extra=None):
    p = base_parser(prog, description, train=prog == "depara-zoo",
                    schema=DeparaConfig)
    if extra:
        extra(p)
    args = p.parse_args(argv)
    cfg = parse_config(DeparaConfig, args)
    from tenfold import runtime

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config_mod.save(cfg, out / "config.yaml")
    runtime.seed_everything(cfg.seed)
    runtime.set_deterministic(cfg.deterministic)
    device = runtime.select_device(cfg.device)
    return args, cfg, out, device


@main_guard
def zoo_main(argv=None) -> int:
    def extra(p):
        p.add_argument("--no-transfer", action="store_true", help="train the zoo only; skip the linear-probe "
                       "transfer measurement (transfer.json)")

    args, cfg, out, device = _setup(
        "depara-zoo", "Train one small model per task (zoo.tasks) into <zoo_dir>/models/ and measure transfer: "
        "linear-probe accuracy of every frozen source on every target (<zoo_dir>/transfer.json).", argv, extra)
    t0 = time.time()
    import numpy as np
    from tenfold.bench import device_name
    from tenfold.meters import write_json

    from .pipeline import _Pools, measure_transfer, save_transfer, train_zoo, zoo_dir, zoo_models
    from .plot import heatmap

    pools = _Pools(cfg)
    info = train_zoo(cfg, device, resume=bool(args.resume), pools=pools)
    summary = {"models": info, "device": device_name(device), "zoo_dir": str(zoo_dir(cfg))}
    if not args.no_transfer:
        tr = measure_transfer(cfg, zoo_models(cfg, device), device, pools)
        save_transfer(cfg, tr)
        summary["transfer"] = tr
        acc = np.array([[np.nan if tr["acc"][t][s] is None else tr["acc"][t][s] for s in tr["sources"]]
                        for t in tr["targets"]], dtype=float)
        heatmap(acc, tr["targets"], tr["sources"], zoo_dir(cfg) / "transfer.png",
                "measured transfer: linear-probe acc (%) of source (col) on target (row)")
    summary["seconds"] = round(time.time() - t0, 2)
    write_json(out / "summary.json", summary)
    print(f"zoo: {len(info)} models in {zoo_dir(cfg) / 'models'} ({summary['seconds']} s)")
    return 0


@main_guard
def score_main(argv=None) -> int:
    args, cfg, out, device = _setup(
        "depara-score", "Build one DEPARA (attribution-map nodes, feature-similarity edges) per model on a shared "
        "probe set and write the pairwise node/edge/DEPARA/RSA similarity matrices (scores.json, PNG heat maps). "
        "Models: the zoo's (zoo_dir) or the files in score.models.", argv)
    t0 = time.time()
    from tenfold.bench import device_name
    from tenfold.meters import write_json

    from .pipeline import model_graphs, probe_tensor, zoo_models
    from .plot import heatmap
    from .selection import score_matrices
    models = zoo_models(cfg, device)
    probes, raw = probe_tensor(cfg)
    graphs = model_graphs(cfg, models, probes, device, cache_dir=out / "graphs", raw=raw)
    t_graph = time.time() - t0
    names = list(graphs)
    mats = score_matrices(graphs, ties=cfg.score.spearman_ties)
    result = {"models": names, "n_probe": int(probes.shape[0]), "graph": cfg.graph.__dict__,
              "node": mats["node"].round(5).tolist(), "edge": mats["edge"].round(5).tolist(),
              "rsa": mats["rsa"].round(5).tolist()}
    for lam in cfg.score.lambdas:
        result[f"depara_lam{lam:g}"] = (mats["node"] + lam * mats["edge"]).round(5).tolist()
    write_json(out / "scores.json", result)
    dep = mats["node"] + cfg.score.lam * mats["edge"]
    heatmap(dep, names, names, out / "depara.png", f"DEPARA S = S_V + {cfg.score.lam:g} S_E "
            f"({probes.shape[0]} probes, {cfg.graph.attribution}, {cfg.graph.channel_reduce})")
    for k in ("node", "edge", "rsa"):
        heatmap(mats[k], names, names, out / f"{k}.png", {"node": "node similarity S_V", "edge": "edge similarity "
                "S_E (Spearman)", "rsa": "RSA (Spearman of RDMs)"}[k])
    summary = {"models": names, "seconds": round(time.time() - t0, 2), "graph_seconds": round(t_graph, 2),
               "device": device_name(device), "outputs": ["scores.json", "depara.png", "node.png", "edge.png",
                                                          "rsa.png", "graphs/"]}
    write_json(out / "summary.json", summary)
    print(f"scored {len(names)} models on {probes.shape[0]} probes -> {out / 'scores.json'}, {out / 'depara.png'}")
    return 0


def _print_table(metrics: dict) -> None:
    keys = ["spearman", "kendall", "top1_hit", "top1_regret"]
    print(f"{'scorer':<16}" + "".join(f"{k:>13}" for k in keys))
    for name, m in metrics.items():
        print(f"{name:<16}" + "".join(f"{m[k]:>13.3f}" for k in keys))


@main_guard
def select_main(argv=None) -> int:
    args, cfg, out, device = _setup(
        "depara-select", "Rank sources for each target (select.mode=model; reference graph = the target's own "
        "model) or the layers of one source (select.mode=layer) by S = S_V + lambda S_E, and evaluate the "
        "ranking against measured transfer next to node-only, edge-only, RSA and random scores.", argv)
    t0 = time.time()
    import numpy as np
    from tenfold.meters import write_json

    from .pipeline import default_targets, load_transfer, model_graphs, probe_tensor, zoo_dir, zoo_models
    from .plot import heatmap, layer_plot
    from .ranking import layer_selection, model_selection
    probes, raw = probe_tensor(cfg)
    if cfg.select.mode == "layer":
        res = layer_selection(cfg, probes, device, zoo_dir(cfg))
        write_json(out / "layers.json", res)
        series = {f"depara lam={lam:g}": res[f"depara_lam{lam:g}"] for lam in cfg.score.lambdas}
        if "probe_acc" in res:
            series["probe acc (truth)"] = res["probe_acc"]
        layer_plot(res["layers"], series, out / "layers.png", f"layer selection: {res['source']} -> {res['reference']}")
        for lam in cfg.score.lambdas:
            extra = f", spearman {res[f'spearman_lam{lam:g}']:.3f}" if "probe_acc" in res else ""
            print(f"lambda={lam:g}: selected layer {res[f'argmax_lam{lam:g}']}{extra}")
        if "best_layer" in res:
            print(f"best layer by linear probe: {res['best_layer']}")
        write_json(out / "summary.json", {"mode": "layer", "seconds": round(time.time() - t0, 2), **res})
        return 0
    models = zoo_models(cfg, device)
    cache = zoo_dir(cfg) / "graphs" if (zoo_dir(cfg) / "graphs").is_dir() else out / "graphs"
    graphs = model_graphs(cfg, models, probes, device, cache_dir=cache, raw=raw)
    transfer = load_transfer(cfg)
    if cfg.select.target:
        targets = [cfg.select.target]
    else:
        targets = list(graphs) if cfg.score.models else default_targets(cfg)
    res = model_selection(cfg, graphs, transfer, targets)
    write_json(out / "selection.json", res)
    mat = np.array([[np.nan if s == t else res["parts"][t][s]["node"] + cfg.score.lam * res["parts"][t][s]["edge"]
                     for s in res["sources"]] for t in targets])
    heatmap(mat, targets, res["sources"], out / "selection.png", f"DEPARA S(target, source), lambda={cfg.score.lam:g}")
    for t in targets:
        print(f"{t}: {' > '.join(res['rankings'][t])}")
    if "metrics" in res:
        _print_table(res["metrics"])
    else:
        print(f"(no {zoo_dir(cfg) / 'transfer.json'}: rankings only; run depara-zoo to measure transfer)")
    write_json(out / "summary.json", {"mode": "model", "seconds": round(time.time() - t0, 2),
                                      "metrics": res.get("metrics"), "rankings": res["rankings"]})
    return 0
