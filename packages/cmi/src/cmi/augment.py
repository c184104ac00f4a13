"""Differentiable per-sample views in pure torch (spec §2.3, pitfall 1).

Every sample draws its own crop offset / scale / aspect / flip; the ops are indexing and
`grid_sample`, so gradients reach the pixels. Images are in [0, 1]; padding is zero (black) and
normalisation comes after the augmentation.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["Normalizer", "random_crop_flip", "random_resized_crop_flip", "resized_crop_params", "global_view",
           "local_view", "per_image_loop"]


class Normalizer:
    def __init__(self, mean, std):
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        m, s = self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)
        return x * s + m if reverse else (x - m) / s


def _rand(n, generator, device):
    return torch.rand(n, generator=generator, device="cpu").to(device)


def random_crop_flip(x: torch.Tensor, pad: int = 4, flip_p: float = 0.5, generator: torch.Generator | None = None,
                     return_params: bool = False):
    """RandomCrop(size, padding=pad, zero fill) + RandomHorizontalFlip(p), independent per sample.

    One gather: out[b, :, i, j] = padded[b, :, oy_b + i, ox_b + (W-1-j if flip_b else j)]."""
    b, c, h, w = x.shape
    dev = x.device
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    flip = _rand(b, generator, dev) < flip_p
    xp = F.pad(x, (pad, pad, pad, pad))
    cols = torch.arange(w, device=dev).expand(b, w)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + ox[:, None]
    rows = torch.arange(h, device=dev)[None] + oy[:, None]
    bi = torch.arange(b, device=dev)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if return_params:
        return out, {"shift_y": oy - pad, "shift_x": ox - pad, "flip": flip}
    return out


def resized_crop_params(b: int, h: int, w: int, scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3), attempts: int = 10,
                        generator: torch.Generator | None = None) -> dict:
    """torchvision's RandomResizedCrop sampling, vectorised: up to `attempts` draws per sample of
    area s ~ U(scale)·HW and log-uniform aspect; the first that fits wins, else the whole image."""
    area = h * w
    s = torch.empty(b, attempts).uniform_(scale[0], scale[1], generator=generator) * area
    logr = torch.empty(b, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    r = torch.exp(logr)
    cw = torch.sqrt(s * r)
    ch = torch.sqrt(s / r)
    ok = (cw <= w) & (ch <= h)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((b,), -1))
    idx = first.clamp_min(0)[:, None]
    cw = torch.where(first >= 0, cw.gather(1, idx)[:, 0], torch.full((b,), float(w)))
    ch = torch.where(first >= 0, ch.gather(1, idx)[:, 0], torch.full((b,), float(h)))
    x0 = torch.rand(b, generator=generator) * (w - cw)
    y0 = torch.rand(b, generator=generator) * (h - ch)
    return {"x0": x0, "y0": y0, "w": cw, "h": ch, "scale": cw * ch / area}


def random_resized_crop_flip(x: torch.Tensor, scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3), flip_p: float = 0.5,
                             generator: torch.Generator | None = None, return_params: bool = False):
    """RandomResizedCrop(size, scale, ratio, bilinear) + HFlip per sample, via affine_grid/grid_sample."""
    b, c, h, w = x.shape
    p = resized_crop_params(b, h, w, scale, ratio, generator=generator)
    flip = torch.rand(b, generator=generator) < flip_p
    # normalised coordinates (align_corners=False): crop centre and half-extent in [-1, 1] units
    cx = (p["x0"] + p["w"] / 2) / w * 2 - 1
    cy = (p["y0"] + p["h"] / 2) / h * 2 - 1
    sx = p["w"] / w * torch.where(flip, -1.0, 1.0)
    sy = p["h"] / h
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, sy, cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if return_params:
        p["flip"] = flip
        return out, p
    return out


def global_view(x: torch.Tensor, normalizer: Normalizer, pad: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """RandomCrop(pad = size/8, zero fill) + HFlip + Normalize (4 px at 32x32)."""
    pad = max(x.shape[-1] // 8, 1) if pad is None else pad
    return normalizer(random_crop_flip(x, pad, generator=generator))


def local_view(x: torch.Tensor, normalizer: Normalizer, scale=(0.25, 1.0),
               generator: torch.Generator | None = None) -> torch.Tensor:
    """RandomResizedCrop(scale [0.25, 1], ratio [3/4, 4/3]) + HFlip + Normalize."""
    return normalizer(random_resized_crop_flip(x, scale, generator=generator))


def per_image_loop(x: torch.Tensor, fn) -> torch.Tensor:
    """The slow reference pattern: one augmentation call per image (for the CPU benchmark)."""
    return torch.cat([fn(x[i:i + 1]) for i in range(x.shape[0])], 0)
