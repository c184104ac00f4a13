"""Spec 7a.5 (loss at init), 7a.6 symmetry, 7a.7 gradient flow, 7a.8 EMA timing, 7a.11 shapes,
pitfalls 4, 7 (BN per view), 8, 9, 10, 12 and the momentum-init switch."""
import math
import random

import pytest
import torch
from mgc.augment import apply_photometric, hsv_to_rgb, rgb_to_hsv, sample_photometric
from mgc.config import AugmentConfig, LossConfig, ModelConfig, ViewConfig
from mgc.model import MGC, build_vit, patch_tokens
from mgc.views import TwoViewBoxTransform, render
from torch.utils.data import default_collate

TINY = dict(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=4, levels=[1, 2, 4], pairs=[10, 10, 2],
            proj_hidden=64, pred_hidden=64, out_dim=32)


def _batch(mc, B=8, seed=0, dense=False):
    tr = TwoViewBoxTransform(mc, ViewConfig(stride_rules=None if dense else
                                            [[7, 5, 1, 4, 1, 3], [4, 2, 1, 2, 1, 2], [1, 1, 1, 1, 1, 1]]))
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (B, 3, 48, 40), generator=g, dtype=torch.uint8)
    b = default_collate([tr(imgs[i], random.Random(seed * 100 + i)) for i in range(B)])
    x1, x2 = render(b, tr.augment, torch.device("cpu"))
    return x1, x2, b["corr"]


def _model(**kw):
    torch.manual_seed(0)
    mc = ModelConfig(**{**TINY, **kw})
    return MGC(mc, LossConfig()), mc


def test_loss_at_init_is_about_two_log_n_per_level():
    """Spec: each direction starts at ~ln(N_keys). With random unit vectors in d dims the logits have
    variance 1/(T^2 d), which adds ~1/(2 T^2 d) to the log-sum-exp (0.39 at d = 128, T = 0.1)."""
    model, mc = _model(drop_path=0.0, out_dim=128)
    B = 32
    x1, x2, corr = _batch(mc, B)
    loss, info = model(x1, x2, corr, 0.996)
    extra = 1 / (2 * 0.1 ** 2 * 128)
    per = [2 * (math.log(B * k) + extra) for k in mc.pairs]
    for c, p in zip(mc.levels, per):
        assert info[f"loss_c{c}"].item() == pytest.approx(p, rel=0.1)
    assert loss.item() == pytest.approx(sum(k * p for k, p in zip(mc.pairs, per)) / sum(mc.pairs), rel=0.1)


def test_view_swap_symmetry():
    model, mc = _model(drop_path=0.0)
    x1, x2, corr = _batch(mc)
    swapped = [(i2, i1, w) for i1, i2, w in corr]
    a, _ = model(x1, x2, corr, 1.0)
    b, _ = model(x2, x1, swapped, 1.0)
    assert a.item() == pytest.approx(b.item(), rel=1e-5)


def test_gradient_flow_and_frozen_parts():
    model, mc = _model()
    x1, x2, corr = _batch(mc)
    seen = {}

    def grab(m, i, o):
        o.register_hook(lambda g: seen.setdefault("grad", g))
    h = model.base_encoder.norm.register_forward_hook(grab)
    loss, _ = model(x1, x2, corr, 0.99)
    loss.backward()
    h.remove()
    assert torch.all(seen["grad"][:, 0] == 0)  # the CLS output is never read by the loss
    for name, p in model.base_encoder.named_parameters():
        if name == "pos_embed":
            assert not p.requires_grad and p.grad is None  # frozen sin-cos
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name  # includes the CLS parameter
    for mod in (model.projectors, model.predictors):
        for name, p in mod.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    for p in list(model.momentum_encoder.parameters()) + list(model.momentum_projectors.parameters()):
        assert p.grad is None and not p.requires_grad


def test_ema_runs_before_momentum_forward_and_skips_predictors():
    model, mc = _model()
    with torch.no_grad():
        for p in model.momentum_encoder.parameters():
            p.add_(1.0)
    pred_before = [p.clone() for p in model.predictors.parameters()]
    checks = []

    def hook(mod, inp):
        checks.append(all(torch.equal(a, b) for a, b in zip(model.momentum_encoder.parameters(),
                                                            model.base_encoder.parameters())))
    h = model.momentum_encoder.blocks[0].register_forward_pre_hook(hook)
    x1, x2, corr = _batch(mc)
    model(x1, x2, corr, 0.0)  # m = 0: momentum := base, before it runs
    h.remove()
    assert checks == [True, True]
    for a, b in zip(model.momentum_projectors.parameters(), model.projectors.parameters()):
        assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(model.predictors.parameters(), pred_before))


def test_projector_bn_statistics_are_per_view():
    """Pitfall 7: each projector call sees one view's B*K rows, never both views batched."""
    model, mc = _model()
    rows = []
    hooks = [p[0].register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0])) for p in model.projectors]
    x1, x2, corr = _batch(mc, B=4)
    model(x1, x2, corr, 0.99)
    for h in hooks:
        h.remove()
    assert rows == [4 * 10, 4 * 10, 4 * 2] * 2


