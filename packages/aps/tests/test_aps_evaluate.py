"""Linear probes on frozen features: the spec's full-batch L-BFGS logistic regression (§7(d)) and the SGD option."""
import pytest
import torch
from aps.config import EvalConfig
from aps.evaluate import fit_logistic_lbfgs, lbfgs_linear_probe, linear_probe_monitor


def blobs(n_per=20, d=5, c=3, seed=0, spread=1.0):
    centres = 3.0 * torch.randn(c, d, generator=torch.Generator().manual_seed(100))  # the same classes every call
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([centres[i] + spread * torch.randn(n_per, d, generator=g) for i in range(c)])
    y = torch.arange(c).repeat_interleave(n_per)
    return x, y


def reference_solution(x, y, c, l2, iters=6000, lr=0.5):
    """The same regularised objective solved independently in float64 by plain full-batch gradient descent."""
    x = x.double()
    mean, std = x.mean(0), x.std(0)
    z = (x - mean) / std
    w = torch.zeros(z.shape[1], c, dtype=torch.float64)
    b = torch.zeros(c, dtype=torch.float64)
    onehot = torch.nn.functional.one_hot(y, c).double()
    for _ in range(iters):
        p = torch.softmax(z @ w + b, 1)
        gw = z.T @ (p - onehot) / len(z) + l2 * w
        gb = (p - onehot).mean(0)
        w, b = w - lr * gw, b - lr * gb
    return w, b, mean, std


def test_lbfgs_probe_reaches_the_regularised_optimum():
    # overlapping blobs: the regularised optimum is finite and unique (strictly convex objective)
    x, y = blobs(spread=2.5)
    l2 = 0.05
    w_ref, b_ref, mean, std = reference_solution(x, y, 3, l2)
    w, b, m, s = fit_logistic_lbfgs(x, y, 3, iters=100, l2=l2)
    torch.testing.assert_close(m.double(), mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(s.double(), std, atol=1e-5, rtol=0)
    # softmax is invariant to a common shift of the class scores: compare centred weights and biases
    torch.testing.assert_close(w.double() - w.double().mean(1, keepdim=True),
                               w_ref - w_ref.mean(1, keepdim=True), atol=2e-4, rtol=0)
    torch.testing.assert_close(b.double() - b.double().mean(), b_ref - b_ref.mean(), atol=2e-4, rtol=0)
    xt, yt = blobs(n_per=30, seed=1, spread=2.5)
    ref_top1 = 100.0 * ((((xt.double() - mean) / std) @ w_ref + b_ref).argmax(1) == yt).double().mean().item()
    assert lbfgs_linear_probe(x, y, xt, yt, iters=100, l2=l2)["top1"] == pytest.approx(ref_top1)


def test_lbfgs_probe_separable_and_order_free():
    x, y = blobs(spread=0.3)
    xt, yt = blobs(n_per=10, seed=2, spread=0.3)
    assert lbfgs_linear_probe(x, y, xt, yt)["top1"] == 100.0
    xs, ys = blobs(spread=2.5)
    perm = torch.randperm(len(xs), generator=torch.Generator().manual_seed(3))
    a = lbfgs_linear_probe(xs, ys, xt, yt, l2=0.05)
    b = lbfgs_linear_probe(xs[perm], ys[perm], xt, yt, l2=0.05)  # full batch: sample order cannot matter
    assert a == b


def test_monitor_picks_the_solver():
    x, y = blobs(spread=2.5)
    xt, yt = blobs(n_per=30, seed=1, spread=2.5)
    feats = (x, y, xt, yt)
    ecfg = EvalConfig(linear_l2=0.05)
    assert linear_probe_monitor(feats, ecfg=ecfg)["linear_top1"] == lbfgs_linear_probe(x, y, xt, yt, l2=0.05)["top1"]
    from tenfold import eval as teval

    sgd = linear_probe_monitor(feats, seed=4, ecfg=EvalConfig(linear_solver="sgd", linear_epochs=3))
    assert sgd["linear_top1"] == teval.linear_probe(x, y, xt, yt, epochs=3, seed=4)["top1"]
    assert EvalConfig().linear_solver == "lbfgs"
