import math

import torch
from fedmgd.method import (
    client_batch_indices,
    client_generator_loss,
    discriminator_loss,
    fedlc_logits,
    fedprox_term,
    gan_lr_multiplier,
    r1_penalty,
    realistic_scores,
    route,
    routed_generator_loss,
    scaffold_control_update,
    server_enhance_step,
    weighted_average,
)
from fedmgd.nets import SmallGenerator, init_weights
from torch import nn


class LinD(nn.Module):
    """D(x) = sigmoid(w^T flat(x) + c)."""

    def __init__(self, w, c):
        super().__init__()
        self.w, self.c = nn.Parameter(w), nn.Parameter(torch.tensor(c, dtype=w.dtype))

    def forward(self, x):
        return torch.sigmoid(x.flatten(1) @ self.w + self.c).unsqueeze(1)


def test_r1_hand_computed_on_sigmoid_output():
    torch.manual_seed(0)
    w, c = torch.randn(6, dtype=torch.float64), 0.3
    x = torch.randn(4, 1, 2, 3, dtype=torch.float64, requires_grad=True)
    D = LinD(w.clone(), c).double()
    r1 = r1_penalty(D(x), x)
    a = x.detach().flatten(1) @ w + c
    s = 1 / (1 + torch.exp(-a))
    expect = ((s * (1 - s)) ** 2 * (w @ w)).mean()  # sigma'(a)^2 ||w||^2, batch mean, no 1/2
    assert abs(float(r1.detach()) - float(expect)) < 1e-10
    # on the logit it would be ||w||^2 (much larger): make sure that is not what we compute
    assert abs(float(r1.detach()) - float(w @ w)) > 0.1


def test_discriminator_loss_weights():
    torch.manual_seed(0)
    D = LinD(torch.randn(4, dtype=torch.float64), 0.0).double()
    xr, xf = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    loss, parts = discriminator_loss(D, xr, xf, 0.1, 10.0)
    dr, df = D(xr).squeeze(1), D(xf).squeeze(1)
    adv = -torch.log(dr).mean() - torch.log(1 - df).mean()
    assert abs(float(parts["d_adv"]) - float(adv.detach())) < 1e-10
    assert abs(float(loss.detach()) - (0.1 * float(adv.detach()) + 10 * float(parts["r1"]))) < 1e-10


def _mock_outputs():
    # K = 3 clients, B = 4 samples, N_c = 3 classes; hand-set D outputs and classifier logits
    d = torch.tensor([[0.9, 0.1, 0.5, 0.5], [0.2, 0.8, 0.5, 0.5], [0.5, 0.5, 0.5, 0.1]], dtype=torch.float64)
    logits = torch.zeros(3, 4, 3, dtype=torch.float64)
    logits[1, 2, 2] = 3.0  # client 1 recognises sample 2's label (y=2) strongly
    y = torch.tensor([0, 1, 2, 0])
    return d, logits, y


def test_scores_and_routing_with_ties_to_lowest_index():
    d, logits, y = _mock_outputs()
    s = realistic_scores(d, logits, y)
    assert abs(float(s[0, 0]) - (0.9 - math.log(3))) < 1e-6
    k = route(s)
    # sample 0: client 0 (D 0.9); 1: client 1; 2: client 1 (classifier term); 3: tie 0/1 -> lowest index 0
    assert k.tolist() == [0, 1, 1, 0]
    assert not k.requires_grad and not s.requires_grad


def test_generator_loss_equals_bce_plus_ce_on_selected():
    d, logits, y = _mock_outputs()
    k = route(realistic_scores(d, logits, y))
    loss = routed_generator_loss(d, logits, y, k)
    sel_d = torch.tensor([0.9, 0.8, 0.5, 0.5], dtype=torch.float64)
    ce = [math.log(3), math.log(3), -(3 - math.log(math.exp(3) + 2)), math.log(3)]
    expect = float(-torch.log(sel_d).mean()) + sum(ce) / 4
    assert abs(float(loss) - expect) < 1e-10
    shares = sum(client_generator_loss(d[i], logits[i], y, k == i, 4) for i in range(3))
    assert abs(float(shares) - expect) < 1e-10


def test_gradient_reaches_sample_only_through_selected_client():
    torch.manual_seed(0)
    a = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    x = torch.randn(5, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (5,))
    d = torch.stack([torch.sigmoid(a_k * x.flatten(1).sum(1)) for a_k in a])  # (K, B)
    logits = torch.stack([a_k * x.flatten(1)[:, :3] for a_k in a])  # (K, B, 3)
    k = route(realistic_scores(d, logits, y))
    (g,) = torch.autograd.grad(routed_generator_loss(d, logits, y, k), x, retain_graph=True)
    for b in range(5):
        for i in range(3):
            share = client_generator_loss(d[i], logits[i], y, k == i, 5)
            (gi,) = torch.autograd.grad(share, x, retain_graph=True)
            if i != int(k[b]):
                assert float(gi[b].abs().max()) == 0.0  # non-selected clients contribute exactly zero
            else:
                assert torch.allclose(gi[b], g[b])