def test_separate_heads_per_level_and_no_momentum_predictor():
    model, _ = _model()
    ids = {id(p) for h in model.projectors for p in h.parameters()}
    assert len(ids) == sum(1 for h in model.projectors for _ in h.parameters())
    assert not any("momentum_predictor" in n for n, _ in model.named_modules())


def test_momentum_init_switch():
    model, _ = _model()
    for a, b in zip(model.momentum_encoder.parameters(), model.base_encoder.parameters()):
        assert torch.equal(a, b)
    model, _ = _model(momentum_init="official")
    w_m = model.momentum_encoder.blocks[0].attn.qkv.weight
    assert not torch.equal(w_m, model.base_encoder.blocks[0].attn.qkv.weight)  # independent draws
    assert torch.equal(model.momentum_encoder.patch_embed.weight, model.base_encoder.patch_embed.weight)
    assert torch.equal(model.momentum_encoder.cls_token, model.base_encoder.cls_token)
    assert not torch.equal(model.momentum_projectors[0][0].weight, model.projectors[0][0].weight)


def test_vit_details_match_spec():
    mc = ModelConfig()
    assert (mc.embed_dim, mc.depth, mc.num_heads, mc.drop_path) == (384, 12, 8, 0.05)
    vit = build_vit(ModelConfig(depth=2))
    assert vit.blocks[0].attn.num_heads == 8 and vit.blocks[0].attn.qkv.bias is not None
    assert vit.norm.eps == 1e-6 and vit.blocks[0].norm1.eps == 1e-6
    assert not vit.pos_embed.requires_grad and torch.all(vit.pos_embed[0, 0] == 0)
    assert build_vit(ModelConfig(depth=2), drop_path=0.0).blocks[-1].drop_path.p == 0.0
    assert vit.blocks[-1].drop_path.p == pytest.approx(0.05)
    # patch embed keeps PyTorch's default conv init: uniform within 1/sqrt(fan_in) (xavier would reach 0.072)
    fan_in = 3 * 16 * 16
    assert vit.patch_embed.weight.abs().max() <= 1 / math.sqrt(fan_in)
    assert vit.patch_embed.weight.abs().max() > 0.9 / math.sqrt(fan_in)


def test_default_head_sizes():
    """Pitfall 12: projector ~18.9M, predictor ~1.05M parameters at the paper's widths."""
    from mgc.model import mlp_head
    proj = mlp_head(384, 4096, 128, 3)
    pred = mlp_head(128, 4096, 128, 2)
    assert sum(p.numel() for p in proj.parameters()) == pytest.approx(18.9e6, rel=0.01)
    assert sum(p.numel() for p in pred.parameters()) == pytest.approx(1.05e6, rel=0.01)
    assert not proj[-1].affine and not pred[-1].affine


def test_shapes_vit_small_224():
    torch.manual_seed(0)
    mc = ModelConfig(proj_hidden=256, pred_hidden=256)  # ViT-S/16, 8 heads; narrow heads keep the test light
    model = MGC(mc)
    x = torch.randn(2, 3, 224, 224)
    enc = model.base_encoder
    with torch.no_grad():
        full = enc.encode(enc.embed(x))
        assert full.shape == (2, 197, 384)
        tok = full[:, 1:]
        from mgc.method import pool_cells
        assert [pool_cells(tok, 14, c).shape[1] for c in (1, 2, 7)] == [196, 49, 4]
        idx = [torch.zeros(2, k, dtype=torch.long) for k in mc.pairs]
        q = model.queries(patch_tokens(enc, x), idx)
    assert [tuple(t.shape) for t in q] == [(20, 128), (20, 128), (4, 128)]


def test_augmentation_is_asymmetric():
    cfg = AugmentConfig()
    rng = random.Random(0)
    p1 = torch.stack([sample_photometric(cfg, 0, rng) for _ in range(2000)])
    p2 = torch.stack([sample_photometric(cfg, 1, rng) for _ in range(2000)])
    assert p1[:, 10].mean() == 1.0 and p2[:, 10].mean().item() == pytest.approx(0.1, abs=0.03)  # blur
    assert p1[:, 12].mean() == 0.0 and p2[:, 12].mean().item() == pytest.approx(0.2, abs=0.03)  # solarize
    assert p1[:, 0].mean().item() == pytest.approx(0.8, abs=0.03)  # colour jitter
    assert ViewConfig().scale == (0.2, 1.0)


def test_photometric_ops_by_hand():
    cfg = AugmentConfig(mean=(0, 0, 0), std=(1, 1, 1))
    x = torch.rand(3, 3, 8, 8)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    p = torch.zeros(3, 13)
    p[:, 5:9] = torch.arange(4.0)
    p[0, 12] = 1  # solarize image 0 only
    out = apply_photometric(x.clone(), p, cfg)
    assert torch.allclose(out[0], torch.where(x[0] >= 128 / 255, 1 - x[0], x[0]))
    assert torch.allclose(out[1:], x[1:])
    p = torch.zeros(1, 13)
    p[0, :5] = torch.tensor([1, 0.5, 1, 1, 0])  # brightness 0.5 only
    p[0, 5:9] = torch.arange(4.0)
    assert torch.allclose(apply_photometric(x[:1].clone(), p, cfg), x[:1] * 0.5)
