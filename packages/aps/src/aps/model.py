"""APS networks on tenfold.nets' ViT token API (spec §2.3).

APSViT is the spine's VisionTransformer with the official layout: position embedding [1, M, D] on the
patches only (CLS has none, pitfall 6), qkv without bias, LayerNorm eps 1e-5, PyTorch default init for
Linear/Conv/LayerNorm with only cls/pos trunc-normal (pitfall 9). `forward(x, idx)` embeds all M
patches (position added first), gathers the kept ones, prepends CLS and returns the CLS feature.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tenfold.nets import VisionTransformer, gather_tokens
from torch import nn

__all__ = ["APSViT", "mlp_head", "APSModel", "build_backbone", "finetune_state_from_pretrain", "ARCHS"]

ARCHS = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}


class APSViT(VisionTransformer):
    def __init__(self, img_size: int = 32, patch_size: int = 2, embed_dim: int = 192, depth: int = 12,
                 num_heads: int = 3, mlp_ratio: float = 4.0, num_classes: int = 0, drop_path: float = 0.0,
                 init: str = "pytorch"):
        super().__init__(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                         num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=False, drop_path=drop_path,
                         pos_embed="learned", cls_token=True, num_classes=num_classes, norm_eps=1e-5)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], embed_dim))
        if init == "pytorch":
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Conv2d, nn.LayerNorm)):
                    m.reset_parameters()
        elif init != "timm":
            raise ValueError(f"model.init must be 'pytorch' (official) or 'timm', got {init!r}")
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def patch_pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        if (gh, gw) == self.grid:
            return self.pos_embed
        pe = self.pos_embed.reshape(1, *self.grid, -1).permute(0, 3, 1, 2)
        pe = F.interpolate(pe.float(), size=(gh, gw), mode="bicubic", align_corners=False).to(pe.dtype)
        return pe.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)

    def encode(self, tokens: torch.Tensor, with_cls: bool = True) -> torch.Tensor:
        if with_cls:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], 1)
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)

    def features(self, x: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """CLS feature [B, D] of the kept tokens idx [B, n] (all M tokens when idx is None)."""
        tokens = self.embed(x)
        if idx is not None:
            tokens = gather_tokens(tokens, idx)
        return self.pool(self.encode(tokens))

    def forward(self, x: torch.Tensor, idx: torch.Tensor | None = None, return_features: bool = False):
        feat = self.features(x, idx)
        logits = self.head(feat)
        return (logits, feat) if return_features else logits

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}


def mlp_head(in_dim: int, hidden: int = 512, out: int = 128) -> nn.Sequential:
    """3 bias-free Linear layers with BN, ending in BN(affine=False) (projector and predictor, pitfall 7)."""
    return nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out, bias=False), nn.BatchNorm1d(out, affine=False))


class APSModel(nn.Module):
    """backbone + projector + predictor; each view runs in its own call (own BN statistics, pitfall 8)."""

    def __init__(self, backbone: APSViT, hidden: int = 512, out: int = 128):
        super().__init__()
        self.backbone = backbone
        self.projector = mlp_head(backbone.num_features, hidden, out)
        self.predictor = mlp_head(out, hidden, out)

    def branch(self, x: torch.Tensor, idx: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.projector(self.backbone.features(x, idx))
        return self.predictor(z), z

    def forward(self, x1, idx1, x2, idx2):
        """-> p1, p2, z1, z2 (one module call, so DDP sees a single forward)."""
        p1, z1 = self.branch(x1, idx1)
        p2, z2 = self.branch(x2, idx2)
        return p1, p2, z1, z2


def build_backbone(mcfg, num_classes: int = 0, drop_path: float = 0.0) -> APSViT:
    return APSViT(img_size=mcfg.img_size, patch_size=mcfg.patch_size, embed_dim=mcfg.embed_dim,
                  depth=mcfg.depth, num_heads=mcfg.num_heads, mlp_ratio=mcfg.mlp_ratio,
                  num_classes=num_classes, drop_path=drop_path, init=mcfg.init)


def finetune_state_from_pretrain(state: dict) -> dict:
    """Backbone weights of a pre-training state dict (keys 'backbone.*'); projector/predictor are dropped.

    Also accepts a bare backbone state dict or an official-layout one (see aps.official). Loading it into a
    classifier leaves only head.* missing.
    """
    from .official import from_official, is_official

    if is_official(state):
        state = from_official(state)
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    return {k: v for k, v in state.items() if not k.startswith("head.")}
