"""Two overlapping views plus their multi-grained correspondences (spec 2.1, 2.2).

`TwoViewBoxTransform` takes an image (uint8 CHW tensor or PIL) and returns a dict:
  view1, view2   uint8 [3, S, S]  crops resized (bilinear) and flipped, photometric not yet applied
  photo1, photo2 float [13]       photometric parameters, applied on the device by `render`
  geom           float [10]       box1 (x0, y0, w, h), box2, flip1, flip2 in original pixels
  corr           per level (idx1 [K], idx2 [K], w [K])
The geometry runs in the loader; the photometric part runs batched on the training device, which
keeps small-worker and CPU runs from being loader-bound (pitfall 14).
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from .augment import apply_photometric, sample_photometric
from .config import AugmentConfig, ModelConfig, ViewConfig
from .correspondence import multigrain_correspondence, sample_view_boxes

__all__ = ["TwoViewBoxTransform", "MGCViews", "render", "to_uint8_chw"]


def to_uint8_chw(img: Any) -> torch.Tensor:
    if isinstance(img, torch.Tensor):
        if img.dtype != torch.uint8:
            img = (img.float().clamp(0, 1) * 255).round().to(torch.uint8)
        if img.ndim == 2:
            img = img[None]
        return img.expand(3, -1, -1) if img.shape[0] == 1 else img
    if isinstance(img, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(img))
        return to_uint8_chw(t.permute(2, 0, 1) if t.ndim == 3 else t)
    return TF.pil_to_tensor(img.convert("RGB"))  # PIL


class TwoViewBoxTransform:
    def __init__(self, model: ModelConfig, views: ViewConfig | None = None, augment: AugmentConfig | None = None):
        self.size = model.img_size
        self.grid = model.grid
        self.levels, self.pairs = list(model.levels), list(model.pairs)
        self.views = views or ViewConfig()
        self.augment = augment or AugmentConfig()
        rules = self.views.stride_rules
        self.rules = list(rules) if rules is not None else [None] * len(self.levels)

    def geometry(self, width: int, height: int, rng: random.Random | None = None):
        rng = rng or random
        v = self.views
        b1, b2 = sample_view_boxes(width, height, v.scale, v.ratio, v.min_iou, v.max_tries, rng)
        f1, f2 = rng.random() < v.flip_p, rng.random() < v.flip_p
        return b1, b2, f1, f2

    def correspondences(self, b1, b2, f1: bool, f2: bool) -> list[tuple[torch.Tensor, ...]]:
        out = []
        for c, k, rule in zip(self.levels, self.pairs, self.rules):
            i1, i2, w = multigrain_correspondence(b1, b2, f1, f2, self.grid // c, k, rule)
            out.append((torch.from_numpy(i1), torch.from_numpy(i2), torch.from_numpy(w)))
        return out

    def crop(self, img: torch.Tensor, box, flip: bool) -> torch.Tensor:
        x0, y0, w, h = box
        v = TF.resized_crop(img, y0, x0, h, w, [self.size, self.size], antialias=True)
        return TF.horizontal_flip(v) if flip else v

    def __call__(self, img: Any, rng: random.Random | None = None) -> dict:
        img = to_uint8_chw(img)
        height, width = img.shape[-2:]
        b1, b2, f1, f2 = self.geometry(width, height, rng)
        return {"view1": self.crop(img, b1, f1), "view2": self.crop(img, b2, f2),
                "photo1": sample_photometric(self.augment, 0, rng),
                "photo2": sample_photometric(self.augment, 1, rng),
                "geom": torch.tensor([*b1, *b2, float(f1), float(f2)], dtype=torch.float32),
                "corr": self.correspondences(b1, b2, f1, f2)}


class MGCViews(Dataset):
    """Wraps a data set of (image, label) items (ArrayImageDataset without transform gives float CHW,
    ImageFolder gives PIL) into (two-view dict, label)."""

    def __init__(self, base: Dataset, transform: TwoViewBoxTransform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        raw = getattr(self.base, "raw", None)
        if raw is not None:  # uint8 straight from the array, no float round trip
            img, label = raw(i), int(self.base.labels[i])
        else:
            img, label = self.base[i]
        return self.transform(img), label


def render(batch: dict, cfg: AugmentConfig, device: torch.device, photometric: bool = True):
    """Batched photometric augmentation + normalisation of both views on `device`."""
    from .augment import normalize

    v1 = batch["view1"].to(device, non_blocking=True)
    v2 = batch["view2"].to(device, non_blocking=True)
    if not photometric:
        return normalize(v1.float() / 255, cfg), normalize(v2.float() / 255, cfg)
    return apply_photometric(v1, batch["photo1"], cfg), apply_photometric(v2, batch["photo2"], cfg)
