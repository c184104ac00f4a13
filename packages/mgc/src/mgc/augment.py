"""Asymmetric photometric augmentation (spec 2.1 step 4, pitfall 10), split in two halves:

* `sample_photometric` draws one view's parameters in the data loader (per-sample seeded, so a
  resumed run sees the same augmentation);
* `apply_photometric` applies a whole batch of them on the training device, vectorised.

View 1: ColorJitter(0.4, 0.4, 0.2, 0.1) p=0.8 in random order, grayscale p=0.2, Gaussian blur p=1.0.
View 2: the same jitter and grayscale, blur p=0.1, solarize(128) p=0.2 after the blur.
"""
from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from tenfold.data.transforms import normalize_batch

from .config import AugmentConfig

__all__ = ["PARAMS", "sample_photometric", "apply_photometric", "rgb_to_hsv", "hsv_to_rgb", "normalize"]

# layout of one view's parameter vector
PARAMS = ["jitter", "brightness", "contrast", "saturation", "hue", "o0", "o1", "o2", "o3", "gray", "blur",
          "sigma", "solarize"]


def sample_photometric(cfg: AugmentConfig, view: int, rng: random.Random | None = None) -> torch.Tensor:
    """Parameters of one view (view = 0 or 1), float32 [len(PARAMS)]."""
    rng = rng or random
    order = list(range(4))
    rng.shuffle(order)
    p = [float(rng.random() < cfg.jitter_p),
         rng.uniform(max(0.0, 1 - cfg.brightness), 1 + cfg.brightness),
         rng.uniform(max(0.0, 1 - cfg.contrast), 1 + cfg.contrast),
         rng.uniform(max(0.0, 1 - cfg.saturation), 1 + cfg.saturation),
         rng.uniform(-cfg.hue, cfg.hue), *map(float, order),
         float(rng.random() < cfg.gray_p),
         float(rng.random() < cfg.blur_p[view]),
         rng.uniform(cfg.blur_sigma[0], cfg.blur_sigma[1]),
         float(rng.random() < cfg.solarize_p[view])]
    return torch.tensor(p, dtype=torch.float32)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    dc = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / dc, (maxc - g) / dc, (maxc - b) / dc
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, maxc], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = i.long() % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = torch.stack([torch.stack(c, 1) for c in
                         [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]], 1)  # [B,6,3,H,W]
    idx = i[:, None, None].expand(-1, 1, 3, -1, -1)
    return table.gather(1, idx).squeeze(1)


def _jitter_op(x: torch.Tensor, op: int, f: torch.Tensor) -> torch.Tensor:
    f4 = f.view(-1, 1, 1, 1)
    if op == 0:  # brightness
        return (x * f4).clamp(0, 1)
    if op == 1:  # contrast: blend with the mean grey level
        m = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
        return (f4 * x + (1 - f4) * m).clamp(0, 1)
    if op == 2:  # saturation: blend with the grey image
        return (f4 * x + (1 - f4) * _gray(x)).clamp(0, 1)
    hsv = rgb_to_hsv(x)  # hue: rotate
    h = (hsv[:, 0] + f.view(-1, 1, 1)) % 1.0
    return hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], 1))


def _blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Per-image Gaussian blur, separable, reflect padding; kernel radius ceil(3 * max sigma)."""
    b, c, h, w = x.shape
    radius = max(1, min(int(math.ceil(3 * max_sigma)), (min(h, w) - 1) // 2))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / sigma[:, None].to(x.dtype)) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [B*C, 2r+1]
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def normalize(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    return normalize_batch(x, cfg.mean, cfg.std)


def _where(sel: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(sel.view(-1, 1, 1, 1), a, b)


def apply_photometric(x: torch.Tensor, params: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """uint8 or [0,1] float views [B, 3, H, W] + parameters [B, len(PARAMS)] -> normalised float views.

    Every op runs on the whole batch and a per-image mask picks its result (torch.where): no boolean indexing
    and no `bool(mask.any())`, so there is no host sync (the old masked version synced 19 times per view); the
    selected images get exactly the values the masked version computed (every op is per image)."""
    x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
    params = params.to(x.device, torch.float32)
    jit = params[:, 0] > 0
    order = params[:, 5:9].long()
    for pos in range(4):  # torchvision's ColorJitter applies its four ops in a random order per image
        for op in range(4):
            x = _where(jit & (order[:, pos] == op), _jitter_op(x, op, params[:, 1 + op]), x)
    x = _where(params[:, 9] > 0, _gray(x).expand(-1, 3, -1, -1), x)
    x = _where(params[:, 10] > 0, _blur(x, params[:, 11], cfg.blur_sigma[1]), x)
    x = _where(params[:, 12] > 0, torch.where(x >= 128 / 255, 1.0 - x, x), x)
    return normalize(x, cfg)
