"""Pre-activation wide ResNets for CIFAR (WRN-d-k), parameter names as in ../shared/models/README.md."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

__all__ = ["WideResNet"]


class WRNBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, drop: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.drop = drop
        self.equal = cin == cout
        self.convShortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        a = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(a)))
        if self.drop > 0:
            out = F.dropout(out, p=self.drop, training=self.training)
        out = self.conv2(out)
        return out + (x if self.equal else self.convShortcut(a))


class WRNGroup(nn.Module):
    def __init__(self, n: int, cin: int, cout: int, stride: int, drop: float):
        super().__init__()
        self.layer = nn.Sequential(*[WRNBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, drop)
                                     for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth: int = 40, widen: int = 2, num_classes: int = 10, drop: float = 0.0, in_chans: int = 3):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError("WRN depth must be 6n+4")
        n = (depth - 4) // 6
        w = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_chans, w[0], 3, 1, 1, bias=False)
        self.block1 = WRNGroup(n, w[0], w[1], 1, drop)
        self.block2 = WRNGroup(n, w[1], w[2], 2, drop)
        self.block3 = WRNGroup(n, w[2], w[3], 2, drop)
        self.bn1 = nn.BatchNorm2d(w[3])
        self.fc = nn.Linear(w[3], num_classes)
        self.num_features = w[3]
        self.stages = ["conv1", "block1", "block2", "block3"]  # feature taps for KD methods
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x):
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return F.relu(self.bn1(x))

    def forward(self, x, return_features: bool = False):
        feat = F.adaptive_avg_pool2d(self.forward_features(x), 1).flatten(1)
        logits = self.fc(feat)
        return (logits, feat) if return_features else logits
