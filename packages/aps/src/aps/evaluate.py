"""Frozen-feature monitors: kNN (k=20, cosine, T=0.07) and a linear probe on full-token CLS features."""
from __future__ import annotations

import torch
from tenfold import eval as teval
from tenfold import runtime
from torch.utils.data import DataLoader

__all__ = ["cls_features", "knn_monitor", "linear_probe_monitor"]


@torch.no_grad()
def cls_features(backbone, dataset, device, batch_size: int = 256, amp: bool = True):
    """CLS features (after the final LayerNorm) of all tokens; the backbone's mode is restored after."""
    was_training = backbone.training
    backbone.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)

    def fn(x):
        with runtime.autocast(device, amp):
            return backbone.features(x)

    try:
        return teval.extract_features(fn, loader, device)
    finally:
        backbone.train(was_training)


def knn_monitor(backbone, bank, test, device, k: int = 20, t: float = 0.07, batch_size: int = 256,
                num_classes: int | None = None, amp: bool = True) -> dict:
    fb, yb = cls_features(backbone, bank, device, batch_size, amp)
    ft, yt = cls_features(backbone, test, device, batch_size, amp)
    acc = teval.knn_accuracy(fb, yb, ft, yt, k=k, t=t, num_classes=num_classes)
    return {"knn_top1": acc["top1"], "knn_top5": acc["top5"], "_features": (fb, yb, ft, yt)}


def linear_probe_monitor(features, seed: int = 0, epochs: int = 100, num_classes: int | None = None) -> dict:
    fb, yb, ft, yt = features
    acc = teval.linear_probe(fb, yb, ft, yt, epochs=epochs, seed=seed, num_classes=num_classes)
    return {"linear_top1": acc["top1"]}
