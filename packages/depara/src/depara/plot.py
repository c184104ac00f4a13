"""PNG heat maps of similarity matrices and layer-selection curves (matplotlib, headless)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["heatmap", "layer_plot"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], path: str | Path, title: str) -> Path:
    plt = _plt()
    m = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(cols), 1.0 + 0.5 * len(rows)))
    im = ax.imshow(m, cmap="viridis")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    if m.size <= 400:
        finite = m[np.isfinite(m)]
        mid = float(finite.mean()) if finite.size else 0.0
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if m[i, j] > mid else "white")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def layer_plot(layers: Sequence[str], series: dict[str, Sequence[float]], path: str | Path, title: str) -> Path:
    """One line per score (each rescaled to [0, 1] so they share an axis) over the candidate layers."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(layers)), 3.2))
    for name, vals in series.items():
        v = np.asarray(vals, dtype=float)
        span = np.ptp(v) if np.ptp(v) > 0 else 1.0
        ax.plot(range(len(v)), (v - v.min()) / span, marker="o", label=name)
    ax.set_xticks(range(len(layers)), layers, rotation=60, ha="right")
    ax.set_ylabel("min-max scaled")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
