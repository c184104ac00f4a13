"""The spec's three networks (§2.2): cDCGAN-ResNet generator G, DCGAN-ResNet discriminator D_k and the
2-conv classifier C_k / S, plus the reference N(0, 0.02) initialisation that overrides every default."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResBlock", "Generator", "Discriminator", "SmallGenerator", "SmallDiscriminator", "Classifier",
           "init_weights", "build_models", "n_params"]


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class ResBlock(nn.Module):
    """RB(in, out, bn): LReLU(shortcut + 0.1 * residual), hidden width min(in, out)."""

    def __init__(self, fin: int, fout: int, bn: bool, res_ratio: float = 0.1):
        super().__init__()
        hidden = min(fin, fout)
        self.res_ratio = res_ratio
        self.conv0 = nn.Conv2d(fin, hidden, 3, padding=1, bias=not bn)
        self.bn0 = nn.BatchNorm2d(hidden) if bn else nn.Identity()
        self.conv1 = nn.Conv2d(hidden, fout, 3, padding=1, bias=not bn)
        self.bn1 = nn.BatchNorm2d(fout) if bn else nn.Identity()
        if fin != fout:
            self.shortcut = nn.Sequential(nn.Conv2d(fin, fout, 1, bias=False),
                                          nn.BatchNorm2d(fout) if bn else nn.Identity())
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.bn1(self.conv1(_lrelu(self.bn0(self.conv0(x)))))
        return _lrelu(self.shortcut(x) + self.res_ratio * r)


class Generator(nn.Module):
    """G(z, onehot(y)) -> image in [-1, 1]; z (B, n_z) or (B, n_z, 1, 1), y one-hot (B, N_c[,1,1])."""

    def __init__(self, n_classes: int, channels: int = 1, img_size: int = 32, n_z: int = 128, ngf: int = 64,
                 nf_max: int = 256, s0: int = 4):
        super().__init__()
        self.n_classes, self.n_z, self.s0 = n_classes, n_z, s0
        n_layers = int(round(math.log2(img_size / s0)))
        if s0 * 2**n_layers != img_size:
            raise ValueError(f"img_size {img_size} must be {s0} * 2^n")
        nf0 = min(nf_max, ngf * 2 ** (n_layers + 1))
        self.half = nf0 // 2
        self.fc_z = nn.Sequential(nn.Linear(n_z, self.half * s0 * s0), nn.BatchNorm1d(self.half * s0 * s0))
        self.fc_y = nn.Sequential(nn.Linear(n_classes, self.half * s0 * s0), nn.BatchNorm1d(self.half * s0 * s0))
        blocks = []
        for i in range(n_layers, 0, -1):
            blocks += [ResBlock(min(ngf * 2 ** (i + 1), nf_max), min(ngf * 2**i, nf_max), bn=True),
                       nn.Upsample(scale_factor=2)]
        blocks += [ResBlock(min(2 * ngf, nf_max), ngf, bn=True), ResBlock(ngf, ngf, bn=True)]
        self.blocks = nn.Sequential(*blocks)
        self.conv_out = nn.Conv2d(ngf, channels, 3, padding=1)

    def forward(self, z: torch.Tensor, y_onehot: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        hz = _lrelu(self.fc_z(z.reshape(b, -1))).view(b, self.half, self.s0, self.s0)
        hy = _lrelu(self.fc_y(y_onehot.reshape(b, -1).to(z.dtype))).view(b, self.half, self.s0, self.s0)
        return torch.tanh(self.conv_out(self.blocks(torch.cat([hz, hy], 1))))


class Discriminator(nn.Module):
    """Unconditional D_k(x) -> (B, 1) probability 'real' (sigmoid output, no normalisation)."""

    def __init__(self, channels: int = 1, img_size: int = 32, ndf: int = 64, nf_max: int = 256, s0: int = 4):
        super().__init__()
        n_layers = int(round(math.log2(img_size / s0)))
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 3, padding=1), nn.LeakyReLU(0.2),
                                   ResBlock(ndf, ndf, bn=False), ResBlock(ndf, min(2 * ndf, nf_max), bn=False)]
        for i in range(1, n_layers + 1):
            layers += [nn.AvgPool2d(3, stride=2, padding=1),
                       ResBlock(min(ndf * 2**i, nf_max), min(ndf * 2 ** (i + 1), nf_max), bn=False)]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(min(ndf * 2 ** (n_layers + 1), nf_max) * s0 * s0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(self.body(x).flatten(1)))


class Classifier(nn.Module):
    """The FL model of every method: conv5x5 -> pool -> conv3x3 -> pool -> FC -> dropout -> FC (logits).
    The first conv's width is `img_size` by default: a reference quirk kept on purpose (§2.2)."""

    def __init__(self, n_classes: int, channels: int = 1, img_size: int = 32, width1: int | None = None,
                 width2: int = 64, hidden: int = 512, dropout: float = 0.2):
        super().__init__()
        w1 = img_size if width1 is None else width1
        self.features = nn.Sequential(
            nn.Conv2d(channels, w1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
            nn.Conv2d(w1, width2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        feat = width2 * math.ceil(img_size / 4) ** 2
        self.head = nn.Sequential(nn.Linear(feat, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@torch.no_grad()
def init_weights(net: nn.Module, std: float = 0.02) -> nn.Module:
    """Conv/Linear weights ~ N(0, std^2), biases 0; BatchNorm2d weight ~ N(1, std^2); BatchNorm1d untouched."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return net


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def build_models(mcfg, n_classes: int, channels: int, img_size: int):
    """(make_G, make_D, make_C) factories from a ModelConfig; each returns an initialised network."""
    small = mcfg.arch == "dcgan"

    def make_g():
        if small:
            return init_weights(SmallGenerator(n_classes, channels, img_size, mcfg.n_z, mcfg.ngf))
        return init_weights(Generator(n_classes, channels, img_size, mcfg.n_z, mcfg.ngf, mcfg.g_nf_max))

    def make_d():
        if small:
            return init_weights(SmallDiscriminator(channels, img_size, mcfg.ndf))
        return init_weights(Discriminator(channels, img_size, mcfg.ndf, mcfg.d_nf_max))

    def make_c():
        return init_weights(Classifier(n_classes, channels, img_size, mcfg.c_width1, mcfg.c_width2, mcfg.c_hidden,
                                       mcfg.c_dropout))

    return make_g, make_d, make_c


class SmallGenerator(nn.Module):
    """CPU-scale stand-in for G (the spec prototype's simplified DCGAN: two 3x3 conv stages, BN, no residuals).
    Same interface as Generator; selected with model.arch=dcgan. Not the paper's network."""

    def __init__(self, n_classes: int, channels: int = 1, img_size: int = 16, n_z: int = 32, ngf: int = 32):
        super().__init__()
        self.n_classes, self.n_z = n_classes, n_z
        self.s0 = img_size // 4
        self.nf = 2 * ngf
        self.fc = nn.Sequential(nn.Linear(n_z + n_classes, self.nf * self.s0 * self.s0),
                                nn.BatchNorm1d(self.nf * self.s0 * self.s0))
        self.body = nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(self.nf, ngf, 3, padding=1, bias=False), nn.BatchNorm2d(ngf),
            nn.LeakyReLU(0.2), nn.Upsample(scale_factor=2), nn.Conv2d(ngf, channels, 3, padding=1))

    def forward(self, z: torch.Tensor, y_onehot: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        h = torch.cat([z.reshape(b, -1), y_onehot.reshape(b, -1).to(z.dtype)], 1)
        h = _lrelu(self.fc(h)).view(b, self.nf, self.s0, self.s0)
        return torch.tanh(self.body(h))


class SmallDiscriminator(nn.Module):
    """CPU-scale stand-in for D_k: two strided 3x3 conv stages, no normalisation, sigmoid output."""

    def __init__(self, channels: int = 1, img_size: int = 16, ndf: int = 32):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, ndf, 3, 2, 1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(ndf, 2 * ndf, 3, 2, 1), nn.LeakyReLU(0.2))
        self.fc = nn.Linear(2 * ndf * (img_size // 4) ** 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(self.body(x).flatten(1)))
