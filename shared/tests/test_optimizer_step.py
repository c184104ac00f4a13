"""runtime.optimizer_step: the plain update without a scaler (or a disabled one), the scaled one with it."""
import copy

import torch
from tenfold import runtime


def _setup(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x, y = torch.randn(16, 5), torch.randn(16, 1)
    return net, x, y


def _loss(net, x, y):
    return torch.nn.functional.mse_loss(net(x), y)


def _plain(net, x, y, clip=None):
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        _loss(net, x, y).backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
    return net


def _helper(net, x, y, scaler, clip=None, seen=None):
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)

    def before():
        if seen is not None:
            seen.append([p.grad.clone() for p in net.parameters()])
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)

    for _ in range(3):
        runtime.optimizer_step(_loss(net, x, y), opt, scaler, before if clip else None)
    return net


def test_without_a_scaler_or_with_a_disabled_one_it_is_the_plain_update_bit_for_bit():
    net, x, y = _setup()
    ref = _plain(copy.deepcopy(net), x, y, clip=0.5)
    for scaler in (None, runtime.grad_scaler(torch.device("cpu"), "fp16")):  # CPU: a disabled scaler
        assert scaler is None or not scaler.is_enabled()
        got = _helper(copy.deepcopy(net), x, y, scaler, clip=0.5)
        for a, b in zip(ref.parameters(), got.parameters()):
            assert torch.equal(a, b)


def test_an_enabled_scaler_unscales_before_the_clip():
    net, x, y = _setup(1)
    ref = _plain(copy.deepcopy(net), x, y, clip=0.05)
    seen = []
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    got = _helper(copy.deepcopy(net), x, y, scaler, clip=0.05, seen=seen)
    # the clip saw the true (unscaled) first gradient, not 1024x it
    net0 = copy.deepcopy(net)
    _loss(net0, x, y).backward()
    for g, p in zip(seen[0], net0.parameters()):
        torch.testing.assert_close(g, p.grad)
    for a, b in zip(ref.parameters(), got.parameters()):
        torch.testing.assert_close(a, b)
