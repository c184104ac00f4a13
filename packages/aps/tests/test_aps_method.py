"""Model, loss and schedule (spec §7(a) 7–16 and pitfalls 5–9, 14–16)."""
from __future__ import annotations

import math

import pytest
import torch
from aps.config import ModelConfig, OptimConfig
from aps.method import aps_loss, contrastive_loss, lr_factor
from aps.model import ARCHS, APSModel, APSViT, build_backbone, finetune_state_from_pretrain, mlp_head
from aps.train import build_optimizer, pretrain_step
from torch import nn

SMALL = ModelConfig(img_size=32, patch_size=4, embed_dim=48, depth=2, num_heads=3, hidden_dim=64, out_dim=32)


def _model(seed=0):
    torch.manual_seed(seed)
    return APSModel(build_backbone(SMALL), SMALL.hidden_dim, SMALL.out_dim)


def test_gather_equivalence_and_order_independence():
    torch.manual_seed(0)
    vit = build_backbone(SMALL).eval()
    x = torch.randn(3, 3, 32, 32)
    full = vit.features(x)
    idx = torch.arange(64).expand(3, -1)
    torch.testing.assert_close(vit.features(x, idx), full, atol=1e-5, rtol=0)
    perm = torch.stack([torch.randperm(64) for _ in range(3)])
    torch.testing.assert_close(vit.features(x, perm), full, atol=1e-5, rtol=0)
    # the fine-tune classifier (all tokens + head) sees the same CLS feature
    clf = build_backbone(SMALL, num_classes=10).eval()
    clf.load_state_dict(finetune_state_from_pretrain(vit.state_dict()), strict=False)
    torch.testing.assert_close(clf(x, return_features=True)[1], full, atol=1e-5, rtol=0)


def test_position_added_before_gather_and_not_to_cls():
    """Pitfall 6: pos has one row per patch (none for CLS) and travels with its token through the gather."""
    torch.manual_seed(0)
    vit = build_backbone(SMALL).eval()
    assert vit.pos_embed.shape == (1, 64, 48)
    x = torch.randn(2, 3, 32, 32)
    idx = torch.tensor([[5, 9], [0, 63]])
    tokens = vit.patch_embed(x).flatten(2).transpose(1, 2)
    expected = torch.stack([tokens[b, idx[b]] + vit.pos_embed[0, idx[b]] for b in range(2)])
    from tenfold.nets import gather_tokens
    torch.testing.assert_close(gather_tokens(vit.embed(x), idx), expected)
    with torch.no_grad():  # CLS gets no position: changing pos leaves a CLS-only sequence unchanged
        empty = torch.zeros(2, 0, 48)
        a = vit.encode(empty)
        vit.pos_embed.add_(1.0)
        torch.testing.assert_close(vit.encode(empty), a)


def test_shapes():
    m = _model()
    x = torch.randn(4, 3, 32, 32)
    idx = torch.stack([torch.randperm(64)[:16] for _ in range(4)])
    assert m.backbone.features(x, idx).shape == (4, 48)
    p, z = m.branch(x, idx)
    assert p.shape == z.shape == (4, 32)


@pytest.mark.parametrize("arch,expected", [("tiny", 5_383_680), ("small", 21_384_192), ("base", 85_235_712)])
def test_backbone_parameter_counts(arch, expected):
    d, depth, h = ARCHS[arch]
    with torch.device("meta"):
        vit = APSViT(32, 2, d, depth, h, init="timm")
    assert sum(p.numel() for p in vit.parameters()) == expected


def test_head_parameter_counts():
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(mlp_head(128)) == 395_264
    for d in (192, 384, 768):
        assert count(mlp_head(d)) == 512 * d + 329_728
    head = mlp_head(8)
    assert all(m.bias is None for m in head if isinstance(m, nn.Linear))
    assert not head[-1].affine  # ends in BN(affine=False)


