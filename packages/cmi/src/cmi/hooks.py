"""Teacher feature taps (spec §2.2): the BN-statistics regulariser and CMI's instance-mean features.

Both read the *input* of the hooked module (pitfall 2). One forward of the teacher fills them; read
`bn_loss()` and `features()` right after that forward, before another forward overwrites them (pitfall 6).
"""
from __future__ import annotations

import torch
from tenfold.errors import ConfigError
from torch import nn

from .method import bn_stat_loss

__all__ = ["TeacherTaps", "default_feature_layers", "feature_dim"]


def default_feature_layers(model: nn.Module, arch: str | None = None) -> list[str]:
    """The spec's layer choice: inputs of layer1..4 for resnet34, every BatchNorm2d otherwise."""
    if arch == "resnet34":
        return ["layer1", "layer2", "layer3", "layer4"]
    return [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


class TeacherTaps:
    """Forward hooks on a (frozen) teacher.

    * every BatchNorm2d: r_l = ||rv - var(a)|| + ||rm - mean(a)|| of its input a (DeepInversion);
    * each module in `feature_layers` (names, default: the spec's choice): mean_{H,W} of its input.
    """

    def __init__(self, model: nn.Module, feature_layers: list[str] | None = None, arch: str | None = None,
                 bn: bool = True, features: bool = True):
        self.model = model
        named = dict(model.named_modules())
        if feature_layers is None or len(feature_layers) == 0:
            feature_layers = default_feature_layers(model, arch) if features else []
        missing = [n for n in feature_layers if n not in named]
        if missing:
            raise ConfigError(f"feature layer '{missing[0]}' is not a module of the teacher; "
                              f"valid names include {', '.join(list(named)[1:6])}, ...")
        self.feature_layers = list(feature_layers)
        self.bn_layers = [n for n, m in named.items() if isinstance(m, nn.BatchNorm2d)] if bn else []
        self._bn: dict[str, torch.Tensor] = {}
        self._feat: dict[str, torch.Tensor] = {}
        self.enabled_bn = True
        self.handles = []
        for n in self.bn_layers:
            self.handles.append(named[n].register_forward_hook(self._bn_hook(n)))
        for n in self.feature_layers:
            self.handles.append(named[n].register_forward_hook(self._feat_hook(n)))

    def _bn_hook(self, name):
        def hook(mod, inputs, output):
            if self.enabled_bn:
                # fp32 statistics: under bf16 autocast the input is bf16, and a variance in bf16 is too coarse
                self._bn[name] = bn_stat_loss(inputs[0].float(), mod.running_mean.float(), mod.running_var.float())
        return hook

    def _feat_hook(self, name):
        def hook(mod, inputs, output):
            a = inputs[0].float()  # the contrastive features are compared in fp32 (bf16 under autocast)
            self._feat[name] = a.mean(dim=tuple(range(2, a.dim()))) if a.dim() > 2 else a
        return hook

    def bn_loss(self) -> torch.Tensor:
        """L_bn = sum_l r_l over all BN layers of the last forward (summed, not averaged)."""
        if not self._bn:
            raise RuntimeError("no BN statistics recorded: run a teacher forward first (teacher has no BatchNorm2d?)")
        return torch.stack([self._bn[n] for n in self.bn_layers]).sum()

    def features(self) -> torch.Tensor:
        """f(x) = [f_1(x), ..., f_L(x)] in R^{B x D} from the last forward."""
        return torch.cat([self._feat[n] for n in self.feature_layers], dim=1)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


@torch.no_grad()
def feature_dim(model: nn.Module, taps: TeacherTaps, image_size: int = 32, channels: int = 3) -> int:
    """D by a dummy forward (as the reference does with one random 1x3x32x32 image)."""
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    model(torch.rand(1, channels, image_size, image_size, device=dev))
    model.train(was)
    return taps.features().shape[1]
