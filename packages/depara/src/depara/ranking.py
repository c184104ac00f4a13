"""Model selection and layer selection with DEPARA, judged against measured transfer, next to the
node-only, edge-only, RSA and random-score baselines computed by the same code."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tenfold.errors import ConfigError

from .config import DeparaConfig
from .data import TASKS, make_pool, task_view
from .evaluate import random_baseline, rank_metrics
from .graph import Graph, GraphOptions, LayerTaps, build_graph, conv_layer_names, layer_graphs
from .method import depara_score, no_inplace
from .selection import pair_scores
from .sources import load_source, parse_model_spec, representation
from .zoo import load_zoo_model, preprocess, probe_accuracy

__all__ = ["model_selection", "layer_selection", "scorer_names", "candidate_layers"]


def scorer_names(lambdas) -> list[str]:
    return [f"depara_lam{lam:g}" for lam in lambdas] + ["node", "edge", "rsa"]


def _score(parts: dict, scorer: str) -> float:
    if scorer.startswith("depara_lam"):
        return depara_score(parts["node"], parts["edge"], float(scorer[len("depara_lam"):]))
    return parts[scorer]


def model_selection(cfg: DeparaConfig, graphs: dict[str, Graph], transfer: dict | None,
                    targets: list[str]) -> dict:
    """For each target t (reference graph = t's own model), rank every other source by S(G_t, G_s)."""
    missing = [t for t in targets if t not in graphs]
    if missing:
        raise ConfigError(f"target {missing[0]!r} has no model graph; models: {', '.join(graphs)}")
    sources = [s for s in graphs if transfer is None or s in transfer["sources"]]
    names = scorer_names(cfg.score.lambdas)
    parts = {t: {s: pair_scores(graphs[t], graphs[s], cfg.score.spearman_ties) for s in sources if s != t}
             for t in targets}
    scores = {n: np.array([[_score(parts[t][s], n) if s != t else np.nan for s in sources] for t in targets])
              for n in names}
    rankings = {t: sorted(parts[t], key=lambda s: -_score(parts[t][s], f"depara_lam{cfg.score.lam:g}"))
                for t in targets}
    junk = [s for s in sources if s in TASKS and TASKS[s].rule.startswith("random")]
    out = {"targets": targets, "sources": sources, "lam": cfg.score.lam, "rankings": rankings,
           # spec 7.2: where the random-label control lands in each target's ranking (1 = first)
           "random_label_rank": {j: {t: rankings[t].index(j) + 1 for t in targets if j in rankings[t]} for j in junk},
           "parts": {t: {s: {k: round(v, 5) for k, v in p.items()} for s, p in parts[t].items()} for t in targets}}
    if transfer is not None:
        truth = np.array([[np.nan if (s == t or transfer["acc"][t].get(s) is None) else transfer["acc"][t][s]
                           for s in sources] for t in targets], dtype=float)
        metrics = {n: rank_metrics(scores[n], truth, cfg.score.k) for n in names}
        metrics["random"] = random_baseline(truth, cfg.score.random_draws, cfg.seed, cfg.score.k)
        out["metrics"] = {n: m["mean"] for n, m in metrics.items()}
        out["per_target_spearman"] = {n: [round(r["spearman"], 4) for r in m["per_target"]]
                                      for n, m in metrics.items() if "per_target" in m}
        mean_score = {s: float(np.nanmean(scores[f"depara_lam{cfg.score.lam:g}"][:, j]))
                      for j, s in enumerate(sources)}
        out["mean_score_per_source"] = mean_score
    return out


def _resolve_model(ref: str, cfg: DeparaConfig, device, zoo: Path):
    """A zoo task name (its zoo model), or a model string of depara.sources (file, torchvision:, module:)."""
    if not (ref.endswith(".pt") or "/" in ref or ":" in ref or "@" in ref or "#" in ref):
        return load_zoo_model(zoo / "models" / f"{ref}.pt", device)
    return load_source(parse_model_spec(ref), device)


def candidate_layers(model: torch.nn.Module, fc_layers: int = 0) -> list[str]:
    """Every Conv2d, then the first `fc_layers` Linear layers, in definition order (the paper's VGG19-BN
    candidates: 16 convs + the first 2 FCs)."""
    convs = conv_layer_names(model, (torch.nn.Conv2d,))
    return convs + conv_layer_names(model, (torch.nn.Linear,))[:fc_layers]


def layer_selection(cfg: DeparaConfig, probes: torch.Tensor, device, zoo: Path) -> dict:
    """Rank the layers l of a source (the model truncated at l) by S(G_ref, G_l); ground truth: a linear probe
    of each layer's pooled features on the target task (a cheap proxy for 'transfer up to layer l')."""
    sel = cfg.select
    source, smeta = _resolve_model(sel.layer_source, cfg, device, zoo)
    ref_name = sel.layer_reference or sel.layer_target
    if not ref_name:
        raise ConfigError("layer selection needs a reference: set select.layer_reference=MODEL.pt "
                          "(or select.layer_target=TASK to use that task's zoo model)")
    reference, rmeta = _resolve_model(ref_name, cfg, device, zoo)
    names = sel.layers or candidate_layers(source, sel.fc_layers)
    opts = GraphOptions(**{**cfg.graph.__dict__, "center_features": sel.center_features})
    if rmeta.get("tap"):
        fn, close = representation(reference, rmeta["tap"])
    elif sel.reference_output == "logits":
        fn, close = reference, (lambda: None)
    else:
        fn, close = representation(reference)
    try:
        g_ref = build_graph(fn, probes, opts, model=reference, device=device, meta={"name": ref_name})
    finally:
        close()
    graphs = layer_graphs(source, names, probes, opts, device=device)
    parts = {n: pair_scores(g_ref, graphs[n], cfg.score.spearman_ties) for n in names}
    result = {"source": sel.layer_source, "reference": ref_name, "reference_output": sel.reference_output,
              "reference_note": "the target task's own zoo model, trained on the zoo-training split (not the "
                                "linear-probe data)" if not sel.layer_reference else "user-given reference",
              "layers": names, "parts": {n: {k: round(v, 5) for k, v in p.items()} for n, p in parts.items()}}
    for lam in cfg.score.lambdas:
        s = [depara_score(parts[n]["node"], parts[n]["edge"], lam) for n in names]
        result[f"depara_lam{lam:g}"] = s
        result[f"argmax_lam{lam:g}"] = names[int(np.argmax(s))]
    if sel.layer_target in TASKS:
        result["probe_acc"] = _layer_probe_accuracy(cfg, source, names, sel.layer_target, device)
        best = int(np.argmax(result["probe_acc"]))
        result["best_layer"] = names[best]
        from .evaluate import spearman_rho

        for lam in cfg.score.lambdas:
            s = result[f"depara_lam{lam:g}"]
            result[f"spearman_lam{lam:g}"] = spearman_rho(s, result["probe_acc"])
            result[f"regret_lam{lam:g}"] = result["probe_acc"][best] - result["probe_acc"][int(np.argmax(s))]
    return result


@torch.no_grad()
def _layer_probe_accuracy(cfg: DeparaConfig, model, names: list[str], target: str, device) -> list[float]:
    kind = TASKS[target].pool
    views = {split: task_view(target, make_pool(kind, split, n, cfg.seed, cfg.data_root, cfg.data.image_size),
                              cfg.seed)
             for split, n in (("transfer", cfg.data.n_transfer), ("test", cfg.data.n_test))}
    taps = LayerTaps(model, names)
    feats = {split: {n: [] for n in names} for split in views}
    try:
        with no_inplace(model):
            for split, (x, _, _) in views.items():
                xt = preprocess(x)
                for i in range(0, len(xt), 500):
                    model(xt[i:i + 500].to(device))
                    for n in names:
                        o = taps.out[n].float()
                        o = F.relu(o).mean((2, 3)) if o.dim() == 4 else o
                        feats[split][n].append(o.cpu())
    finally:
        taps.remove()
    return [probe_accuracy(torch.cat(feats["transfer"][n]), views["transfer"][1], torch.cat(feats["test"][n]),
                           views["test"][1], cfg.transfer.iters, cfg.transfer.l2) for n in names]
