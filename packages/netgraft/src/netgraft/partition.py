"""Generic block partition: a network as `blocks[0..K-1]` followed by a `head`.

Grafting positions index this list, with position K meaning "the head". Partitions exist for the
spine's VGG "blockwise" nets, the spine's CIFAR ResNets and torchvision's ResNets; anything else can
be grafted by building a `Partition` by hand.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from tenfold.nets import CifarResNet, VGGBlockwise
from torch import nn

__all__ = ["Partition", "partition", "GapHead", "block_channels"]


class GapHead(nn.Module):
    """Global average pool + flatten + linear (ResNet heads)."""

    def __init__(self, fc: nn.Linear):
        super().__init__()
        self.fc = fc

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class FlattenHead(nn.Module):
    """Flatten + an MLP (VGG heads: the last block already pools to 1x1 at 32 px)."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        self.mlp = mlp

    def forward(self, x):
        return self.mlp(torch.flatten(x, 1))


@dataclass
class Partition:
    blocks: nn.ModuleList
    head: nn.Module
    channels: list[int]  # output channels of each block

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Logits from the output of blocks [0, start)."""
        for b in self.blocks[start:]:
            x = b(x)
        return self.head(x)

    def forward_prefix(self, x: torch.Tensor, end: int) -> torch.Tensor:
        """Output of blocks [0, end)."""
        for b in self.blocks[:end]:
            x = b(x)
        return x


def _last_conv_channels(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("block has no convolution; cannot infer its width")
    return convs[-1].out_channels


def block_channels(blocks) -> list[int]:
    return [_last_conv_channels(b) for b in blocks]


class _Stem(nn.Module):
    def __init__(self, *mods):
        super().__init__()
        self.mods = nn.ModuleList(mods)

    def forward(self, x):
        for m in self.mods:
            x = m(x)
        return x


def partition(model: nn.Module, share: bool = True) -> Partition:
    """Split `model` into blocks + head. With share=True the modules are the model's own (no copy)."""
    m = model if share else copy.deepcopy(model)
    if isinstance(m, VGGBlockwise):
        blocks = nn.ModuleList(list(m.features))
        return Partition(blocks, FlattenHead(m.classifier), block_channels(blocks))
    if isinstance(m, CifarResNet):
        stem = _Stem(m.conv1, m.bn1, nn.ReLU())
        blocks = nn.ModuleList([stem, m.layer1, m.layer2, m.layer3, m.layer4])
        return Partition(blocks, GapHead(m.fc), block_channels(blocks))
    try:
        from torchvision.models import ResNet
    except ImportError:  # pragma: no cover
        ResNet = ()
    if isinstance(m, ResNet):
        stem = _Stem(m.conv1, m.bn1, m.relu, m.maxpool)
        blocks = nn.ModuleList([stem, m.layer1, m.layer2, m.layer3, m.layer4])
        return Partition(blocks, GapHead(m.fc), block_channels(blocks))
    raise TypeError(f"no block partition for {type(m).__name__}; build netgraft.Partition(blocks, head, channels)")
