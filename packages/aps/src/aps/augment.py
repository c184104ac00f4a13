"""Data side: the two-view APS transform (spec §2.2) and the fine-tuning recipe (spec §2.7) rebuilt
from torchvision.transforms.v2 and torch (timm is not a dependency)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .sampling import asymmetric_patch_sampling, random_resized_crop_box, symmetric_patch_sampling

__all__ = ["TwoViewAPSTransform", "finetune_train_transform", "eval_transform", "mix_batch",
           "soft_target_cross_entropy", "smooth_one_hot"]


def _to_image(img):
    """uint8 CHW tensor (tenfold arrays) or PIL image (ImageFolder) -> uint8 CHW tensor."""
    return img if isinstance(img, torch.Tensor) else TF.pil_to_tensor(img.convert("RGB"))


class TwoViewAPSTransform:
    """img -> (x1 [3,S,S], I1 [K,n], x2 [3,S,S], I2 [K,n]).

    Crop boxes and flips are drawn from a numpy Generator seeded from torch's RNG, which tenfold's loader
    seeds per sample: identical across worker counts and on resume (pitfall 12).
    """

    def __init__(self, aug, sampling, img_size: int, patch_size: int):
        self.aug, self.sampling = aug, sampling
        self.size, self.grid = img_size, img_size // patch_size
        self.colour = v2.Compose([
            v2.RandomApply([v2.ColorJitter(*aug.jitter)], p=aug.jitter_p),
            v2.RandomGrayscale(p=aug.gray_p),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(aug.mean, aug.std),
        ])

    def view(self, img: torch.Tensor, rng: np.random.Generator):
        h, w = img.shape[-2:]
        box = random_resized_crop_box(h, w, self.aug.crop_scale, self.aug.crop_ratio, rng)
        x = TF.resized_crop(img, *box, size=[self.size, self.size], antialias=True)
        flip = bool(rng.random() < self.aug.flip_p)
        if flip:
            x = TF.horizontal_flip(x)
        return self.colour(x), box, flip

    def indices(self, box1, box2, flip1, flip2, rng):
        s, g = self.sampling, self.grid
        if s.mode == "full":
            full = np.arange(g * g, dtype=np.int64)[None]
            return full, full
        if s.mode == "symmetric":
            return symmetric_patch_sampling(g, s.ratio, s.num_subsets, rng)
        power = 0.0 if s.mode == "random" else s.power
        return asymmetric_patch_sampling(box1, box2, flip1, flip2, g, s.ratio, s.num_subsets, power, rng,
                                         s.flip_aware)

    def __call__(self, img):
        img = _to_image(img)
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,))))
        x1, box1, f1 = self.view(img, rng)
        x2, box2, f2 = self.view(img, rng)
        i1, i2 = self.indices(box1, box2, f1, f2, rng)
        return x1, torch.from_numpy(i1), x2, torch.from_numpy(i2)


def eval_transform(mean, std, img_size: int | None = None, resize: bool = False):
    ops = [v2.ToImage()]
    if resize and img_size:
        ops += [v2.Resize(int(round(img_size / 0.875)), antialias=True), v2.CenterCrop(img_size)]
    return v2.Compose(ops + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def finetune_train_transform(cfg, resize: bool = False):
    """RandomCrop(pad 4) + flip + RandAugment(2, 9) + ImageNet normalisation + RandomErasing(random pixels).

    torchvision's RandAugment differs from timm's rand-m9-mstd0.5-inc1 (fixed magnitude, its own op set,
    bilinear on tensors); accepted by the spec as an approximation.
    """
    s = cfg.model.img_size
    crop = v2.RandomResizedCrop(s, antialias=True) if resize else v2.RandomCrop(s, padding=4)
    ops = [v2.ToImage(), crop, v2.RandomHorizontalFlip()]
    if cfg.randaug_ops > 0:
        ops.append(v2.RandAugment(num_ops=cfg.randaug_ops, magnitude=cfg.randaug_magnitude))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(cfg.mean, cfg.std)]
    if cfg.reprob > 0:
        ops.append(v2.RandomErasing(p=cfg.reprob, value="random"))
    return v2.Compose(ops)


def smooth_one_hot(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Label smoothing as timm's Mixup: off = s/C, on = 1 − s + s/C."""
    off = smoothing / num_classes
    t = torch.full((y.shape[0], num_classes), off, device=y.device)
    return t.scatter_(1, y.long()[:, None], 1.0 - smoothing + off)


def mix_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup: float = 0.8, cutmix: float = 1.0,
              prob: float = 1.0, switch_prob: float = 0.5, smoothing: float = 0.1
              ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """timm 'batch' mode: one λ per batch, partner = the reversed batch; CutMix λ corrected to the clipped
    box area. Returns (mixed x, soft targets, λ). Uses torch's global RNG (restored on resume)."""
    t1 = smooth_one_hot(y, num_classes, smoothing)
    t2 = t1.flip(0)
    if (mixup <= 0 and cutmix <= 0) or float(torch.rand(())) >= prob:
        return x, t1, 1.0
    use_cutmix = cutmix > 0 and (mixup <= 0 or float(torch.rand(())) < switch_prob)
    alpha = cutmix if use_cutmix else mixup
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    if use_cutmix:
        h, w = x.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(torch.randint(0, h, ())), int(torch.randint(0, w, ()))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
    else:
        x = x * lam + x.flip(0) * (1.0 - lam)
    return x, t1 * lam + t2 * (1.0 - lam), lam


def soft_target_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
