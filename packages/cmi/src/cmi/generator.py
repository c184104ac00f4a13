"""CMI's generator and the GAN baselines' LargeGenerator (spec §2.5), with `reset_model`."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["Generator", "LargeGenerator", "reset_model"]


class Generator(nn.Module):
    """z (B, nz) -> x (B, nc, S, S) in [0, 1]:
    Linear -> BN -> Up -> Conv-BN-LReLU -> Up -> Conv-BN-LReLU -> Conv -> Sigmoid."""

    def __init__(self, nz: int = 256, ngf: int = 64, img_size: int = 32, nc: int = 3, width_mult: int = 2):
        super().__init__()
        self.nz, self.img_size = nz, img_size
        self.init_size = img_size // 4
        c0 = ngf * width_mult
        self.c0 = c0
        self.l1 = nn.Linear(nz, c0 * self.init_size ** 2)
        self.conv_blocks = nn.Sequential(
            nn.BatchNorm2d(c0),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(c0, 2 * ngf, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(2 * ngf),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * ngf, ngf, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ngf, nc, 3, stride=1, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.l1(z).view(z.shape[0], self.c0, self.init_size, self.init_size)
        return self.conv_blocks(out)

    def reset(self) -> None:
        reset_model(self)


class LargeGenerator(Generator):
    """The GAN baselines' generator: ngf*4 = 256 channels after the Linear."""

    def __init__(self, nz: int = 256, ngf: int = 64, img_size: int = 32, nc: int = 3):
        super().__init__(nz, ngf, img_size, nc, width_mult=4)


@torch.no_grad()
def reset_model(model: nn.Module) -> None:
    """Conv/ConvT/Linear weights ~ N(0, 0.02), biases 0; BN gamma ~ N(1, 0.02), beta 0 (running stats kept)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