def test_pytorch_default_init_and_no_qkv_bias():
    """Pitfall 9: Linear/Conv keep kaiming-uniform(a=√5) init (|w| ≤ 1/√fan_in, biases non-zero), qkv no bias."""
    torch.manual_seed(0)
    vit = build_backbone(ModelConfig(patch_size=4, embed_dim=96, depth=2, num_heads=3))
    blk = vit.blocks[0]
    assert blk.attn.qkv.bias is None
    fc = blk.mlp[0]
    bound = 1 / math.sqrt(fc.in_features)
    w = fc.weight.detach()
    assert w.abs().max().item() <= bound and w.abs().max().item() > 0.9 * bound
    assert fc.bias.detach().abs().max().item() > 0
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)  # timm would give 0.02
    assert blk.norm1.eps == 1e-5


def test_pretrain_to_finetune_mapping_leaves_only_head_missing():
    m = _model()
    clf = build_backbone(SMALL, num_classes=10)
    res = clf.load_state_dict(finetune_state_from_pretrain(m.state_dict()), strict=False)
    assert set(res.missing_keys) == {"head.weight", "head.bias"} and res.unexpected_keys == []


def test_loss_hand_cases():
    eye = torch.eye(2)
    loss, pos = contrastive_loss(eye, eye, 0.1)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-10)), rel=1e-3)  # 4.5399e-5 (fp32 CE)
    assert pos.item() == pytest.approx(1.0)
    swap = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert contrastive_loss(eye, swap, 0.1)[0].item() == pytest.approx(math.log1p(math.exp(10)), rel=1e-6)
    q, k = torch.randn(8, 5), torch.randn(8, 5)
    torch.testing.assert_close(contrastive_loss(3 * q, k)[0], contrastive_loss(q, 3 * k)[0])


def test_loss_matches_float64_equation():
    torch.manual_seed(0)
    q, k = torch.randn(6, 4), torch.randn(6, 4)
    qd, kd = q.double(), k.double()
    qd, kd = qd / qd.norm(dim=1, keepdim=True), kd / kd.norm(dim=1, keepdim=True)
    s = qd @ kd.T / 0.1
    expected = (-(s.diag() - s.logsumexp(1))).mean()
    assert contrastive_loss(q, k, 0.1)[0].item() == pytest.approx(expected.item(), rel=1e-5)
    p1, p2, z1, z2 = (torch.randn(6, 4) for _ in range(4))
    total = aps_loss(p1, p2, z1, z2, 0.1)[0]
    parts = contrastive_loss(p1, z2, 0.1)[0] + contrastive_loss(p2, z1, 0.1)[0]
    torch.testing.assert_close(total, parts)  # plain sum, no 2τ factor (pitfall 7)


def test_symmetry_of_total_loss():
    m = _model().train()
    x1, x2 = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)
    i1 = torch.stack([torch.randperm(64)[:16] for _ in range(8)])
    i2 = torch.stack([torch.randperm(64)[:16] for _ in range(8)])
    a = aps_loss(*m(x1, i1, x2, i2))[0]
    b = aps_loss(*m(x2, i2, x1, i1))[0]
    torch.testing.assert_close(a, b)


def test_views_run_in_separate_forward_calls():
    """Pitfall 8: BN statistics per view; a single concatenated pass would give different outputs."""
    m = _model().train()
    x1, x2 = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32) + 2
    p1, p2, z1, z2 = m(x1, None, x2, None)
    p_sep, _ = m.branch(x1, None)
    torch.testing.assert_close(p1, p_sep)
    p_cat, _ = m.branch(torch.cat([x1, x2]), None)
    assert not torch.allclose(p_cat[:8], p1, atol=1e-3)


def test_stop_gradient_and_gradient_flow():
    m = _model().train()
    x1, x2 = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)
    i1 = torch.stack([torch.randperm(64)[:16] for _ in range(8)])
    i2 = torch.stack([torch.randperm(64)[:16] for _ in range(8)])
    p1, p2, z1, z2 = m(x1, i1, x2, i2)
    seen = []
    import aps.method as method

    real = method.contrastive_loss
    method.contrastive_loss = lambda q, k, tau=0.1: (seen.append(k.requires_grad), real(q, k, tau))[1]
    try:
        loss, _ = method.aps_loss(p1, p2, z1, z2)
    finally:
        method.contrastive_loss = real
    assert seen == [False, False]
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    g_sg = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    aps_loss(*m(x1, i1, x2, i2), stop_gradient=False)[0].backward()
    diff = max((p.grad - g_sg[n]).abs().max().item() for n, p in m.named_parameters())
    assert diff > 1e-6


