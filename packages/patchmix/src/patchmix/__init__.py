"""PatchMix: inter-instance similarity modelling for contrastive learning (Shen et al., arXiv 2306.12243)."""
import importlib

# public names, loaded on first use (PEP 562): the console scripts' --help must not import torch
_LAZY = {"PatchMixer": "method", "patch_mix": "method", "patchify": "method", "soft_info_nce": "method",
         "soft_targets": "method", "unpatchify": "method", "MomentumEncoder": "models", "Online": "models",
         "PatchMixViT": "models", "build_backbone": "models", "build_models": "models", "ema_update": "models",
         "momentum_at": "models"}

__version__ = "0.1.0"
__all__ = ["patch_mix", "patchify", "unpatchify", "soft_targets", "soft_info_nce", "PatchMixer", "PatchMixViT",
           "build_backbone", "build_models", "Online", "MomentumEncoder", "ema_update", "momentum_at"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
