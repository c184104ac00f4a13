"""`create(name, num_classes, **kw)` over every network in tenfold.nets."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .resnet import CifarResNet
from .vgg import VGGBN, VGGBlockwise
from .vit import VisionTransformer
from .wrn import WideResNet

__all__ = ["register", "create", "available"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def deco(fn):
        _REGISTRY[name] = fn
        return fn
    return deco


def available() -> list[str]:
    return sorted(_REGISTRY)


def create(name: str, num_classes: int = 10, **kw) -> nn.Module:
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise KeyError(f"unknown network '{name}'{hint}; available: {', '.join(available())}")
    return _REGISTRY[name](num_classes=num_classes, **kw)


for _d, _k in [(16, 1), (16, 2), (40, 1), (40, 2)]:
    register(f"wrn{_d}_{_k}")(lambda num_classes=10, _d=_d, _k=_k, **kw: WideResNet(_d, _k, num_classes, **kw))
register("resnet18")(lambda num_classes=10, **kw: CifarResNet((2, 2, 2, 2), num_classes, **kw))
register("resnet34")(lambda num_classes=10, **kw: CifarResNet((3, 4, 6, 3), num_classes, **kw))
register("vgg11_bn")(lambda num_classes=10, **kw: VGGBN(None, num_classes, **kw))
register("vgg16_blockwise")(lambda num_classes=10, **kw: VGGBlockwise(num_classes, **kw))

_VIT = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}
for _size, (_dim, _heads) in _VIT.items():
    for _p in (2, 4, 16):
        def _make(num_classes=0, _dim=_dim, _heads=_heads, _p=_p, **kw):
            kw.setdefault("img_size", 224 if _p == 16 else 32)
            kw.setdefault("num_heads", _heads)
            return VisionTransformer(patch_size=_p, embed_dim=_dim, depth=kw.pop("depth", 12),
                                     num_classes=num_classes, **kw)
        register(f"vit_{_size}_patch{_p}")(_make)
