"""APS: Asymmetric Patch Sampling for contrastive learning (Shen et al., Pattern Recognition 2025)."""
import importlib

# public names, loaded on first use (PEP 562): the console scripts' --help must not import torch
_LAZY = {"aps_loss": "method", "contrastive_loss": "method", "lr_factor": "method", "APSModel": "model",
         "APSViT": "model", "build_backbone": "model", "finetune_state_from_pretrain": "model", "mlp_head": "model",
         "asymmetric_patch_sampling": "sampling", "non_overlap_ratio": "sampling", "overlap_fraction": "sampling",
         "selective_patch_sampling": "sampling", "sparse_patch_sampling": "sampling"}

__all__ = ["aps_loss", "contrastive_loss", "lr_factor", "APSModel", "APSViT", "build_backbone",
           "finetune_state_from_pretrain", "mlp_head", "asymmetric_patch_sampling", "non_overlap_ratio",
           "overlap_fraction", "selective_patch_sampling", "sparse_patch_sampling"]
__version__ = "0.1.0"


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
