"""Vision Transformer with a token-level API (used by mgc, patchmix and aps).

    tok = vit.embed(x)                       # [B, N, D] patch tokens with their position embedding
    kept = gather_tokens(tok, idx)           # run on a subset (aps) or a mixed sequence (patchmix)
    out = vit.encode(kept)                   # [B, 1+K, D]: CLS (if any) + tokens, final LayerNorm applied
    vit.forward(x) == vit.forward_head(vit.encode(vit.embed(x)))

Attention uses F.scaled_dot_product_attention (flash / memory-efficient kernels on GPU).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VisionTransformer", "gather_tokens", "sincos_pos_embed_2d", "DropPath"]


def sincos_pos_embed_2d(dim: int, gh: int, gw: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sin-cos embedding [gh*gw, dim] (MoCo-v3 layout: sin_w, cos_w, sin_h, cos_h)."""
    if dim % 4:
        raise ValueError("sin-cos position embedding needs embed_dim divisible by 4")
    gy, gx = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64),
                            indexing="ij")
    q = dim // 4
    omega = 1.0 / temperature ** (torch.arange(q, dtype=torch.float64) / q)
    ow = gx.flatten()[:, None] * omega[None]
    oh = gy.flatten()[:, None] * omega[None]
    return torch.cat([ow.sin(), ow.cos(), oh.sin(), oh.cos()], 1).float()


def gather_tokens(tokens: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """tokens [B, N, D], idx [B, K] (long) -> [B, K, D]."""
    return tokens.gather(1, idx.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch per sample with probability p."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop_path=0.0, eps=1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 384,
                 depth: int = 12, num_heads: int = 6, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, pos_embed: str = "learned", cls_token: bool = True,
                 num_classes: int = 0, norm_eps: float = 1e-6, cls_init_std: float = 0.02):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        if pos_embed not in ("learned", "sincos"):
            raise ValueError("pos_embed must be 'learned' or 'sincos'")
        self.patch_size, self.embed_dim, self.img_size = patch_size, embed_dim, img_size
        self.num_features = embed_dim
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.num_prefix = 1 if cls_token else 0
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if cls_token else None
        n = self.grid[0] * self.grid[1]
        self.pos_embed_kind = pos_embed
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix + n, embed_dim),
                                      requires_grad=(pos_embed == "learned"))
        dpr = [drop_path * i / max(depth - 1, 1) for i in range(depth)]  # linear rule over blocks
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias, dpr[i], norm_eps)
                                    for i in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init(cls_init_std)

    def _init(self, cls_std: float):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=cls_std) if cls_std > 0 else nn.init.zeros_(self.cls_token)
        with torch.no_grad():
            if self.pos_embed_kind == "sincos":
                self.pos_embed.zero_()  # CLS position stays 0
                self.pos_embed[0, self.num_prefix:] = sincos_pos_embed_2d(self.embed_dim, *self.grid)
            else:
                nn.init.trunc_normal_(self.pos_embed, std=0.02)

    # ---- token API ---------------------------------------------------------------------------
    def grid_size(self, h: int, w: int) -> tuple[int, int]:
        return h // self.patch_size, w // self.patch_size

    def patch_pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        """Position embedding of the patch grid [1, gh*gw, D], interpolated for other resolutions."""
        pe = self.pos_embed[:, self.num_prefix:]
        if (gh, gw) == self.grid:
            return pe
        if self.pos_embed_kind == "sincos":
            return sincos_pos_embed_2d(self.embed_dim, gh, gw).to(pe)[None]
        pe = pe.reshape(1, *self.grid, -1).permute(0, 3, 1, 2)
        pe = F.interpolate(pe.float(), size=(gh, gw), mode="bicubic", align_corners=False).to(pe.dtype)
        return pe.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B,C,H,W] -> patch tokens [B, N, D] (row-major grid) with position embedding added."""
        t = self.patch_embed(x)
        gh, gw = t.shape[-2:]
        return t.flatten(2).transpose(1, 2) + self.patch_pos_embed(gh, gw)

    def encode(self, tokens: torch.Tensor, with_cls: bool = True) -> torch.Tensor:
        """Run the blocks on any token sequence [B, K, D]; prepends CLS (+ its position) if the model has one."""
        if with_cls and self.cls_token is not None:
            cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
            tokens = torch.cat([cls, tokens], 1)
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)

    def pool(self, encoded: torch.Tensor) -> torch.Tensor:
        """Image feature: CLS output if present, else the mean of the tokens."""
        return encoded[:, 0] if self.cls_token is not None else encoded.mean(1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(self.embed(x))

    def forward_head(self, encoded: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(encoded))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        enc = self.forward_features(x)
        feat = self.pool(enc)
        logits = self.head(feat)
        return (logits, feat) if return_features else logits

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}


def flops_per_image(model: VisionTransformer, img_size: int | None = None) -> float:
    """Forward FLOPs (2 per multiply-add) of one image, for MFU estimates."""
    s = img_size or model.img_size
    n = (s // model.patch_size) ** 2 + model.num_prefix
    d = model.embed_dim
    blocks = len(model.blocks)
    hidden = model.blocks[0].mlp[0].out_features if blocks else 0
    per_block = 2 * n * d * 3 * d + 2 * 2 * n * n * d + 2 * n * d * d + 2 * 2 * n * d * hidden
    embed = 2 * (s // model.patch_size) ** 2 * (model.patch_embed.in_channels * model.patch_size ** 2) * d
    return float(blocks * per_block + embed)


