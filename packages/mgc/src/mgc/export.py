"""Backbone export for downstream code (spec 2.7): strip the `base_encoder.` (or `momentum_encoder.`)
prefix, drop heads and the other branch, write a state_dict in the timm / DINO ViT layout + a JSON with the
ViT settings (8 heads, sin-cos positions: a standard 6-head ViT-S would silently mismatch, pitfall 9).

The layout matters because mmdet/mmseg backbones load ViT weights with `strict=False`: under the spine's own
names (`patch_embed.weight`, `mlp.0/2`) the patch embedding and every MLP would silently stay random there.
Exports written before the timm layout (spine names) still load."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tenfold import checkpoint
from tenfold.config import from_dict, to_dict
from tenfold.errors import CheckpointError
from tenfold.nets import VisionTransformer

from .config import TrainConfig
from .model import MGC, build_vit

__all__ = ["load_training_checkpoint", "backbone_state", "export_backbone", "load_backbone", "is_export",
           "load_any_backbone", "to_timm_layout", "from_timm_layout", "timm_kwargs"]

EXPORT_TAG = "mgc-backbone"
LAYOUT = "timm"

# spine name fragment -> timm name fragment; everything else (cls_token, pos_embed, norm*, attn.*) is shared
_RENAMES = (("patch_embed.weight", "patch_embed.proj.weight"), ("patch_embed.bias", "patch_embed.proj.bias"),
            (".mlp.0.", ".mlp.fc1."), (".mlp.2.", ".mlp.fc2."))


def _rename(sd: dict, pairs) -> dict:
    out = {}
    for k, v in sd.items():
        for a, b in pairs:
            if k == a or (a.startswith(".") and a in k):
                k = k.replace(a, b)
                break
        out[k] = v
    return out


def to_timm_layout(sd: dict) -> dict:
    """Spine ViT state_dict -> timm `VisionTransformer` names (patch_embed.proj.*, blocks.i.mlp.fc1/fc2)."""
    return _rename(sd, _RENAMES)


def from_timm_layout(sd: dict) -> dict:
    """Inverse of `to_timm_layout`; a state_dict already in the spine layout passes through unchanged."""
    return _rename(sd, [(b, a) for a, b in _RENAMES])


def timm_kwargs(vit_meta: dict) -> dict:
    """Arguments of `timm.models.vision_transformer.VisionTransformer` that accept the export strictly."""
    return {"img_size": vit_meta["img_size"], "patch_size": vit_meta["patch_size"],
            "embed_dim": vit_meta["embed_dim"], "depth": vit_meta["depth"], "num_heads": vit_meta["num_heads"],
            "mlp_ratio": 4.0, "qkv_bias": vit_meta.get("qkv_bias", True), "class_token": vit_meta["cls_token"],
            "global_pool": "token", "num_classes": 0}


def load_training_checkpoint(path) -> tuple[TrainConfig, MGC, dict]:
    ck = checkpoint.load(path, kind="mgc")
    try:
        cfg = from_dict(TrainConfig, ck["config"])
    except Exception as e:
        raise CheckpointError(f"{path}: its stored config is unusable ({str(e).splitlines()[0]})") from None
    model = MGC(cfg.model, cfg.loss)
    checkpoint.load_module_state(model, ck["state"]["model"], what=f"mgc model in {path}")
    return cfg, model, ck


def backbone_state(model_state: dict, encoder: str = "base") -> dict:
    prefix = f"{encoder}_encoder."
    sd = {k[len(prefix):]: v for k, v in model_state.items() if k.startswith(prefix)}
    if not sd:
        raise CheckpointError(f"no '{prefix}*' weights in the checkpoint; is it an MGC training checkpoint?")
    return sd


def _vit_meta(cfg: TrainConfig) -> dict:
    m = cfg.model
    return {"img_size": m.img_size, "patch_size": m.patch_size, "embed_dim": m.embed_dim, "depth": m.depth,
            "num_heads": m.num_heads, "pos_embed": "sincos", "cls_token": True, "norm_eps": 1e-6,
            "qkv_bias": True}


def export_backbone(ckpt_path, out_path, encoder: str = "base") -> Path:
    cfg, _, ck = load_training_checkpoint(ckpt_path)
    sd = to_timm_layout(backbone_state(ck["state"]["model"], encoder))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, out)
    meta = {"format": EXPORT_TAG, "arch": "vit", "layout": LAYOUT, "vit": _vit_meta(cfg),
            "timm_kwargs": timm_kwargs(_vit_meta(cfg)), "encoder": encoder,
            "step": ck.get("loop", {}).get("step"), "source": str(ckpt_path),
            "features": "final-LayerNorm patch tokens (CLS unused in pre-training)",
            "train_config": to_dict(cfg)}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return out


def is_export(path) -> bool:
    meta = Path(path).with_suffix(".json")
    if not (Path(path).is_file() and meta.is_file()):
        return False
    try:
        return json.loads(meta.read_text()).get("format") == EXPORT_TAG
    except (OSError, ValueError):
        return False


def load_backbone(path) -> tuple[VisionTransformer, dict]:
    """Plain ViT from an export (strict load); returns (vit, metadata)."""
    p = Path(path)
    meta = json.loads(p.with_suffix(".json").read_text())
    v = meta["vit"]
    vit = VisionTransformer(img_size=v["img_size"], patch_size=v["patch_size"], embed_dim=v["embed_dim"],
                            depth=v["depth"], num_heads=v["num_heads"], qkv_bias=v.get("qkv_bias", True),
                            pos_embed=v["pos_embed"], cls_token=v["cls_token"], norm_eps=v["norm_eps"],
                            num_classes=0)
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{p}: cannot read backbone weights ({str(e).splitlines()[0]})") from None
    checkpoint.load_module_state(vit, from_timm_layout(sd), what=f"backbone {p.name}")
    return vit, meta


def load_any_backbone(path, encoder: str = "base") -> tuple[VisionTransformer, TrainConfig]:
    """A training checkpoint (run dir or last.pt) or an export -> (ViT, training config)."""
    if is_export(path):
        vit, meta = load_backbone(path)
        cfg = from_dict(TrainConfig, meta["train_config"]) if "train_config" in meta else TrainConfig()
        return vit, cfg
    cfg, model, _ = load_training_checkpoint(path)
    vit = build_vit(cfg.model)
    vit.load_state_dict(model.backbone(encoder).state_dict())
    return vit, cfg