def test_initial_loss_near_two_log_n():
    torch.manual_seed(1)
    m = APSModel(build_backbone(SMALL), 512, 128).train()  # spec head widths: random cosines ~ 1/√128
    x1, x2 = torch.randn(64, 3, 32, 32), torch.randn(64, 3, 32, 32)
    i1 = torch.stack([torch.randperm(64)[:16] for _ in range(64)])
    i2 = torch.stack([torch.randperm(64)[:16] for _ in range(64)])
    with torch.no_grad():
        loss = aps_loss(*m(x1, i1, x2, i2), tau=0.1)[0].item()
    # Spec: ≈ 2·ln 64 = 8.318. Random unit vectors in d = 128 have cosine variance 1/d, which adds
    # σ²/2 = 1/(2τ²d) = 0.39 per direction: expected 2·(ln 64 + 0.39) = 9.10. Observed 8.95 (seed 1).
    expected = 2 * (math.log(64) + 1 / (2 * 0.1**2 * 128))
    assert abs(loss - expected) < 0.6 and loss > 2 * math.log(64) - 0.6


def test_k_optimizer_steps_per_batch():
    """Pitfall 5: one loader batch = K = 4 AdamW steps."""
    m = _model()
    opt = build_optimizer(m, OptimConfig(batch_size=8))
    idx = torch.stack([torch.randperm(64)[:64].view(4, 16) for _ in range(8)])
    batch = ((torch.randn(8, 3, 32, 32), idx, torch.randn(8, 3, 32, 32), idx.flip(-1)), torch.zeros(8))
    out = pretrain_step(m, opt, batch, device=torch.device("cpu"), tau=0.1, full_tokens=False)
    steps = {int(s["step"]) for s in opt.state.values()}
    assert steps == {4} and torch.isfinite(out["loss"])
    pretrain_step(m, opt, batch, device=torch.device("cpu"), tau=0.1, full_tokens=True)
    assert {int(s["step"]) for s in opt.state.values()} == {5}  # full-token baseline: 1 step per batch


def test_weight_decay_on_all_parameters_by_default():
    m = _model()
    opt = build_optimizer(m, OptimConfig())
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 0.05
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 512 / 256)
    opt = build_optimizer(m, OptimConfig(wd_exclude_norm_bias=True))
    no_wd = opt.param_groups[1]["params"]
    assert opt.param_groups[1]["weight_decay"] == 0.0 and all(p.ndim <= 1 or p.shape[0] == 1 for p in no_wd)


@pytest.mark.parametrize("e,expected", [(0, 0.05), (1, 0.1), (19, 0.9996521), (800, 0.5), (1599, 9.64e-7)])
def test_lr_factor(e, expected):
    assert lr_factor(e, 20, 1600) == pytest.approx(expected, rel=1e-3)


def test_official_key_layout_round_trip():
    """Official names (patchify, pos_embedding [M,1,D], transformer.i.mlp.fc1, layer_norm, base_encoder.fc)."""
    from aps.official import from_official, to_official

    m = _model()
    off = to_official(m.state_dict())
    assert "base_encoder.patchify.weight" in off and off["base_encoder.pos_embedding"].shape == (64, 1, 48)
    assert "base_encoder.transformer.0.mlp.fc1.weight" in off and "base_encoder.fc.0.weight" in off
    assert "predictor.0.weight" in off and not any(k.startswith("backbone.") for k in off)
    back = from_official(off)
    assert back.keys() == m.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in m.state_dict().items())
    clf = build_backbone(SMALL, num_classes=10)
    res = clf.load_state_dict(finetune_state_from_pretrain(off), strict=False)  # official pre-train -> fine-tune
    assert set(res.missing_keys) == {"head.weight", "head.bias"} and res.unexpected_keys == []
    torch.testing.assert_close(clf.pos_embed, m.backbone.pos_embed)