def test_lr_schedule():
    assert gan_lr_multiplier(0) == 1 and gan_lr_multiplier(199) == 1
    assert abs(gan_lr_multiplier(200) - (1 - 1 / 201)) < 1e-12
    assert gan_lr_multiplier(380) == 0.1 and gan_lr_multiplier(399) == 0.1


def test_weighted_fedavg():
    a = {"w": torch.zeros(3), "n": torch.tensor(2)}
    b = {"w": torch.full((3,), 4.0), "n": torch.tensor(3)}
    out = weighted_average([a, b], [1, 3])
    assert torch.equal(out["w"], torch.full((3,), 3.0))
    assert out["n"].dtype == torch.int64 and int(out["n"]) == 3  # 2.75 rounded
    same = weighted_average([b, b, b], [5, 1, 2])
    assert torch.equal(same["w"], b["w"])


class Always0(nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([2.0] + [0.0] * 9))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.shape[0])
        return self.bias.expand(x.shape[0], 10) + 0 * x.flatten(1).sum(1, keepdim=True)


def test_filter_keeps_only_agreeing_samples_and_loss_is_ce_on_them():
    torch.manual_seed(0)
    G = init_weights(SmallGenerator(10, 1, 8, n_z=4, ngf=4))
    bn = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)][0]
    G.train()
    rm = bn.running_mean.clone()
    S = Always0()
    opt = torch.optim.Adam(S.parameters(), lr=1e-3)
    torch.manual_seed(1)
    out = server_enhance_step(S, opt, G, 10, 64, 4, torch.device("cpu"))
    torch.manual_seed(1)
    torch.randn(64, 4)
    n0 = int((torch.randint(0, 10, (64,)) == 0).sum())
    assert out["kept"] == n0 and S.seen[-1] == n0 and out["stepped"]
    assert abs(float(out["loss"]) - (math.log(math.exp(2) + 9) - 2)) < 1e-6
    assert not G.training and all(p.grad is None for p in G.parameters())
    assert torch.equal(bn.running_mean, rm)  # eval mode: running statistics untouched


def test_filter_fewer_than_two_kept_takes_no_step():
    torch.manual_seed(0)
    G = init_weights(SmallGenerator(10, 1, 8, n_z=4, ngf=4))
    S = Always0()
    before = S.bias.detach().clone()
    opt = torch.optim.Adam(S.parameters(), lr=1e-3)
    out = server_enhance_step(S, opt, G, 10, 1, 4, torch.device("cpu"))
    assert not out["stepped"] and torch.equal(S.bias.detach(), before)


def test_fedprox_term_and_gradient():
    w = [torch.tensor([1.0, 2.0], requires_grad=True)]
    assert float(fedprox_term(w, [torch.tensor([1.0, 2.0])], 0.01).detach()) == 0.0
    t = fedprox_term(w, [torch.tensor([0.0, 4.0])], 0.01)
    (g,) = torch.autograd.grad(t, w[0])
    assert torch.allclose(g, 0.01 * torch.tensor([1.0, -2.0]))


def test_fedlc_calibration_guards_absent_classes():
    out = fedlc_logits(torch.zeros(1, 3), torch.tensor([16, 0, 1]), tau=0.1)
    assert torch.allclose(out, -0.1 * torch.tensor([[0.5, 1.0, 1.0]]))
    assert bool(torch.isfinite(out).all())


def test_scaffold_control_update():
    c, ck = [torch.tensor([1.0])], [torch.tensor([0.5])]
    new = scaffold_control_update(c, ck, [torch.tensor([2.0])], [torch.tensor([1.0])], steps=10, lr=0.1)
    assert torch.allclose(new[0], torch.tensor([0.5 - 1.0 + 1.0 / (10 * 0.1)]))


def test_client_cycling_and_legacy_index_folding():
    gidx = torch.tensor([5, 150, 999])
    fixed = client_batch_indices(gidx, [100, 1000])
    assert fixed[0].tolist() == [5, 50, 99] and fixed[1].tolist() == [5, 150, 999]
    legacy = client_batch_indices(gidx, [100, 1000], legacy_folding=True)
    assert legacy[1].tolist() == [5, 50, 99]  # quirk 0: client 1 only reads rows < 100
