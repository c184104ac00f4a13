"""Key mapping to and from the official checkpoints' layout (visresearch/aps `module/model.py` names),
so official weights (e.g. from HF `visresearch/aps`) load here and ours can be exported.

    official                                  tenfold-aps
    [base_encoder.]cls_token                  cls_token
    [base_encoder.]pos_embedding   [M, 1, D]  pos_embed  [1, M, D]
    [base_encoder.]patchify.*                 patch_embed.*
    [base_encoder.]transformer.i.mlp.fc1/fc2  blocks.i.mlp.0/2   (other block keys keep their names)
    [base_encoder.]layer_norm.*               norm.*
    base_encoder.fc.* (projector)             projector.*         fc.* (fine-tune head) <-> head.*
    predictor.*                               predictor.*
"""
from __future__ import annotations

import re

import torch

__all__ = ["is_official", "from_official", "to_official"]

_PREFIX = "base_encoder."


def is_official(state: dict) -> bool:
    return any(k.endswith("patchify.weight") for k in state)


def _backbone_from(k: str, v: torch.Tensor) -> tuple[str, torch.Tensor]:
    if k == "pos_embedding":
        return "pos_embed", v.transpose(0, 1)
    k = re.sub(r"^patchify\.", "patch_embed.", k)
    k = re.sub(r"^layer_norm\.", "norm.", k)
    k = re.sub(r"^transformer\.(\d+)\.mlp\.fc1\.", r"blocks.\1.mlp.0.", k)
    k = re.sub(r"^transformer\.(\d+)\.mlp\.fc2\.", r"blocks.\1.mlp.2.", k)
    k = re.sub(r"^transformer\.", "blocks.", k)
    k = re.sub(r"^fc\.", "head.", k)
    return k, v


def from_official(state: dict) -> dict:
    """Official pre-training (base_encoder.* + predictor.*) or fine-tuning (Vit) state dict -> our names.
    A pre-training dict maps to APSModel keys (backbone./projector./predictor.), a fine-tuning one to APSViT."""
    pretrain = any(k.startswith(_PREFIX) for k in state)
    out = {}
    for k, v in state.items():
        if pretrain and k.startswith(_PREFIX + "fc."):
            out["projector." + k[len(_PREFIX) + 3:]] = v
        elif pretrain and k.startswith(_PREFIX):
            nk, nv = _backbone_from(k[len(_PREFIX):], v)
            out["backbone." + nk] = nv
        elif pretrain:
            out[k] = v  # predictor.*
        else:
            nk, nv = _backbone_from(k, v)
            out[nk] = nv
    return out


def _backbone_to(k: str, v: torch.Tensor) -> tuple[str, torch.Tensor]:
    if k == "pos_embed":
        return "pos_embedding", v.transpose(0, 1)
    k = re.sub(r"^patch_embed\.", "patchify.", k)
    k = re.sub(r"^norm\.", "layer_norm.", k)
    k = re.sub(r"^blocks\.(\d+)\.mlp\.0\.", r"transformer.\1.mlp.fc1.", k)
    k = re.sub(r"^blocks\.(\d+)\.mlp\.2\.", r"transformer.\1.mlp.fc2.", k)
    k = re.sub(r"^blocks\.", "transformer.", k)
    k = re.sub(r"^head\.", "fc.", k)
    return k, v


def to_official(state: dict) -> dict:
    """Our APSModel (pre-training) or APSViT (fine-tuning) state dict -> the official names."""
    out = {}
    for k, v in state.items():
        if k.startswith("backbone."):
            nk, nv = _backbone_to(k[len("backbone."):], v)
            out[_PREFIX + nk] = nv
        elif k.startswith("projector."):
            out[_PREFIX + "fc." + k[len("projector."):]] = v
        elif k.startswith("predictor."):
            out[k] = v
        else:
            nk, nv = _backbone_to(k, v)
            out[nk] = nv
    return out
