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


# (official, ours) key prefixes of the backbone, most specific first; "{i}" is a block index. One table
# serves both directions, so the two mappings cannot drift apart.
_RENAMES = [("patchify.", "patch_embed."), ("layer_norm.", "norm."),
            ("transformer.{i}.mlp.fc1.", "blocks.{i}.mlp.0."), ("transformer.{i}.mlp.fc2.", "blocks.{i}.mlp.2."),
            ("transformer.", "blocks."), ("fc.", "head.")]


def _rules(to_ours: bool) -> list[tuple[re.Pattern, str]]:
    rules = []
    for off, ours in _RENAMES:
        src, dst = (off, ours) if to_ours else (ours, off)
        rules.append((re.compile("^" + re.escape(src).replace(re.escape("{i}"), r"(\d+)")),
                      dst.replace("{i}", r"\1")))
    return rules


_TO_OURS, _TO_OFFICIAL = _rules(True), _rules(False)


def _rename(k: str, v: torch.Tensor, to_ours: bool) -> tuple[str, torch.Tensor]:
    """One backbone key in the other layout; the position embedding also swaps its [M, 1, D] / [1, M, D] axes."""
    if k == ("pos_embedding" if to_ours else "pos_embed"):
        return ("pos_embed" if to_ours else "pos_embedding"), v.transpose(0, 1)
    for pattern, repl in _TO_OURS if to_ours else _TO_OFFICIAL:
        if pattern.match(k):
            return pattern.sub(repl, k, count=1), v
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
            nk, nv = _rename(k[len(_PREFIX):], v, to_ours=True)
            out["backbone." + nk] = nv
        elif pretrain:
            out[k] = v  # predictor.*
        else:
            nk, nv = _rename(k, v, to_ours=True)
            out[nk] = nv
    return out


def to_official(state: dict) -> dict:
    """Our APSModel (pre-training) or APSViT (fine-tuning) state dict -> the official names."""
    out = {}
    for k, v in state.items():
        if k.startswith("backbone."):
            nk, nv = _rename(k[len("backbone."):], v, to_ours=False)
            out[_PREFIX + nk] = nv
        elif k.startswith("projector."):
            out[_PREFIX + "fc." + k[len("projector."):]] = v
        elif k.startswith("predictor."):
            out[k] = v
        else:
            nk, nv = _rename(k, v, to_ours=False)
            out[nk] = nv
    return out
