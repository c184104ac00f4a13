"""CMI: Contrastive Model Inversion for data-free knowledge distillation (Fang et al., IJCAI 2021),
with DeepInversion, DAFL, ZSKT, DFQ and DFAD baselines on the tenfold spine."""
import importlib

# public names, loaded on first use (PEP 562): the console scripts' --help must not import torch
_LAZY = {"Normalizer": "augment", "global_view": "augment", "local_view": "augment", "random_crop_flip": "augment",
         "random_resized_crop_flip": "augment", "Generator": "generator", "LargeGenerator": "generator",
         "reset_model": "generator", "TeacherTaps": "hooks", "default_feature_layers": "hooks",
         "feature_dim": "hooks", "MemoryBank": "method", "MLPHead": "method", "bn_stat_loss": "method",
         "class_balance_loss": "method", "contrastive_loss": "method", "jsdiv": "method", "kldiv": "method",
         "masked_adversarial_loss": "method", "tv_l1": "method", "ToyNet": "models", "build": "models",
         "ImagePool": "pool", "BestIterate": "synthesis", "CMISynthesizer": "synthesis",
         "DeepInvSynthesizer": "synthesis", "GenerativeSynthesizer": "synthesis"}

__version__ = "0.1.0"
__all__ = ["Normalizer", "global_view", "local_view", "random_crop_flip", "random_resized_crop_flip", "Generator",
           "LargeGenerator", "reset_model", "TeacherTaps", "default_feature_layers", "feature_dim", "MemoryBank",
           "MLPHead", "bn_stat_loss", "class_balance_loss", "contrastive_loss", "jsdiv", "kldiv",
           "masked_adversarial_loss", "tv_l1", "ToyNet", "build", "ImagePool", "BestIterate", "CMISynthesizer",
           "DeepInvSynthesizer", "GenerativeSynthesizer"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
