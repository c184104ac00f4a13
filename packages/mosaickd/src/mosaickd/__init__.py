"""MosaicKD: distil a teacher into a student using only out-of-domain data, by training a generator whose
images are locally made of OOD patches (patch discriminator) and globally in-domain for the teacher."""
import importlib

# public names, loaded on first use (PEP 562): the console scripts' --help must not import torch
_LAZY = {"MosaicGame": "game", "adv_loss": "method", "align_loss": "method", "balance_loss": "method",
         "discriminator_loss": "method", "generator_loss": "method", "kldiv": "method", "local_loss": "method",
         "select_high_entropy": "method", "student_kd_loss": "method", "GlobalDiscriminator": "nets",
         "Normalizer": "nets", "PatchDiscriminator": "nets", "SmallCNN": "nets", "UpsampleGenerator": "nets"}

__all__ = ["MosaicGame", "adv_loss", "align_loss", "balance_loss", "discriminator_loss", "generator_loss", "kldiv",
           "local_loss", "select_high_entropy", "student_kd_loss", "GlobalDiscriminator", "Normalizer",
           "PatchDiscriminator", "SmallCNN", "UpsampleGenerator"]
__version__ = "0.1.0"


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
