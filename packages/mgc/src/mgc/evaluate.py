"""Frozen-backbone evaluation: kNN, linear probe (mean-pooled final patch tokens) and dense
correspondence retrieval between two views (spec 7b)."""
from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F
from tenfold import eval as teval
from tenfold.nets import VisionTransformer
from torch.utils.data import default_collate

from .augment import normalize
from .config import AugmentConfig, ModelConfig, ViewConfig
from .correspondence import multigrain_correspondence, overlap_weights
from .model import patch_tokens
from .views import TwoViewBoxTransform, render

__all__ = ["mean_token_features", "knn_and_probe", "retrieval_pairs", "correspondence_retrieval", "feature_spread"]


@torch.no_grad()
def mean_token_features(vit: VisionTransformer, images_u8: np.ndarray, aug: AugmentConfig, device,
                        batch_size: int = 256) -> torch.Tensor:
    """Mean of the final patch tokens (CLS excluded) of uint8 NHWC images, resized to the model's size."""
    was = vit.training
    vit.eval()
    out = []
    for i in range(0, len(images_u8), batch_size):
        x = torch.from_numpy(images_u8[i:i + batch_size]).permute(0, 3, 1, 2).to(device).float().div_(255)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != vit.img_size:
            x = F.interpolate(x, size=(vit.img_size, vit.img_size), mode="bilinear", antialias=True,
                              align_corners=False)
        out.append(patch_tokens(vit, normalize(x, aug)).mean(1).float().cpu())
    vit.train(was)
    return torch.cat(out)


def knn_and_probe(vit, bank, test, aug: AugmentConfig, device, k: int = 20, t: float = 0.07,
                  probe_epochs: int = 50, seed: int = 0) -> dict:
    fb = mean_token_features(vit, bank.images, aug, device)
    ft = mean_token_features(vit, test.images, aug, device)
    yb, yt = torch.from_numpy(bank.labels), torch.from_numpy(test.labels)
    out = {"knn_top1": teval.knn_accuracy(fb, yb, ft, yt, k=k, t=t)["top1"]}
    if probe_epochs > 0:
        out["linear_top1"] = teval.linear_probe(fb, yb, ft, yt, epochs=probe_epochs, seed=seed)["top1"]
    out.update(feature_spread(ft))
    return out


def feature_spread(f: torch.Tensor) -> dict:
    """Collapse check: mean per-dimension std across images relative to the mean feature norm."""
    return {"feat_std_over_norm": float(f.std(0).mean() / f.norm(dim=1).mean().clamp_min(1e-12))}


def retrieval_pairs(images_u8: np.ndarray, model: ModelConfig, views: ViewConfig, aug: AugmentConfig,
                    n: int, seed: int = 0) -> dict:
    """`n` fixed view pairs (image i % len, geometry seeded by (seed, i)), collated."""
    tr = TwoViewBoxTransform(model, views, aug)
    items = []
    for i in range(n):
        img = torch.from_numpy(images_u8[i % len(images_u8)]).permute(2, 0, 1)
        items.append(tr(img, random.Random(seed * 1_000_003 + i)))
    return default_collate(items)


@torch.no_grad()
def correspondence_retrieval(vit: VisionTransformer, pairs: dict, aug: AugmentConfig, device, k: int = 10,
                             rule=None, photometric: bool = True, batch_size: int = 256) -> float:
    """% of the top-k token pairs whose view-1 token's nearest view-2 token (cosine, same image)
    overlaps the view-1 token's footprint (w > 0)."""
    was = vit.training
    vit.eval()
    g = vit.grid[0]
    geom = pairs["geom"].double().numpy()
    hits = total = 0
    n = len(geom)
    for s in range(0, n, batch_size):
        sub = {key: pairs[key][s:s + batch_size] for key in ("view1", "view2", "photo1", "photo2")}
        x1, x2 = render(sub, aug, device, photometric)
        t1 = F.normalize(patch_tokens(vit, x1).float(), dim=-1).cpu()
        t2 = F.normalize(patch_tokens(vit, x2).float(), dim=-1).cpu()
        for b in range(t1.shape[0]):
            b1, b2 = geom[s + b, 0:4], geom[s + b, 4:8]
            f1, f2 = bool(geom[s + b, 8]), bool(geom[s + b, 9])
            i1, _, w = multigrain_correspondence(b1, b2, f1, f2, g, k, rule)
            i1 = i1[w > 0]
            if len(i1) == 0:
                continue
            nn_idx = (t1[b, torch.from_numpy(i1)] @ t2[b].T).argmax(1).numpy()
            wfull = overlap_weights(b1, b2, g, f1, f2)
            hits += int((wfull[i1, nn_idx] > 0).sum())
            total += len(i1)
    vit.train(was)
    return 100.0 * hits / max(total, 1)
