"""The pre-training augmentations of spec §2.7, batched on tensors (on the training device).

Per-sample PIL pipelines are the bottleneck on CPU and a data-loader cost on GPU; here every random
parameter is drawn per sample from a seeded generator and applied to the whole batch at once.
Input: float images in [0, 1], [N, 3, H, W]. Output: normalised views.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from tenfold.data.transforms import normalize_batch

__all__ = ["ViewSpec", "rrc_boxes", "random_resized_crop", "hflip", "rand_augment", "random_erasing", "color_jitter",
           "grayscale", "gaussian_blur", "solarize", "make_view", "eval_view", "normalize", "IMAGENET_MEAN",
           "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LUMA = (0.299, 0.587, 0.114)


@dataclasses.dataclass
class ViewSpec:
    size: int
    scale: tuple[float, float]
    blur_p: float
    solarize_p: float = 0.0
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2
    flip_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    rrc: str = "torchvision"  # torchvision: 10 tries then a centre crop; clamp: one draw, clamped (old)
    jitter_order: str = "random"  # random: a fresh order of the four jitter ops per image (torchvision); fixed


def _u(n, lo, hi, g):
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def rrc_boxes(n: int, height: int, width: int, scale, ratio, g: torch.Generator, tries: int = 10):
    """torchvision's RandomResizedCrop.get_params for n images at once: up to `tries` draws of area U(scale)·H·W
    and log-uniform aspect ratio, rounded to whole pixels, the first that fits is kept (its top/left uniform over
    the valid positions); none fits -> the centre crop with the ratio clamped to the range. Returns float64
    (top, left, h, w) in pixels."""
    area = height * width * _u(n * tries, scale[0], scale[1], g).view(n, tries)
    r = _u(n * tries, math.log(ratio[0]), math.log(ratio[1]), g).view(n, tries).exp()
    w = torch.round(torch.sqrt(area * r))
    h = torch.round(torch.sqrt(area / r))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(ok.any(1), ok.double().argmax(1), torch.zeros(n, dtype=torch.long))
    w, h = w.gather(1, first[:, None])[:, 0], h.gather(1, first[:, None])[:, 0]
    u_top, u_left = torch.rand(n, generator=g, dtype=torch.float64), torch.rand(n, generator=g, dtype=torch.float64)
    top, left = torch.floor(u_top * (height - h + 1)), torch.floor(u_left * (width - w + 1))
    # fallback (no try fitted): torchvision's centre crop of the whole image with the ratio clamped
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    miss = ~ok.any(1)
    w, h = torch.where(miss, float(fw), w), torch.where(miss, float(fh), h)
    top = torch.where(miss, float((height - fh) // 2), top)
    left = torch.where(miss, float((width - fw) // 2), left)
    return top, left, h, w


def random_resized_crop(x: torch.Tensor, size: int, scale, g: torch.Generator, flip_p: float = 0.0,
                        ratio=(3 / 4, 4 / 3), mode: str = "torchvision") -> torch.Tensor:
    """RandomResizedCrop resized bicubically to size x size, with an optional horizontal flip folded into the same
    resampling. mode="torchvision": torchvision's box rule (`rrc_boxes`: retries, whole pixels, centre-crop
    fallback); mode="clamp": one draw of area fraction and ratio with the sides clamped to the image (the earlier
    behaviour, kept for the calibrated CPU configs)."""
    n = x.shape[0]
    if mode == "torchvision":
        hh, ww = x.shape[-2:]
        top, left, bh, bw = rrc_boxes(n, hh, ww, scale, ratio, g)
        w, h = bw / ww, bh / hh  # fractions of the image width / height
        cx, cy = (2 * left + bw) / ww - 1, (2 * top + bh) / hh - 1  # box centres in [-1, 1]
    elif mode == "clamp":
        area = _u(n, scale[0], scale[1], g)
        logr = _u(n, math.log(ratio[0]), math.log(ratio[1]), g)
        r = logr.exp()
        w = (area * r).sqrt().clamp(max=1.0)  # fractions of the image width / height
        h = (area / r).sqrt().clamp(max=1.0)
        cx = (1 - w) * (2 * torch.rand(n, generator=g, dtype=torch.float64) - 1)  # centre in [-(1-w), 1-w]
        cy = (1 - h) * (2 * torch.rand(n, generator=g, dtype=torch.float64) - 1)
    else:
        raise ValueError(f"random_resized_crop mode must be 'torchvision' or 'clamp', got {mode!r}")
    flip = torch.rand(n, generator=g) < flip_p
    sx = torch.where(flip, -w, w)
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, h, cy
    grid = F.affine_grid(theta.to(x), [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bicubic", padding_mode="border", align_corners=False).clamp_(0, 1)


def _gray(x):
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _brightness(y, f):
    return (y * f).clamp(0, 1)


def _contrast(y, f):
    m = _gray(y).mean((2, 3), keepdim=True)
    return ((y - m) * f + m).clamp(0, 1)


def _saturation(y, f):
    gy = _gray(y)
    return ((y - gy) * f + gy).clamp(0, 1)


def _hue(y, fh):
    """Rotation of the chroma plane in YIQ space by 2·pi·fh, a batched stand-in for torchvision's HSV shift."""
    n = y.shape[0]
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          dtype=y.dtype, device=y.device)
    ang = 2 * math.pi * fh
    cos, sin = ang.cos(), ang.sin()
    rot = torch.zeros(n, 3, 3, dtype=y.dtype, device=y.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # [n, 3, 3]
    return torch.einsum("nij,njhw->nihw", m, y).clamp(0, 1)


def color_jitter(x, strength, p, g, order: str = "random"):
    """Brightness, contrast, saturation and hue factors per sample (applied to a fraction p of the batch).

    Brightness, contrast and saturation are torchvision's adjust_* on float images. order="random": like
    torchvision's ColorJitter, each image applies the four ops in its own random order (every op is computed for
    the whole batch at each of the four stages and each image keeps its stage's op); order="fixed": brightness,
    contrast, saturation, hue for every image (the earlier behaviour, kept for the calibrated CPU configs)."""
    n = x.shape[0]
    b, c, s, h = strength
    on = (torch.rand(n, generator=g) < p).to(x.device).view(n, 1, 1, 1)
    fb = _u(n, max(0, 1 - b), 1 + b, g).to(x).view(n, 1, 1, 1)
    fc = _u(n, max(0, 1 - c), 1 + c, g).to(x).view(n, 1, 1, 1)
    fs = _u(n, max(0, 1 - s), 1 + s, g).to(x).view(n, 1, 1, 1)
    fh = _u(n, -h, h, g).to(x)
    ops = [lambda y: _brightness(y, fb), lambda y: _contrast(y, fc), lambda y: _saturation(y, fs)]
    if h > 0:
        ops.append(lambda y: _hue(y, fh))
    if order == "fixed":
        y = x
        for op in ops:
            y = op(y)
    elif order == "random":
        perm = torch.rand(n, len(ops), generator=g).argsort(1).to(x.device)  # [n, stage] -> op index
        y = x
        for stage in range(perm.shape[1]):
            outs = torch.stack([op(y) for op in ops])  # [ops, n, C, H, W]
            y = outs.gather(0, perm[:, stage].view(1, n, 1, 1, 1).expand(1, *y.shape))[0]
    else:
        raise ValueError(f"color_jitter order must be 'random' or 'fixed', got {order!r}")
    return torch.where(on, y, x)



def grayscale(x, p, g):
    on = (torch.rand(x.shape[0], generator=g) < p).to(x.device).view(-1, 1, 1, 1)
    return torch.where(on, _gray(x).expand_as(x), x)


def gaussian_blur(x, p, sigma_range, g, max_sigma: float = 2.0):
    """Gaussian blur with sigma ~ U(sigma_range) on a fraction p (PIL GaussianBlur(radius=sigma) semantics)."""
    n, c, hh, ww = x.shape
    on = torch.rand(n, generator=g) < p
    if not on.any():
        return x
    sig = _u(n, sigma_range[0], sigma_range[1], g)
    rad = int(math.ceil(3 * max(max_sigma, sigma_range[1])))
    rad = min(rad, (min(hh, ww) - 1) // 2)
    t = torch.arange(-rad, rad + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t[None] / sig[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)
    ident = (t == 0).double().expand(n, -1)
    k = torch.where(on[:, None], k, ident).to(x)  # [n, K]
    kk = k.repeat_interleave(c, 0)  # one kernel per (sample, channel)
    y = x.reshape(1, n * c, hh, ww)
    y = F.conv2d(F.pad(y, (rad, rad, 0, 0), mode="reflect"), kk.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, rad, rad), mode="reflect"), kk.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, hh, ww)


def solarize(x, p, g, threshold: float = 128 / 255):
    on = (torch.rand(x.shape[0], generator=g) < p).to(x.device).view(-1, 1, 1, 1)
    return torch.where(on & (x >= threshold), 1.0 - x, x)


def _per_sample(x: torch.Tensor, fn, g: torch.Generator) -> torch.Tensor:
    """Apply a torchvision transform (which draws from torch's global CPU RNG) to each image with its own seed
    from `g`, leaving the global RNG state as it was (exact resume)."""
    seeds = torch.randint(0, 2**62, (x.shape[0],), generator=g).tolist()
    out = []
    with torch.random.fork_rng(devices=[]):
        for img, seed in zip(x, seeds):
            torch.manual_seed(seed)
            out.append(fn(img))
    return torch.stack(out)


def rand_augment(x: torch.Tensor, num_ops: int, magnitude: int, g: torch.Generator) -> torch.Tensor:
    """torchvision's RandAugment(num_ops, magnitude) per image (its own ops for every image), on [0, 1] floats
    through uint8 as torchvision's PIL-equivalent ops expect; the fine-tune recipe's rand-m9 (timm's
    magnitude noise mstd 0.5 and 'increasing' op set are not reproduced: torchvision's op set, fixed magnitude;
    bilinear where timm's PIL ops use bicubic, which torchvision's tensor ops do not offer)."""
    if num_ops <= 0:
        return x
    from torchvision.transforms import v2

    ra = v2.RandAugment(num_ops=num_ops, magnitude=magnitude, interpolation=v2.InterpolationMode.BILINEAR)
    u8 = (x * 255).round_().clamp_(0, 255).to(torch.uint8)
    return _per_sample(u8, ra, g).float().div_(255)


def random_erasing(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """torchvision's RandomErasing(p, value='random') per image on normalised images: one box of area
    U(0.02, 0.33) and log-uniform ratio (0.3, 3.3) filled with N(0, 1) pixels (timm's 'pixel' mode, 1 box)."""
    if p <= 0:
        return x
    from torchvision.transforms import RandomErasing

    return _per_sample(x, RandomErasing(p=p, value="random"), g)


def normalize(x, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    return normalize_batch(x, mean, std)


def hflip(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """Horizontal flip of a fraction p of the batch (one draw per image)."""
    on = (torch.rand(x.shape[0], generator=g) < p).to(x.device).view(-1, 1, 1, 1)
    return torch.where(on, x.flip(-1), x)


def make_view(x: torch.Tensor, spec: ViewSpec, g: torch.Generator, mean=IMAGENET_MEAN, std=IMAGENET_STD,
              crop: bool = True):
    """One augmented, normalised view of a [0,1] batch (crop+flip, jitter, grayscale, blur, solarise).
    crop=False: x is already this view's RandomResizedCrop (taken per sample in the loader from the
    full-resolution image, data.FolderCrops); only the flip and the rest are applied here."""
    if crop:
        y = random_resized_crop(x, spec.size, spec.scale, g, spec.flip_p, mode=spec.rrc)
    else:
        if x.shape[-2:] != (spec.size, spec.size):
            raise ValueError(f"a pre-cropped view must be {spec.size}x{spec.size}, got {tuple(x.shape[-2:])}")
        y = hflip(x, spec.flip_p, g)
    if spec.jitter_p > 0:
        y = color_jitter(y, spec.jitter, spec.jitter_p, g, spec.jitter_order)
    if spec.gray_p > 0:
        y = grayscale(y, spec.gray_p, g)
    if spec.blur_p > 0:
        y = gaussian_blur(y, spec.blur_p, spec.blur_sigma, g)
    if spec.solarize_p > 0:
        y = solarize(y, spec.solarize_p, g)
    return normalize(y, mean, std)


def eval_view(x: torch.Tensor, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Resize(int(size * 256/224), bicubic) -> CenterCrop(size) -> Normalize (spec §3; CIFAR: 36 -> 32)."""
    r = int(size * 256 / 224)
    h, w = x.shape[-2:]
    if (h, w) != (r, r):
        x = F.interpolate(x, size=(r, r), mode="bicubic", align_corners=False, antialias=h > r).clamp(0, 1)
    o = (r - size) // 2
    return normalize(x[..., o:o + size, o:o + size], mean, std)
