"""MGC: multi-grained contrast between corresponding regions of two crops (Shen et al., arXiv:2407.02014)."""
import importlib

# public names, loaded on first use (PEP 562): the console scripts' --help must not import torch
_LAZY = {"EvalConfig": "config", "ModelConfig": "config", "TrainConfig": "config",
         "multigrain_correspondence": "correspondence", "overlap_weights": "correspondence",
         "sample_view_boxes": "correspondence", "info_nce": "method", "multigrain_loss": "method",
         "pool_cells": "method", "MGC": "model", "build_vit": "model", "patch_tokens": "model", "MGCViews": "views",
         "TwoViewBoxTransform": "views"}

__version__ = "0.1.0"
__all__ = ["MGC", "ModelConfig", "TrainConfig", "EvalConfig", "build_vit", "patch_tokens", "info_nce",
           "multigrain_loss", "pool_cells", "multigrain_correspondence", "overlap_weights", "sample_view_boxes",
           "MGCViews", "TwoViewBoxTransform"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
