"""The generator, the discriminators and the small CPU classifiers of MosaicKD (spec §2.3).

`UpsampleGenerator` is the DCGAN-style upsampling generator shared with CMI/DFAD (width_mult 4 = MosaicKD's
`Generator`, 2 = CMI's narrower one). `PatchDiscriminator` judges 10x10-pixel patches: two stride-2 4x4 convs and
a 1x1 conv, so every output logit sees input rows/cols 4v-3 .. 4v+6 (pitfall 1: the receptive field is the
point). `GlobalDiscriminator` exists only as the ablation the spec warns about.
"""
from __future__ import annotations

import torch
from tenfold.nets import create, register
from torch import nn

__all__ = ["UpsampleGenerator", "PatchDiscriminator", "GlobalDiscriminator", "SmallCNN", "Normalizer",
           "NORMALIZE_DICT", "build_discriminator", "build_classifier"]

# Per-channel statistics (spec §2.1, code `registry.NORMALIZE_DICT`); mnist replicated to 3 channels because
# MNIST enters as an OOD set for 3-channel teachers.
NORMALIZE_DICT: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "imagenet32": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "places365_32": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "svhn": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "shapes": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "mnist": ((0.1307, 0.1307, 0.1307), (0.3081, 0.3081, 0.3081)),
}


class Normalizer(nn.Module):
    """x in [0,1] -> (x - mean) / std per channel; `reverse=True` undoes it (for saving images)."""

    def __init__(self, mean, std, reverse: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.reverse = reverse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reverse:
            return x * self.std + self.mean
        return (x - self.mean) / self.std


class UpsampleGenerator(nn.Module):
    """z (B,nz) -> image (B,nc,img,img) in [0,1]; PyTorch default init (spec §2.3)."""

    def __init__(self, nz: int = 100, ngf: int = 64, img_size: int = 32, nc: int = 3, width_mult: int = 4):
        super().__init__()
        if img_size % 4:
            raise ValueError(f"img_size must be a multiple of 4, got {img_size}")
        self.nz, self.init_size = nz, img_size // 4
        c0 = ngf * width_mult
        self.project = nn.Linear(nz, c0 * self.init_size ** 2)
        self.body = nn.Sequential(
            nn.BatchNorm2d(c0),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c0, ngf * 2, 3, 1, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(ngf * 2, ngf, 3, 1, 1, bias=False), nn.BatchNorm2d(ngf), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ngf, nc, 3, 1, 1), nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], -1, self.init_size, self.init_size)
        return self.body(h)


class PatchDiscriminator(nn.Module):
    """x (B,nc,H,W) -> patch logits (B,1,H/4,W/4); each logit has a 10x10 receptive field, stride 4."""

    def __init__(self, nc: int = 3, ndf: int = 128, output_stride: int = 1):
        super().__init__()
        self.output_stride = output_stride
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=True), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 1, 1, 0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.output_stride
        return self.main(x)[:, :, ::s, ::s]


class GlobalDiscriminator(nn.Module):
    """DCGAN-style whole-image discriminator (B,1,1,1): the ablation of pitfall 1, not the method."""

    def __init__(self, nc: int = 3, ndf: int = 64, img_size: int = 32):
        super().__init__()
        layers, c, size = [nn.Conv2d(nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)], ndf, img_size // 2
        while size > 4:
            layers += [nn.Conv2d(c, c * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c * 2), nn.LeakyReLU(0.2, inplace=True)]
            c, size = c * 2, size // 2
        layers += [nn.Conv2d(c, 1, size, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def build_discriminator(kind: str, nc: int, ndf: int, img_size: int) -> nn.Module:
    if kind == "patch":
        return PatchDiscriminator(nc, ndf)
    if kind == "global":
        return GlobalDiscriminator(nc, ndf, img_size)
    raise ValueError(f"unknown discriminator '{kind}' (patch | global)")


class SmallCNN(nn.Module):
    """Conv-BN-ReLU-maxpool x3 + global average pool + linear: the CPU-scale teacher/student of spec §7b."""

    def __init__(self, num_classes: int = 10, widths=(32, 64, 128), in_chans: int = 3):
        super().__init__()
        layers, c = [], in_chans
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)
        self.num_features = c

    def forward(self, x: torch.Tensor, return_features: bool = False):
        feat = self.features(x).mean((2, 3))
        logits = self.fc(feat)
        return (logits, feat) if return_features else logits


# Registered in the spine's registry so `tenfold.nets.load_teacher` can rebuild CPU teachers from their JSON.
for _w in (8, 16, 32):
    register(f"cnn{_w}")(lambda num_classes=10, _w=_w, **kw: SmallCNN(num_classes, (_w, 2 * _w, 4 * _w), **kw))


def build_classifier(name: str, num_classes: int, in_chans: int = 3) -> nn.Module:
    try:
        return create(name, num_classes) if in_chans == 3 else create(name, num_classes, in_chans=in_chans)
    except KeyError as e:
        from tenfold.errors import ConfigError

        raise ConfigError(str(e).strip("'\"")) from None
