"""Spec §7(a) items 2, 4, 8, 10-13: taps on the real architectures, gradient flow, best-iterate
selection, the synthesizer smoke test and the GAN baselines, all with the 16x16 toy teacher."""
import math

import pytest
import torch
from cmi.config import SynthConfig
from cmi.hooks import TeacherTaps, feature_dim
from cmi.models import ToyNet
from cmi.pool import ImagePool
from cmi.synthesis import CMISynthesizer, DeepInvSynthesizer, GenerativeSynthesizer
from tenfold import nets


def _cfg(**kw):
    base = dict(batch_size=8, g_steps=3, lr_g=1e-2, nz=32, ngf=16, bank_size=16, n_neg=8, head_dim=16)
    base.update(kw)
    return SynthConfig(**base)


def _cmi(teacher, norm, student=None, **kw):
    return CMISynthesizer(teacher, student, 4, _cfg(**kw), norm, "cpu", img_size=16)


# 2. feature taps ------------------------------------------------------------------------------
@pytest.mark.parametrize("arch,n_bn,dim", [("wrn40_2", 37, 2704), ("vgg11_bn", 8, 2752), ("resnet34", None, 512)])
def test_feature_taps_dims(arch, n_bn, dim):
    model = nets.create(arch, 10).eval()
    taps = TeacherTaps(model, None, arch)
    if n_bn is not None:
        assert len(taps.bn_layers) == n_bn and len(taps.feature_layers) == n_bn
    else:
        assert taps.feature_layers == ["layer1", "layer2", "layer3", "layer4"]
    assert feature_dim(model, taps) == dim


def test_instance_mean_is_spatial_mean_of_bn_input():
    net = ToyNet(4, 3).eval()
    taps = TeacherTaps(net, ["features.4"])
    seen = {}

    def grab(m, i, o):
        seen["a"] = i[0].detach().clone()
    net.features[4].register_forward_hook(grab)
    net(torch.rand(5, 3, 16, 16))
    f = taps.features()
    assert f.shape == (5, 8)
    assert torch.allclose(f, seen["a"].mean((2, 3)), atol=1e-6)


def test_user_feature_layer_list_and_bad_name():
    net = ToyNet(4, 3).eval()
    taps = TeacherTaps(net, ["features.1", "features.7"])
    net(torch.rand(2, 3, 16, 16))
    assert taps.features().shape == (2, 4 + 16)
    from tenfold.errors import ConfigError
    with pytest.raises(ConfigError, match="not a module"):
        TeacherTaps(net, ["features.99"])


# 4. gradient flow ------------------------------------------------------------------------------
def test_gradient_flow_contrastive_only(toy_teacher, toy_norm):
    torch.manual_seed(0)
    syn = _cmi(toy_teacher, toy_norm, bn=0.0, oh=0.0, adv=0.0)
    syn.bank.add(torch.randn(8, 2 * syn.feat_dim))
    z = torch.randn(8, 32, requires_grad=True)
    x = syn.generator(z)
    terms = syn.losses(x, torch.zeros(8, dtype=torch.long))
    assert terms["cached"] is not None and not terms["cached"].requires_grad  # bank rows are constants
    assert terms["k"].requires_grad is False  # stop-gradient on the keys
    terms["loss"].backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in syn.generator.l1.parameters())
    assert syn.head.net[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in toy_teacher.parameters())


def test_teacher_and_student_untouched_by_synthesize(toy_teacher, toy_norm):
    student = ToyNet(8, 4).train()
    t_before = {k: v.clone() for k, v in toy_teacher.state_dict().items()}
    s_before = {k: v.clone() for k, v in student.state_dict().items()}
    syn = _cmi(toy_teacher, toy_norm, student=student)
    syn.synthesize()
    assert all(torch.equal(v, toy_teacher.state_dict()[k]) for k, v in t_before.items())
    # student in eval() during synthesis: BN running stats unpolluted, no grads, mode restored
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in s_before.items())
    assert all(p.grad is None for p in student.parameters()) and student.training
    assert all(p.requires_grad for p in student.parameters())


def test_generator_reset_every_round(toy_teacher, toy_norm):
    syn = _cmi(toy_teacher, toy_norm)
    starts = []
    orig = syn.generator.reset

    def spy():
        orig()
        starts.append(syn.generator.l1.weight.detach().clone())
    syn.generator.reset = spy
    head_opt = syn.head_opt
    syn.synthesize()
    syn.synthesize()
    assert len(starts) == 2 and not torch.equal(starts[0], starts[1])
    assert syn.head_opt is head_opt and len(head_opt.state) > 0  # head + its Adam persist


