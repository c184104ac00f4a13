"""Spec §7a unit tests: shapes, receptive field, hand-computed loss values, gradient isolation, signs,
OOD-subset semantics; one test per pitfall of spec §8."""
import math

import pytest
import torch
import torch.nn.functional as F
from mosaickd.game import MosaicGame
from mosaickd.method import (
    BNStatsHook,
    adv_loss,
    align_loss,
    balance_loss,
    bn_stats_loss,
    datafree_generator_loss,
    discriminator_loss,
    generator_loss,
    kldiv,
    local_loss,
    select_high_entropy,
)
from mosaickd.nets import GlobalDiscriminator, Normalizer, PatchDiscriminator, SmallCNN, UpsampleGenerator

torch.set_num_threads(1)


def tiny_game(local=1.0, align=1.0, adv=1.0, balance=10.0, kd_steps=2, lr=0.05, lr_g=1e-3, kd_use_ood=True,
              seed=0, total=10):
    torch.manual_seed(seed)
    G = UpsampleGenerator(nz=8, ngf=4, img_size=16, nc=3)
    D = PatchDiscriminator(nc=3, ndf=8)
    S = SmallCNN(5, (4, 8, 8))
    T = SmallCNN(5, (8, 8, 8))
    norm = Normalizer((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    return MosaicGame(G, D, S, T, norm, total_iters=total, local=local, align=align, adv=adv, balance=balance,
                      kd_steps=kd_steps, lr=lr, lr_g=lr_g, kd_use_ood=kd_use_ood)


def snapshot(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def changed(before, m):
    after = m.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


def changed_params(before, m):
    names = {n for n, _ in m.named_parameters()}
    return changed(before, m) & names


# ---- 1. shapes -----------------------------------------------------------------------------------------
def test_generator_shape_and_range():
    torch.manual_seed(0)
    x = UpsampleGenerator(nz=100)(torch.randn(4, 100))
    assert x.shape == (4, 3, 32, 32) and x.min() >= 0 and x.max() <= 1
    g = UpsampleGenerator(nz=100, ngf=64, width_mult=4)
    assert g.project.out_features == 256 * 8 * 8 and g.body[2].out_channels == 128 and g.body[6].out_channels == 64
    g2 = UpsampleGenerator(nz=100, ngf=64, width_mult=2)
    assert g2.project.out_features == 128 * 8 * 8 and g2.body[2].in_channels == 128
    assert UpsampleGenerator(nz=32, ngf=8, img_size=16, nc=1)(torch.randn(2, 32)).shape == (2, 1, 16, 16)


def test_patch_discriminator_shapes():
    d = PatchDiscriminator(ndf=128)
    assert d(torch.randn(4, 3, 32, 32)).shape == (4, 1, 8, 8)
    assert d(torch.randn(4, 3, 16, 16)).shape == (4, 1, 4, 4)
    assert GlobalDiscriminator(ndf=8)(torch.randn(2, 3, 32, 32)).shape == (2, 1, 1, 1)


# ---- 2. receptive field (pitfall 1: a patch, not a global, discriminator) --------------------------------
def _affected(d, pix):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    y = x.clone()
    y[:, :, pix[0], pix[1]] += 5.0
    with torch.no_grad():
        diff = (d(y) - d(x)).abs()[0, 0]
    return {tuple(ij) for ij in (diff > 1e-6).nonzero().tolist()}


def test_patch_receptive_field_is_10px():
    d = PatchDiscriminator(ndf=16).eval()
    assert _affected(d, (0, 0)) == {(0, 0)}
    assert _affected(d, (5, 5)) == {(i, j) for i in range(3) for j in range(3)}
    assert _affected(d, (31, 31)) == {(7, 7)}
    # logit row v sees rows 4v-3..4v+6: row 10 lies in v=1 (1..10), v=2 (5..14), v=3 (9..18); not v=0 or 4
    assert {i for i, _ in _affected(d, (10, 16))} == {1, 2, 3}


def test_global_discriminator_sees_everything():
    d = GlobalDiscriminator(ndf=8).eval()
    assert _affected(d, (0, 0)) == {(0, 0)} and _affected(d, (31, 31)) == {(0, 0)}


# ---- 3. hand-computed loss values ---------------------------------------------------------------------
def test_align_loss_values():
    assert align_loss(torch.zeros(3, 100)).item() == pytest.approx(math.log(100), abs=1e-4)  # 4.6052
    onehot = torch.zeros(3, 100)
    onehot[:, 7] = 1e4
    assert align_loss(onehot).item() == pytest.approx(0.0, abs=1e-6)


def test_balance_loss_values():
    assert balance_loss(torch.zeros(5, 100)).item() == pytest.approx(-math.log2(100), abs=1e-4)  # -6.6439
    collapsed = torch.full((4, 100), -1e4)
    collapsed[:, 0] = 0.0
    v = balance_loss(collapsed)
    assert torch.isfinite(v) and abs(v.item()) < 1e-6
    # two classes, marginal (0.75, 0.25): 0.75 log2 .75 + .25 log2 .25 = -0.811278
    t = torch.tensor([[0.0, -1e4], [0.0, -1e4], [0.0, -1e4], [-1e4, 0.0]])
    assert balance_loss(t).item() == pytest.approx(-0.811278, abs=1e-5)


def test_kldiv_values():
    s = torch.randn(4, 7)
    assert kldiv(s, s.clone(), T=3.0).item() == pytest.approx(0.0, abs=1e-6)
    v = kldiv(torch.zeros(1, 2), torch.tensor([[0.0, math.log(3.0)]]), T=1.0)
    assert v.item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-6)  # 0.130812
    # T^2 scaling: at T=2 the same logits doubled give 4x the T=1 value
    v2 = kldiv(torch.zeros(1, 2), torch.tensor([[0.0, 2 * math.log(3.0)]]), T=2.0)
    assert v2.item() == pytest.approx(4 * 0.130812, abs=1e-5)
    adv = adv_loss(torch.zeros(1, 2), torch.tensor([[0.0, math.log(3.0)]]))
    assert adv.item() == pytest.approx(-0.130812, abs=1e-6)


def test_patch_losses_sum_over_patches_pitfall2():
    z = torch.zeros(5, 1, 8, 8)
    assert discriminator_loss(z, z, 1.0).item() == pytest.approx(64 * math.log(2), abs=1e-4)  # 44.361, not ln 2
    assert discriminator_loss(z, z, 0.5).item() == pytest.approx(32 * math.log(2), abs=1e-4)
    assert local_loss(z).item() == pytest.approx(64 * math.log(2), abs=1e-4)
    # per-image sums averaged per batch: unequal batch sizes still give 64 ln 2
    assert discriminator_loss(torch.zeros(3, 1, 8, 8), z, 1.0).item() == pytest.approx(64 * math.log(2), abs=1e-4)
    # float64 reference of one random case
    df, dr = torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.randn(2, 1, 8, 8, dtype=torch.float64)
    ref = 0.5 * ((F.softplus(df)).sum() / 2 + (F.softplus(-dr)).sum() / 2)
    assert discriminator_loss(df, dr).item() == pytest.approx(ref.item(), rel=1e-10)


def test_generator_loss_weighted_sum():
    torch.manual_seed(0)
    d, t, s = torch.randn(3, 1, 8, 8), torch.randn(3, 6), torch.randn(3, 6)
    g = generator_loss(d, t, s, local=0.3, align=0.7, adv=2.0, balance=10.0)
    p = t.double().softmax(1)
    align = -(p * p.log()).sum(1).mean()
    pb = p.mean(0)
    bal = (pb * torch.log2(pb)).sum()
    adv = -(p * (p.log() - s.double().log_softmax(1))).sum(1).mean()
    loc = F.softplus(-d.double()).sum() / 3
    ref = 2.0 * adv + 0.7 * align + 0.3 * loc + 10.0 * bal
    assert g.total.item() == pytest.approx(ref.item(), rel=1e-5)
    assert generator_loss(None, t, s).local.item() == 0.0


def test_bn_stats_loss_zero_at_running_stats():
    bn = torch.nn.BatchNorm2d(2)
    bn.running_mean.copy_(torch.tensor([1.0, -1.0]))
    bn.running_var.copy_(torch.tensor([4.0, 0.25]))
    hook = BNStatsHook(bn)
    x = torch.tensor([[[[1 - 2.0, 1 + 2.0]], [[-1 - 0.5, -1 + 0.5]]]])  # mean (1,-1), biased var (4, .25)
    bn.eval()
    bn(x)
    assert bn_stats_loss([hook]).item() == pytest.approx(0.0, abs=1e-6)
    bn(x + 3.0)  # mean off by 3 in both channels: ||(3,3)|| = 3 sqrt 2
    assert bn_stats_loss([hook]).item() == pytest.approx(3 * math.sqrt(2), abs=1e-5)
    hook.remove()


# ---- 4. gradient flow / isolation (pitfalls 8, 9) -------------------------------------------------------
def test_players_update_in_isolation():
    game = tiny_game()
    game.T.train()  # the game must put the teacher back in eval mode (pitfall 8)
    game = MosaicGame(game.G, game.D, game.S, game.T, game.norm, total_iters=5, kd_steps=1)
    assert not game.T.training and not any(p.requires_grad for p in game.T.parameters())
    x_real = torch.randn(4, 3, 16, 16)
    g0, d0, s0, t0 = snapshot(game.G), snapshot(game.D), snapshot(game.S), snapshot(game.T)
    x_syn = game.synthesize(4)
    g_bn = changed(g0, game.G)
    assert g_bn and all("running" in k or "num_batches" in k for k in g_bn)  # only G's BN buffers moved
    g0 = snapshot(game.G)
    game.d_step(x_syn, x_real)
    assert changed(d0, game.D) and not changed(g0, game.G) and not changed(s0, game.S)
    d1 = snapshot(game.D)
    game.opt_d.zero_grad(set_to_none=True)
    game.g_step(x_syn)
    assert changed_params(g0, game.G) and not changed_params(d1, game.D)  # D's BN buffers may move (train mode)
    s_changed = changed(s0, game.S)
    assert s_changed and all("running" in k or "num_batches" in k for k in s_changed)  # S in train mode: BN only
    # pitfall 9: the G backward deposits no gradient in D or S
    assert all(p.grad is None for p in game.D.parameters()) and all(p.grad is None for p in game.S.parameters())
    assert not changed(t0, game.T) and all(p.grad is None for p in game.T.parameters())
    g2 = snapshot(game.G)
    game.student_step(4, torch.randn(4, 3, 16, 16))
    game.opt_g.zero_grad(set_to_none=True)
    game.student_step(4, torch.randn(4, 3, 16, 16))
    assert not changed_params(g2, game.G) and all(p.grad is None for p in game.G.parameters())
    assert not changed(t0, game.T)


def test_gradient_reaches_generator_through_all_players():
    game = tiny_game()
    x_syn = game.synthesize(4)
    for w in ("local", "align", "adv", "balance"):
        weights = {k: (1.0 if k == w else 0.0) for k in ("local", "align", "adv", "balance")}
        with torch.enable_grad():
            t, s, d = game.T(x_syn), game.S(x_syn), game.D(x_syn)
            loss = generator_loss(d, t, s, **weights).total
            grads = torch.autograd.grad(loss, list(game.G.parameters()), retain_graph=True, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), w


# ---- 5. signs (pitfall 3) ---------------------------------------------------------------------------
def _kl_on(game, z):
    with torch.no_grad():
        x = game.norm(game.G.eval()(z))
        game.G.train()
        return kldiv(game.S.eval()(x), game.T(x)).item()


def test_generator_maximises_and_student_minimises_disagreement():
    game = tiny_game(local=0.0, align=0.0, adv=1.0, balance=0.0, lr_g=1e-2, lr=0.05)
    torch.manual_seed(1)
    z = torch.randn(16, game.G.nz)
    before = _kl_on(game, z)
    game.S.train()
    for _ in range(3):
        x = game.synthesize(16)
        game.g_step(x)
    after_g = _kl_on(game, z)
    assert after_g > before
    game.S.train()
    for _ in range(3):
        torch.manual_seed(1)
        with torch.no_grad():
            x = game.norm(game.G.eval()(z))
        game.G.train()
        t = game.T(x)
        s = game.S.train()(x)
        loss = kldiv(s, t)
        game.opt_s.zero_grad()
        loss.backward()
        game.opt_s.step()
    assert _kl_on(game, z) < after_g


# ---- 6. OOD subset (pitfall 10) ---------------------------------------------------------------------
def test_select_high_entropy_keeps_most_ood():
    n = 10
    logits = torch.zeros(n, 4)
    sharp = torch.tensor([0.0, 8.0, 1.0, 5.0, 3.0, 0.5, 9.0, 2.0, 6.0, 4.0])  # larger -> lower entropy
    logits[:, 0] = sharp
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)

    def stub_teacher(x):
        return logits[x.view(-1).long()]

    idx = select_high_entropy(images, stub_teacher, k=4, batch_size=3)
    ent = -(logits.softmax(1) * logits.log_softmax(1)).sum(1)
    expected = torch.argsort(ent, descending=True)[:4]
    assert idx.tolist() == expected.tolist() == [0, 5, 2, 7]
    assert idx.tolist() == select_high_entropy(images, stub_teacher, k=4, batch_size=7).tolist()
    with pytest.raises(ValueError):
        select_high_entropy(images, stub_teacher, k=0)


# ---- pitfalls 5 and 7: OOD in the KD step, schedules per outer iteration -----------------------------
def test_student_step_uses_synthetic_and_ood_pitfall5():
    game = tiny_game(kd_steps=3)
    seen = []
    h = game.S.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    game.outer_step(torch.randn(4, 3, 16, 16), lambda: (torch.randn(4, 3, 16, 16), None))
    h.remove()
    assert seen == [4, 8, 8, 8]  # G step on B fakes, then 3 KD steps on 2B = concat(synthetic, OOD)
    game2 = tiny_game(kd_steps=2, kd_use_ood=False)
    seen.clear()
    h = game2.S.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    game2.outer_step(torch.randn(4, 3, 16, 16), lambda: (torch.randn(4, 3, 16, 16), None))
    h.remove()
    assert seen == [4, 4, 4]


def test_cached_teacher_logits_match_live_teacher():
    game = tiny_game()
    x_ood = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        t_ood = game.T(x_ood)
    torch.manual_seed(5)
    s_before = snapshot(game.S)
    l1 = game.student_step(4, x_ood, None)
    game.S.load_state_dict(s_before)
    game.opt_s = torch.optim.SGD(game.S.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    torch.manual_seed(5)
    l2 = game.student_step(4, x_ood, t_ood)
    assert l1.item() == pytest.approx(l2.item(), rel=1e-5)


def test_schedules_step_once_per_outer_iteration_pitfall7():
    game = tiny_game(kd_steps=5, total=10)
    for _ in range(3):
        game.outer_step(torch.randn(4, 3, 16, 16), lambda: (torch.randn(4, 3, 16, 16), None))
    assert game.sched_s.last_epoch == game.sched_g.last_epoch == game.sched_d.last_epoch == 3
    expected = 0.05 * (1 + math.cos(math.pi * 3 / 10)) / 2
    assert game.opt_s.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9)


def test_teacher_bn_frozen_student_bn_updated_pitfall8():
    game = tiny_game(kd_steps=1)
    t0, s0 = snapshot(game.T), snapshot(game.S)
    game.outer_step(torch.randn(4, 3, 16, 16), lambda: (torch.randn(4, 3, 16, 16), None))
    assert not changed(t0, game.T) and not game.T.training
    assert any("running_mean" in k for k in changed(s0, game.S))


def test_local_zero_removes_discriminator():
    game = tiny_game(local=0.0)
    assert game.D is None and "discriminator" not in game.stateful()
    m = game.outer_step(torch.randn(4, 3, 16, 16), lambda: (torch.randn(4, 3, 16, 16), None))
    assert "d_loss" not in m and m["g_local"] == 0.0


def test_datafree_generator_loss_values():
    t = torch.zeros(4, 10)  # uniform teacher: CE with its own argmax = ln 10, sum pbar log10 pbar = -1
    total, terms = datafree_generator_loss(t, t.clone(), None, adv=1.0, oh=1.0, ie=20.0, bn=1.0)
    assert terms["oh"].item() == pytest.approx(math.log(10), abs=1e-5)
    assert terms["ie"].item() == pytest.approx(-1.0, abs=1e-6)
    assert terms["adv"].item() == pytest.approx(0.0, abs=1e-6) and terms["bn"].item() == 0.0
    assert total.item() == pytest.approx(math.log(10) - 20.0, abs=1e-4)


def test_entropy_and_balance_signs_pitfall6():
    """Descending L_align sharpens every prediction; descending L_balance spreads the batch over classes."""
    torch.manual_seed(0)
    logits = (torch.randn(8, 5) * 0.1).requires_grad_(True)
    logits.data[:, 0] += 2.0  # a batch leaning on class 0
    for loss_fn, check in ((align_loss, "sharper"), (balance_loss, "spread")):
        x = logits.detach().clone().requires_grad_(True)
        ent0 = -(x.softmax(1) * x.log_softmax(1)).sum(1).detach()
        marg0 = x.softmax(1).mean(0).detach()
        loss_fn(x).backward()
        y = (x - 1.0 * x.grad).detach()
        ent1 = -(y.softmax(1) * y.log_softmax(1)).sum(1)
        marg1 = y.softmax(1).mean(0)
        if check == "sharper":
            assert (ent1 < ent0).all()
        else:
            h = lambda m: -(m * m.log()).sum()  # noqa: E731
            assert h(marg1) > h(marg0) and marg1[0] < marg0[0]
