"""Model registry glue: tenfold.nets (wrn*, resnet18/34, vgg11_bn, ...) plus the spec's ToyNet (§7),
registered as `toynet8` / `toynet16` so `tenfold.nets.load_teacher` can rebuild package-trained toys."""
from __future__ import annotations

import torch.nn.functional as F
from tenfold import nets
from tenfold.errors import ConfigError
from torch import nn

__all__ = ["ToyNet", "build"]


class ToyNet(nn.Module):
    """conv3x3(3->w)-BN-ReLU, conv3x3(w->2w, s2)-BN-ReLU, conv3x3(2w->4w, s2)-BN-ReLU, GAP, Linear(4w->C)."""

    def __init__(self, width: int = 16, num_classes: int = 4, in_chans: int = 3):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True))
        self.fc = nn.Linear(4 * w, num_classes)
        self.num_features = 4 * w

    def forward(self, x, return_features: bool = False):
        feat = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        logits = self.fc(feat)
        return (logits, feat) if return_features else logits


for _w in (8, 16):
    if f"toynet{_w}" not in nets.available():
        nets.register(f"toynet{_w}")(lambda num_classes=4, _w=_w, **kw: ToyNet(_w, num_classes, **kw))


def build(arch: str, num_classes: int) -> nn.Module:
    try:
        return nets.create(arch, num_classes)
    except KeyError as e:
        raise ConfigError(str(e).strip("'\"")) from None
