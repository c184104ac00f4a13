"""CIFAR VGGs: VGG11-BN and NetGraft's VGG16 "blockwise" (names as in ../shared/models/README.md)."""
from __future__ import annotations

from torch import nn

__all__ = ["VGGBlockwise", "VGGBN", "VGG16_BLOCKS", "VGG11_CFG"]

VGG16_BLOCKS = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
VGG11_CFG = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class VGGBlockwise(nn.Module):
    """features.<b> = [conv, ReLU]*k + MaxPool (no BN in convs); classifier Linear-BN1d-Linear."""

    def __init__(self, num_classes: int = 10, blocks=None, in_chans: int = 3, width: float = 1.0):
        super().__init__()
        blocks = blocks or VGG16_BLOCKS
        layers, c = [], in_chans
        for spec in blocks:
            mods = []
            for ch in spec:
                ch = max(int(ch * width), 1)
                mods += [nn.Conv2d(c, ch, 3, padding=1), nn.ReLU(inplace=True)]
                c = ch
            mods.append(nn.MaxPool2d(2, 2))
            layers.append(nn.Sequential(*mods))
        self.features = nn.Sequential(*layers)
        self.num_features = c
        self.classifier = nn.Sequential(nn.Linear(c, c), nn.BatchNorm1d(c), nn.Linear(c, num_classes))

    def forward(self, x, return_features: bool = False):
        feat = self.features(x).flatten(1)
        logits = self.classifier(feat)
        return (logits, feat) if return_features else logits


class VGGBN(nn.Module):
    def __init__(self, cfg=None, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        layers, c = [], in_chans
        for v in cfg or VGG11_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.num_features = c
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x, return_features: bool = False):
        feat = nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        logits = self.classifier(feat)
        return (logits, feat) if return_features else logits
