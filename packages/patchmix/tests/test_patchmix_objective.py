"""The five-term objective and its targets (spec §2.4-2.6) against hand values; Y_oo smoothing (issue #19)."""
import math
from pathlib import Path

import pytest
import torch
from patchmix.objective import patchmix_terms, step_targets, weighted_loss

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TAU = 0.2
A = math.log(math.exp(1 / TAU) + 3)  # log-sum-exp of a logit row [5, 0, 0, 0]


def basis(shift=0, n=4):
    """Rows e_{(i + shift) mod n}: as queries, row i scores 1/tau only against the key e_{i+shift}."""
    return torch.roll(torch.eye(n), shifts=shift, dims=1)


def row_loss(y_hit):
    """Loss of a row whose logits are 1/tau at one column (target weight y_hit there) and 0 elsewhere."""
    return A - y_hit / TAU


def test_step_targets_keep_two_smoothings_apart():
    t = step_targets(4, 2, mix_smoothing=0.0, o2o_smoothing=0.1)
    assert torch.allclose(t.y_oo.diagonal(), torch.full((4,), 0.9 + 0.1 / 4))
    assert torch.allclose(t.y_oo[0, 1:], torch.full((3,), 0.1 / 4))
    assert t.y_mo[0].tolist() == [0.5, 0.5, 0.0, 0.0]  # the mixed targets stay unsmoothed (configs' eps = 0)
    assert t.y_mm[0].tolist() == [0.5, 0.25, 0.0, 0.25]
    t = step_targets(4, 2, rank=1, world=2, mix_smoothing=0.2, o2o_smoothing=0.0)
    assert torch.equal(t.y_oo[:, 4:], torch.eye(4)) and t.y_oo[:, :4].abs().sum() == 0
    assert t.y_mo[0, 0].item() == pytest.approx(0.2 / 8) and t.y_mo.sum(1).tolist() == pytest.approx([1.0] * 4)


def test_five_terms_hand_values():
    eps = 0.1
    t = step_targets(4, 2, o2o_smoothing=eps)
    on, off = 1 - eps + eps / 4, eps / 4
    eye = basis()
    # q1 = mq2 = e_i; k1 = k2 = e_j; the mixed keys are shifted so that mq2_i meets mk1_{i+1} (Y_mm weight 1/4).
    # Local crops: crop 0 meets k_i (Y_oo weight `on`), crop 1 meets k_{i+2} (weight `off`); the mixed local crop
    # meets k_i (Y_mo weight 1/2).
    terms = patchmix_terms(eye, eye, eye, eye, basis(-1), t, TAU, q_local=[eye, basis(2)], q_local_mix=[eye])
    assert terms["l_src"].item() == pytest.approx(row_loss(on), abs=1e-5)
    assert terms["l_m2o"].item() == pytest.approx(row_loss(0.5), abs=1e-5)
    assert terms["l_m2m"].item() == pytest.approx(row_loss(0.25), abs=1e-5)
    assert terms["l_multi"].item() == pytest.approx((2 * row_loss(on) + 2 * row_loss(off)) / 2, abs=1e-5)
    assert terms["l_multi_mix"].item() == pytest.approx(2 * row_loss(0.5) / 2, abs=1e-5)
    total = weighted_loss(terms)  # paper weights 1, 1/2, 1/2, 1, 1 (multi-crop terms not halved)
    expect = row_loss(on) + 0.5 * row_loss(0.5) + 0.5 * row_loss(0.25) + (row_loss(on) + row_loss(off)) \
        + row_loss(0.5)
    assert total.item() == pytest.approx(expect, abs=1e-4)
    assert set(patchmix_terms(eye, eye, eye, eye, eye, t, TAU)) == {"l_src", "l_m2o", "l_m2m"}


def test_o2o_smoothing_changes_l_src_not_by_a_constant():
    # with one-hot Y_oo a perfectly matched query has loss log(1 + 3 e^-5); with eps = 0.1 it pays eps * 5 more
    # on each off-diagonal share, so the two objectives differ in shape, not by an offset
    eye = basis()
    one_hot = patchmix_terms(eye, eye, eye, eye, eye, step_targets(4, 2, o2o_smoothing=0.0), TAU)["l_src"]
    smooth = patchmix_terms(eye, eye, eye, eye, eye, step_targets(4, 2, o2o_smoothing=0.1), TAU)["l_src"]
    assert one_hot.item() == pytest.approx(math.log(1 + 3 * math.exp(-5)), abs=1e-6)
    assert smooth.item() == pytest.approx(one_hot.item() + 0.075 * 5, abs=1e-5)
    flat = torch.zeros(4, 4)  # all-equal logits: every target gives log 4
    for eps in (0.0, 0.1):
        y = step_targets(4, 2, o2o_smoothing=eps)
        assert patchmix_terms(flat + 1, eye, eye, eye, eye, y, TAU)["l_src"].item() == pytest.approx(math.log(4))


@pytest.mark.parametrize("name", ["cifar10_vit_tiny.yaml", "cifar100_vit_small.yaml", "imagenet_vit_small.yaml"])
def test_paper_presets_smooth_y_oo_in_the_training_step(name, monkeypatch):
    """The step's L_src uses Y_oo with 1 - 0.1 + 0.1/N on the diagonal (the reference's no_mixer), recomputed here in
    float64 from the step's own queries and keys."""
    import patchmix.objective as obj
    from patchmix.config import PretrainConfig
    from patchmix.models import build_models
    from patchmix.train import StepFn, build_optimizer
    from tenfold import config as config_mod

    small = ["device=cpu", "optim.batch_size=8", "model.depth=1", "model.embed_dim=32", "model.num_heads=2",
             "model.proj_hidden=32", "model.pred_hidden=32", "model.proj_dim=16", "model.patch_size=4",
             "model.img_size=32", "mix.patch_size=[4]", "aug.input_size=32", "aug.local_crops=0", "amp=false"]
    cfg = config_mod.load(PretrainConfig, CONFIGS / name, small)
    assert cfg.loss.o2o_smoothing == 0.1 and cfg.mix.smoothing == 0.0
    calls = []
    real = obj.soft_info_nce
    monkeypatch.setattr(obj, "soft_info_nce", lambda q, k, y, tau, gather=False: (
        calls.append((q.detach().double(), k.detach().double(), y)), real(q, k, y, tau, gather))[1])
    torch.manual_seed(0)
    online, mom = build_models(cfg.model, cfg.model.framework)
    step = StepFn(cfg, online, mom, build_optimizer(cfg, online), torch.device("cpu"), 10, 100)
    out = step.compute(torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)), 0, TAU)
    q, k, y = calls[0]
    assert torch.allclose(y.diagonal(), torch.full((8,), 0.9 + 0.1 / 8))
    logits = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(k, dim=1).T / TAU
    hand = -(((1 - 0.1) * torch.eye(8, dtype=torch.float64) + 0.1 / 8) * logits.log_softmax(1)).sum(1).mean()
    assert out["l_src"].item() == pytest.approx(hand.item(), abs=1e-5)


def test_o2o_smoothing_is_validated():
    from patchmix.config import PretrainConfig
    from tenfold import config as config_mod
    from tenfold.errors import ConfigError

    with pytest.raises(ConfigError, match="loss.o2o_smoothing"):
        config_mod.load(PretrainConfig, CONFIGS / "demo.yaml", ["loss.o2o_smoothing=1.0"])