# 10. best-iterate selection -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["cmi", "deepinv"])
def test_best_iterate_not_last(kind, toy_teacher, toy_norm):
    torch.manual_seed(0)
    if kind == "cmi":
        syn = _cmi(toy_teacher, toy_norm)
    else:
        syn = DeepInvSynthesizer(toy_teacher, None, 4, _cfg(cr=0.0, lr_g=0.1), toy_norm, "cpu", img_size=16)
    stub = [5.0, 3.0, 4.0]
    syn.cost_fn = lambda it, loss: stub[it]
    syn.record_iterates = True
    out = syn.synthesize()
    assert out["best_step"] == 1
    best = syn.iterates[1] if kind == "cmi" else toy_norm(syn.iterates[1], reverse=True).clamp(0, 1)
    assert torch.allclose(out["images"], best.clamp(0, 1), atol=1e-6)
    assert not torch.allclose(syn.iterates[1], syn.iterates[2])
    if kind == "cmi":  # the bank stores the best iterate's features
        assert syn.bank.n_updates == 8


def test_deepinv_alias_bug_switch(toy_teacher, toy_norm):
    torch.manual_seed(0)
    syn = DeepInvSynthesizer(toy_teacher, None, 4, _cfg(cr=0.0, lr_g=0.1, alias_best_bug=True), toy_norm, "cpu",
                             img_size=16)
    syn.cost_fn = lambda it, loss: [5.0, 3.0, 4.0][it]
    syn.record_iterates = True
    out = syn.synthesize()
    # the reference bug: "best" is a view of the live pixels, updated after selection
    assert out["best_step"] == 1
    assert not torch.allclose(out["best_raw"], syn.iterates[1])


# 11. smoke -------------------------------------------------------------------------------------
def test_synthesizer_smoke(toy_teacher, toy_norm):
    torch.manual_seed(0)
    syn = _cmi(toy_teacher, toy_norm, student=ToyNet(8, 4))
    pool = ImagePool()
    out = syn.synthesize()
    pool.add(out["images"])
    assert len(pool) == 8 and syn.bank.n_updates == 8
    # pitfall 4: the bank holds raw teacher features [f_local || f_global] (2D wide), not head outputs
    assert syn.bank.data.shape == (16, 2 * syn.feat_dim) and syn.feat_dim != syn.cfg.head_dim
    assert math.isfinite(out["syn_loss"])
    batch = next(pool.batches(1, 6, toy_norm, "cpu"))
    assert batch.shape == (6, 3, 16, 16)
    raw = toy_norm(batch, reverse=True)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5 and batch.min() < 0  # normalised


def test_cr_zero_runs_without_head_or_bank(toy_teacher, toy_norm):
    syn = _cmi(toy_teacher, toy_norm, cr=0.0)
    out = syn.synthesize()
    assert out["images"].shape == (8, 3, 16, 16) and syn.bank.n_updates == 0


# 13. GAN baselines -----------------------------------------------------------------------------
@pytest.mark.parametrize("name,kw", [
    ("dafl", dict(adv=0.0, bn=0.0, oh=1.0, act=0.001, balance=20.0)),
    ("zskt", dict(adv=1.0, bn=0.0, oh=0.0)),
    ("dfq", dict(adv=1.0, bn=1.0, oh=1.0, balance=20.0)),
    ("dfad", dict(adv=1.0, bn=0.0, oh=0.0, gan_loss="l1")),
])
def test_gan_baseline_generator_step(name, kw, toy_teacher, toy_norm):
    torch.manual_seed(0)
    cfg = _cfg(cr=0.0, g_steps=1, **kw)
    syn = GenerativeSynthesizer(toy_teacher, ToyNet(8, 4), 4, cfg, toy_norm, "cpu", img_size=16)
    before = syn.generator.l1.weight.clone()
    out = syn.synthesize()
    assert math.isfinite(out["syn_loss"])
    assert not torch.equal(before, syn.generator.l1.weight)
    x = syn.sample(5)
    assert x.shape == (5, 3, 16, 16) and not x.requires_grad


# 12. model zoo --------------------------------------------------------------------------------
@pytest.mark.parametrize("arch,params,feat", [("wrn16_1", 0.175e6, 64), ("wrn40_2", 2.24e6, 128),
                                              ("resnet18", 11.17e6, 512), ("resnet34", 21.28e6, 512),
                                              ("vgg11_bn", 9.23e6, 512)])
def test_model_zoo(arch, params, feat):
    m = nets.create(arch, 10).eval()
    n = sum(p.numel() for p in m.parameters())
    assert abs(n - params) / params < 0.01, n
    logits, f = m(torch.rand(2, 3, 32, 32), return_features=True)
    assert logits.shape == (2, 10) and f.shape == (2, feat)


def test_kd_batches_draw_from_the_whole_growing_pool(toy_norm):
    """Pitfall 9: KD samples every image synthesized so far, not only the latest batch."""
    pool = ImagePool(quantize=False)
    for v in (0.1, 0.5, 0.9):  # three "rounds" with distinguishable constant images
        pool.add(torch.full((8, 3, 16, 16), v))
    seen = set()
    for x in pool.batches(6, 8, toy_norm, "cpu", augment=False):
        seen |= {round(float(v), 1) for v in toy_norm(x, reverse=True)[:, 0, 8, 8]}
    assert seen == {0.1, 0.5, 0.9}
