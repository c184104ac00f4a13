"""The MGC module: ViT base/momentum encoders plus one projector, predictor and momentum projector
per granularity (spec 2.3), and the forward pass of spec 2.4 / 2.6."""
from __future__ import annotations

import torch
from tenfold import distributed
from tenfold.nets import VisionTransformer
from torch import nn

from .config import LossConfig, ModelConfig
from .method import duplicate_mask, ema_update, gather_cells, info_nce, multigrain_loss, pool_cells

__all__ = ["build_vit", "mlp_head", "MGC", "patch_tokens"]


def build_vit(cfg: ModelConfig, drop_path: float | None = None) -> VisionTransformer:
    """ViT with qkv bias, LN eps 1e-6, CLS token (trunc-normal 0.02), frozen 2-D sin-cos positions."""
    vit = VisionTransformer(img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim,
                            depth=cfg.depth, num_heads=cfg.num_heads, qkv_bias=True,
                            drop_path=cfg.drop_path if drop_path is None else drop_path, pos_embed="sincos",
                            cls_token=True, num_classes=0, norm_eps=1e-6, cls_init_std=0.02)
    vit.patch_embed.reset_parameters()  # the reference keeps PyTorch's default conv init (the spine uses xavier)
    return vit


def patch_tokens(vit: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """Final-LayerNorm'd patch tokens [B, G*G, D]; the CLS output is dropped (never used by the loss)."""
    return vit.encode(vit.embed(x))[:, vit.num_prefix:]


def mlp_head(in_dim: int, hidden: int, out_dim: int, layers: int) -> nn.Sequential:
    """Linear(no bias)-BN-ReLU blocks, then Linear(no bias)-BN(affine=False) (projector: 3, predictor: 2)."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
        d = hidden
    mods += [nn.Linear(d, out_dim, bias=False), nn.BatchNorm1d(out_dim, affine=False)]
    head = nn.Sequential(*mods)
    for m in head.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
    return head


def _redraw_linears(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _copy_head(head: nn.Sequential, cfg: ModelConfig) -> nn.Sequential:
    """A copy of a projector (what copy.deepcopy gave, which fake CUDA tensors refuse): built under a forked RNG,
    so the global random stream, hence every later initialisation, is the same as with deepcopy."""
    with torch.random.fork_rng(devices=[]):
        twin = mlp_head(cfg.embed_dim, cfg.proj_hidden, cfg.out_dim, 3)
    twin.load_state_dict(head.state_dict())
    return twin.to(next(head.parameters()).device)


class MGC(nn.Module):
    def __init__(self, model: ModelConfig, loss: LossConfig | None = None):
        super().__init__()
        self.cfg, self.loss_cfg = model, loss or LossConfig()
        self.grid = model.grid
        self.levels, self.pairs = list(model.levels), list(model.pairs)
        self.base_encoder = build_vit(model)
        self.momentum_encoder = build_vit(model, drop_path=0.0)
        self.projectors = nn.ModuleList(mlp_head(model.embed_dim, model.proj_hidden, model.out_dim, 3)
                                        for _ in self.levels)
        self.predictors = nn.ModuleList(mlp_head(model.out_dim, model.pred_hidden, model.out_dim, 2)
                                        for _ in self.levels)
        self.momentum_projectors = nn.ModuleList(_copy_head(p, model) for p in self.projectors)
        self.momentum_encoder.load_state_dict(self.base_encoder.state_dict())
        if model.momentum_init == "official":
            # the reference copies base -> momentum and then re-initialises every Linear of the whole
            # wrapper, so momentum Linear weights start as independent draws (spec 2.4, init quirk)
            _redraw_linears(self)
        for p in list(self.momentum_encoder.parameters()) + list(self.momentum_projectors.parameters()):
            p.requires_grad_(False)

    # ---- pieces -------------------------------------------------------------------------------
    @torch.no_grad()
    def momentum_update(self, m: float) -> None:
        """EMA over the encoder and the projectors (never the predictors)."""
        ema_update(self.momentum_encoder, self.base_encoder, m)
        ema_update(self.momentum_projectors, self.projectors, m)

    def queries(self, tokens: torch.Tensor, idx: list[torch.Tensor]) -> list[torch.Tensor]:
        """Pool the backbone tokens, then project (pitfall 4): h_c(g_c(gather(pool_c(F), idx_c)))."""
        return [self.predictors[i](self.projectors[i](gather_cells(pool_cells(tokens, self.grid, c), idx[i])))
                for i, c in enumerate(self.levels)]

    @torch.no_grad()
    def keys(self, tokens: torch.Tensor, idx: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.momentum_projectors[i](gather_cells(pool_cells(tokens, self.grid, c), idx[i]))
                for i, c in enumerate(self.levels)]

    # ---- one step -----------------------------------------------------------------------------
    def forward(self, x1: torch.Tensor, x2: torch.Tensor, corr: list, m: float | None) -> tuple[torch.Tensor, dict]:
        """x1, x2 [B, 3, S, S]; corr[c] = (idx1 [B, K_c], idx2 [B, K_c], w [B, K_c]); m = EMA momentum
        (None skips the update, e.g. for evaluation). Returns the total loss and per-level losses."""
        idx1 = [c[0] for c in corr]
        idx2 = [c[1] for c in corr]
        # the projector runs on each view separately: BN statistics are per view (pitfall 7)
        q1 = self.queries(patch_tokens(self.base_encoder, x1), idx1)
        q2 = self.queries(patch_tokens(self.base_encoder, x2), idx2)
        with torch.no_grad():
            if m is not None:
                self.momentum_update(m)  # before the momentum forward (pitfall 8)
            z1 = self.keys(patch_tokens(self.momentum_encoder, x1), idx1)
            z2 = self.keys(patch_tokens(self.momentum_encoder, x2), idx2)
        offset_rank = distributed.rank()
        per_level, info = [], {}
        lc = self.loss_cfg
        for i, c in enumerate(self.levels):
            w = corr[i][2]
            n_local = q1[i].shape[0]
            offset = offset_rank * n_local
            k1, k2 = distributed.all_gather_nograd(z1[i]), distributed.all_gather_nograd(z2[i])
            mask = duplicate_mask(idx1[i], idx2[i]) if lc.mask_duplicates else None
            l_c = (info_nce(q1[i], k2, lc.temperature, w, lc.pair_weighting, offset, mask)
                   + info_nce(q2[i], k1, lc.temperature, w, lc.pair_weighting, offset, mask))
            per_level.append(l_c)
            info[f"loss_c{c}"] = l_c.detach()
        return multigrain_loss(per_level, self.pairs), info

    def backbone(self, which: str = "base") -> VisionTransformer:
        return self.base_encoder if which == "base" else self.momentum_encoder
