"""DCGAN generator / discriminator for 32 and 64 px (spec §2.6), and the MLP pair of the 2-D ring demo."""
from __future__ import annotations

import math

from torch import nn

__all__ = ["DCGenerator", "DCDiscriminator", "MLPGenerator", "MLPDiscriminator", "dcgan_init_", "norm_layer",
           "CROSS_SAMPLE_LAYERS"]

# Layers whose output for sample i depends on other samples of the batch (train-mode batch statistics).
CROSS_SAMPLE_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":  # the reference's DCDiscriminatorGN: GroupNorm with 32 groups
        return nn.GroupNorm(math.gcd(32, channels), channels)
    if kind == "ln":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}' (bn | gn | ln | none)")


def dcgan_init_(model: nn.Module) -> nn.Module:
    """Every conv / transposed-conv weight ~ N(0, 0.02), bias 0; norm layers keep PyTorch defaults."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def _levels(size: int) -> int:
    if size not in (16, 32, 64, 128):
        raise ValueError(f"image size {size} not supported (16, 32, 64 or 128)")
    return int(math.log2(size // 4))


class DCGenerator(nn.Module):
    """z (B, zdim) or (B, zdim, 1, 1) → image (B, c, size, size) in [−1, 1]; widths d·2^k halving up to d."""

    def __init__(self, zdim: int = 100, channels: int = 3, d: int = 128, size: int = 64, norm: str = "bn"):
        super().__init__()
        n = _levels(size)
        self.zdim = zdim
        w = d * 2 ** (n - 1)
        layers = [nn.ConvTranspose2d(zdim, w, 4, 1, 0), norm_layer(norm, w), nn.ReLU(True)]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(w, w // 2, 4, 2, 1), norm_layer(norm, w // 2), nn.ReLU(True)]
            w //= 2
        layers += [nn.ConvTranspose2d(w, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, z):
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCDiscriminator(nn.Module):
    """image → one logit per sample, shape (B,) (also for B = 1, unlike the reference's squeeze)."""

    def __init__(self, channels: int = 3, d: int = 128, size: int = 64, norm: str = "bn"):
        super().__init__()
        n = _levels(size)
        layers = [nn.Conv2d(channels, d, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        w = d
        for _ in range(n - 1):
            layers += [nn.Conv2d(w, w * 2, 4, 2, 1), norm_layer(norm, w * 2), nn.LeakyReLU(0.2, True)]
            w *= 2
        layers.append(nn.Conv2d(w, 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, x):
        return self.net(x).view(-1)


class MLPGenerator(nn.Module):
    def __init__(self, zdim: int = 16, hidden: int = 128, out: int = 2, depth: int = 3):
        super().__init__()
        self.zdim = zdim
        dims = [zdim] + [hidden] * depth
        layers = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(True)]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, out))

    def forward(self, z):
        return self.net(z.view(z.shape[0], -1))


class MLPDiscriminator(nn.Module):
    def __init__(self, inp: int = 2, hidden: int = 128, depth: int = 3):
        super().__init__()
        dims = [inp] + [hidden] * depth
        layers = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(True)]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).view(-1)
