"""Pairwise scoring of cached graphs and the selection rule: rank sources (or layers) by S(G_t, G_s)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .graph import Graph
from .method import depara_score, edge_similarity, node_similarity

__all__ = ["pair_scores", "score_matrices", "rank_candidates", "SCORERS"]

SCORERS = ("depara", "node", "edge", "rsa")


def pair_scores(g1: Graph, g2: Graph, ties: str = "average") -> dict[str, float]:
    """Node similarity S_V, edge similarity S_E and the RSA baseline (Spearman of the two RDMs)."""
    return {"node": float(node_similarity(g1.V, g2.V)), "edge": float(edge_similarity(g1.E, g2.E, ties)),
            "rsa": float(edge_similarity(g1.R, g2.R, ties))}


def score_matrices(graphs: Mapping[str, Graph], rows: Sequence[str] | None = None, ties: str = "average"
                   ) -> dict[str, np.ndarray]:
    """{node, edge, rsa}: [len(rows), len(graphs)] matrices; symmetric pairs computed once."""
    names = list(graphs)
    rows = list(rows) if rows is not None else names
    out = {k: np.full((len(rows), len(names)), np.nan) for k in ("node", "edge", "rsa")}
    cache: dict[tuple[str, str], dict] = {}
    for i, a in enumerate(rows):
        for j, b in enumerate(names):
            key = (a, b) if a <= b else (b, a)
            if key not in cache:
                cache[key] = pair_scores(graphs[a], graphs[b], ties)
            for k, v in cache[key].items():
                out[k][i, j] = v
    return out


def combined(mats: Mapping[str, np.ndarray], scorer: str, lam: float = 1.0) -> np.ndarray:
    if scorer == "depara":
        return depara_score_matrix(mats["node"], mats["edge"], lam)
    return np.asarray(mats[scorer])


def depara_score_matrix(node: np.ndarray, edge: np.ndarray, lam: float) -> np.ndarray:
    return np.vectorize(lambda v, e: depara_score(v, e, lam))(node, edge) if np.size(node) else np.asarray(node)


def rank_candidates(target: Graph, candidates: Mapping[str, Graph], lam: float, ties: str = "average"
                    ) -> list[dict]:
    """Candidates sorted by S(G_t, G_c) = S_V + lam S_E, best first, with all parts."""
    rows = []
    for name, g in candidates.items():
        p = pair_scores(target, g, ties)
        rows.append({"name": name, "score": depara_score(p["node"], p["edge"], lam), **p})
    return sorted(rows, key=lambda r: -r["score"])
