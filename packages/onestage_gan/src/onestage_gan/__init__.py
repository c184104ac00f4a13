"""One-stage GAN training (Shen et al., CVPR 2021): update G and D from one backward pass."""
import importlib

# public names, loaded on first use (PEP 562): the console scripts' --help must not import torch
_LAZY = {"GradScale": "gradscale", "ScaleSlot": "gradscale", "grad_scale": "gradscale", "LOSSES": "losses",
         "GanLoss": "losses", "gamma_autograd": "losses", "get_loss": "losses", "check_exactness": "method",
         "one_stage_grads": "method", "one_stage_step": "method", "two_stage_grads": "method",
         "two_stage_step": "method"}

__all__ = ["GradScale", "ScaleSlot", "grad_scale", "LOSSES", "GanLoss", "gamma_autograd", "get_loss",
           "check_exactness", "one_stage_grads", "one_stage_step", "two_stage_grads", "two_stage_step"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
