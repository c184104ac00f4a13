"""Backbone, MLP heads and the two contrastive frameworks (spec §2.5), on tenfold.nets' ViT."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from tenfold.errors import ConfigError
from tenfold.nets.vit import VisionTransformer
from torch import nn

__all__ = ["ARCHS", "PatchMixViT", "build_backbone", "mlp", "Online", "MomentumEncoder", "build_models",
           "ema_update", "momentum_at", "export_backbone", "copy_module"]

# MoCo-v3 sizes: ViT-S has 12 heads (head dim 32), not timm/DeiT's 6 (pitfall 8).
ARCHS = {"vit_tiny": (192, 3), "vit_small": (384, 12), "vit_base": (768, 12)}


class PatchMixViT(VisionTransformer):
    """tenfold ViT with the MoCo-v3 initialisation and DINO-style position-embedding interpolation."""

    def __init__(self, **kw):
        super().__init__(cls_init_std=1e-6, **kw)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                if name.endswith("qkv"):
                    # Q, K and V as three separate D x D matrices: bound sqrt(6 / (D_out/3 + D_in)).
                    bound = math.sqrt(6.0 / (m.weight.shape[0] // 3 + m.weight.shape[1]))
                    nn.init.uniform_(m.weight, -bound, bound)
                else:
                    nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            nn.init.normal_(self.cls_token, std=1e-6)

    def patch_pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        pe = self.pos_embed[:, self.num_prefix:]
        if (gh, gw) == self.grid:
            return pe
        # DINO: bicubic with scale factors (g + 0.1) / g0, the +0.1 avoiding floor errors in the output size.
        g0h, g0w = self.grid
        grid = pe.reshape(1, g0h, g0w, -1).permute(0, 3, 1, 2).float()
        out = F.interpolate(grid, scale_factor=((gh + 0.1) / g0h, (gw + 0.1) / g0w), mode="bicubic",
                            align_corners=False)
        if out.shape[-2:] != (gh, gw):
            out = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        return out.to(pe.dtype).permute(0, 2, 3, 1).reshape(1, gh * gw, -1)

    def cls_feature(self, x: torch.Tensor) -> torch.Tensor:
        """The representation: CLS output after the final LayerNorm, [B, D]."""
        return self.pool(self.encode(self.embed(x)))


def build_backbone(arch: str, patch_size: int, img_size: int, drop_path: float = 0.0, embed_dim: int = 0,
                   depth: int = 12, num_heads: int = 0, mlp_ratio: float = 4.0) -> PatchMixViT:
    if arch not in ARCHS and not (embed_dim and num_heads):
        raise ConfigError(f"model.arch '{arch}' unknown; use one of {sorted(ARCHS)} or set model.embed_dim and "
                          f"model.num_heads for a custom ViT")
    d0, h0 = ARCHS.get(arch, (embed_dim, num_heads))
    return PatchMixViT(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim or d0, depth=depth,
                       num_heads=num_heads or h0, mlp_ratio=mlp_ratio, drop_path=drop_path)


def mlp(num_layers: int, in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """MoCo-v3 head: bias-free Linear -> BN -> ReLU blocks, last Linear -> BN(affine=False) (pitfall 6)."""
    layers: list[nn.Module] = []
    for i in range(num_layers):
        d_in = in_dim if i == 0 else hidden
        d_out = out_dim if i == num_layers - 1 else hidden
        layers.append(nn.Linear(d_in, d_out, bias=False))
        if i < num_layers - 1:
            layers += [nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
        else:
            layers.append(nn.BatchNorm1d(d_out, affine=False))
    return nn.Sequential(*layers)


class Online(nn.Module):
    """f -> g -> h. One forward takes several batches (one DDP forward per step); the backbone runs them
    concatenated when they share a resolution (it has no batch statistics), the BN heads run per batch,
    so BN statistics are per call exactly as in the reference (§2.5)."""

    def __init__(self, backbone: PatchMixViT, projector: nn.Module, predictor: nn.Module):
        super().__init__()
        self.backbone, self.projector, self.predictor = backbone, projector, predictor

    def features(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out: list[torch.Tensor | None] = [None] * len(xs)
        by_size: dict[tuple, list[int]] = {}
        for i, x in enumerate(xs):
            by_size.setdefault(tuple(x.shape[1:]), []).append(i)
        for idx in by_size.values():
            f = self.backbone.cls_feature(torch.cat([xs[i] for i in idx]))
            for i, part in zip(idx, f.split([xs[i].shape[0] for i in idx])):
                out[i] = part
        return out

    def forward(self, xs: list[torch.Tensor], keys: bool = False) -> list[torch.Tensor]:
        """Queries h(g(f(x))) per batch; with keys=True, g(f(x)) (the no-momentum key path)."""
        feats = self.features(xs)
        if keys:
            return [self.projector(f) for f in feats]
        return [self.predictor(self.projector(f)) for f in feats]


def copy_module(m: nn.Module) -> nn.Module:
    """copy.deepcopy with parameters and buffers copied by tensor ops (detach().clone()): the same copy, and it
    also works on fake CUDA tensors (tenfold.testing.fake_cuda), whose storages cannot be deep-copied."""
    memo = {}
    for t in list(m.parameters()) + list(m.buffers()):
        c = t.detach().clone()
        memo[id(t)] = nn.Parameter(c, t.requires_grad) if isinstance(t, nn.Parameter) else c
    return copy.deepcopy(m, memo)


class MomentumEncoder(nn.Module):
    """f_m -> g_m: EMA copies of the online backbone and projector, no predictor, no drop-path, no grads."""

    def __init__(self, online: Online):
        super().__init__()
        self.backbone = copy_module(online.backbone)
        for blk in self.backbone.blocks:
            blk.drop_path.p = 0.0
        self.projector = copy_module(online.projector)
        for p in self.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.projector(f) for f in Online.features(self, xs)]


@torch.no_grad()
def ema_update(momentum: MomentumEncoder, online: Online, mu: float) -> None:
    """theta_m <- mu theta_m + (1 - mu) theta, over backbone and projector parameters (buffers copied)."""
    pairs = [(momentum.backbone, online.backbone), (momentum.projector, online.projector)]
    m_params = [p for a, _ in pairs for p in a.parameters()]
    o_params = [p for _, b in pairs for p in b.parameters()]
    torch._foreach_mul_(m_params, mu)
    torch._foreach_add_(m_params, [p.detach() for p in o_params], alpha=1.0 - mu)


def momentum_at(step: int, iters_per_epoch: int, total_epochs: float, mu0: float,
                faithful_per_epoch: bool = False) -> float:
    """mu(t) = 1 - (1 - mu0)(1 + cos(pi t / E)) / 2 with t = step / iters_per_epoch (per iteration).

    faithful_per_epoch reproduces reference quirk Q1: t = epoch + 1/iters_per_epoch, so mu moves once per epoch.
    """
    if faithful_per_epoch:
        t = step // iters_per_epoch + 1.0 / iters_per_epoch
    else:
        t = step / iters_per_epoch
    return 1.0 - (1.0 - mu0) * (math.cos(math.pi * min(t / total_epochs, 1.0)) + 1.0) / 2.0


def build_models(mcfg, framework: str) -> tuple[Online, MomentumEncoder | None]:
    backbone = build_backbone(mcfg.arch, mcfg.patch_size, mcfg.img_size, mcfg.drop_path, mcfg.embed_dim,
                              mcfg.depth, mcfg.num_heads, mcfg.mlp_ratio)
    d = backbone.num_features
    online = Online(backbone, mlp(mcfg.proj_layers, d, mcfg.proj_hidden, mcfg.proj_dim),
                    mlp(mcfg.pred_layers, mcfg.proj_dim, mcfg.pred_hidden, mcfg.proj_dim))
    return online, (MomentumEncoder(online) if framework == "momentum" else None)


def export_backbone(backbone: nn.Module, timm_names: bool = True) -> dict:
    """Backbone state_dict for downstream use; timm_names renames to timm's ViT keys (patch_embed.proj, fc1...)."""
    sd = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items() if not k.startswith("head.")}
    if not timm_names:
        return sd
    out = {}
    for k, v in sd.items():
        k2 = k.replace("patch_embed.", "patch_embed.proj.").replace(".mlp.0.", ".mlp.fc1.").replace(".mlp.2.",
                                                                                                    ".mlp.fc2.")
        out[k2] = v
    return out
