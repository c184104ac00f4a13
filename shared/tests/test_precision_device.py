"""runtime.autocast / grad_scaler precision switch, RunConfig.precision, and tenfold.testing.fake_cuda."""
import contextlib
import json

import pytest
import torch
from tenfold import bench, config, runtime
from tenfold.errors import ConfigError
from tenfold.testing import DeviceMismatch, fake_cuda, is_fake
from torch import nn

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_autocast_precision_choice():
    for prec, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        ctx = runtime.autocast(CUDA, prec)
        assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == dtype
    for dev, prec in ((CUDA, "fp32"), (CPU, "bf16"), (CPU, "fp16"), (torch.device("mps"), "bf16")):
        assert isinstance(runtime.autocast(dev, prec), contextlib.nullcontext)
    assert isinstance(runtime.autocast(CUDA, "bf16", enabled=False), contextlib.nullcontext)
    # the older form autocast(device, amp: bool) keeps working
    assert runtime.autocast(CUDA, True).fast_dtype == torch.bfloat16
    assert isinstance(runtime.autocast(CUDA, False), contextlib.nullcontext)
    assert runtime.autocast(CUDA).fast_dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="precision 'fp8'"):
        runtime.autocast(CUDA, "fp8")


def test_grad_scaler_only_for_fp16_on_cuda():
    assert not runtime.grad_scaler(CPU, "fp16").is_enabled()
    assert not runtime.grad_scaler(CUDA, "bf16").is_enabled()
    assert not runtime.grad_scaler(CUDA, "fp32").is_enabled()
    if torch.cuda.is_available():
        assert runtime.grad_scaler(CUDA, "fp16").is_enabled()
    with pytest.raises(ConfigError):
        runtime.grad_scaler(CPU, "half")
    # a disabled scaler passes loss and step through unchanged
    w = nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([w], lr=1.0)
    sc = runtime.grad_scaler(CPU, "bf16")
    sc.scale((w * 3).sum()).backward()
    sc.step(opt)
    sc.update()
    assert torch.equal(w.detach(), torch.tensor([-2.0, -2.0]))


def test_runconfig_precision_field():
    assert config.RunConfig().precision == "bf16"
    assert config.load(config.RunConfig, None, ["precision=fp32"]).precision == "fp32"
    with pytest.raises(ConfigError, match="precision: expected one of"):
        config.load(config.RunConfig, None, ["precision=float32"])


class _Net(nn.Module):
    def __init__(self, bug: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
        self.bug = bug

    def forward(self, x):
        if self.bug:  # the classic: a constant built on the CPU inside forward
            x = (x - torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        return self.body(x)


def test_fake_cuda_forward_runs_on_fake_cuda():
    stock_apply = nn.Module._apply
    with fake_cuda():
        net = _Net().to("cuda")
        x = torch.randn(4, 3, 8, 8, device="cuda")
        with runtime.autocast(CUDA, "bf16"):
            y = net(x)
        loss = nn.functional.cross_entropy(y, torch.randint(0, 10, (4,), device="cuda"))
        assert is_fake(y) and y.device.type == "cuda" and y.shape == (4, 10)
        assert loss.device.type == "cuda" and loss.dim() == 0
        assert all(p.device.type == "cuda" for p in net.parameters())
        assert net.body[1].running_mean.device.type == "cuda"
    assert nn.Module._apply is stock_apply  # patch removed after the block
    # real modules behave as usual again
    m = nn.Linear(2, 2).half()
    assert m.weight.dtype == torch.float16


def test_fake_cuda_raises_on_a_cpu_tensor_mixed_in():
    with fake_cuda():
        net = _Net(bug=True).to("cuda")
        x = torch.randn(2, 3, 8, 8, device="cuda")
        with pytest.raises(DeviceMismatch):
            net(x)
        with pytest.raises(RuntimeError):  # a model left on the CPU
            _Net()(x)
    real = torch.ones(3)
    with fake_cuda():
        with pytest.raises(AssertionError, match="FakeTensor"):  # a real tensor from outside cannot mix in
            torch.ones(3, device="cuda") + real


def test_fake_cuda_skip_backward_runs_a_whole_training_step():
    stock_backward, stock_grad = torch.Tensor.backward, torch.autograd.grad
    with fake_cuda(skip_backward=True):
        net = _Net().to("cuda")
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10)
        scaler = runtime.grad_scaler(CUDA, "fp16")
        loss = nn.functional.cross_entropy(net(torch.randn(4, 3, 8, 8, device="cuda")),
                                           torch.randint(0, 10, (4,), device="cuda"))
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        assert all(p.grad is None for p in net.parameters())
        x = torch.randn(2, 3, 8, 8, device="cuda", requires_grad=True)
        (g,) = torch.autograd.grad(net(x).sum(), x)  # attribution code paths: zeros placed like the input
        assert g.device.type == "cuda" and g.shape == x.shape
    assert torch.Tensor.backward is stock_backward and torch.autograd.grad is stock_grad
    if torch.cuda.is_available():
        return
    with fake_cuda():  # without the switch backward needs a CUDA context and fails
        net = _Net().to("cuda")
        with pytest.raises(RuntimeError):
            net(torch.randn(2, 3, 8, 8, device="cuda")).sum().backward()


def test_the_cpu_constant_bug_is_invisible_on_the_cpu():
    # the same buggy module is fine on the CPU: fake_cuda is what exposes the bug
    assert _Net(bug=True)(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_gpu_report_writes_after_every_row(tmp_path):
    args = bench.gpu_parser("demo").parse_args(["--out", str(tmp_path), "--smoke", "--budget", "5"])
    rep = bench.gpu_report("demo", args)
    path = tmp_path / "demo.json"
    d = json.loads(path.read_text())
    assert d["package"] == "demo" and d["smoke"] is True and d["rows"] == [] and d["skipped"] is None
    assert d["torch"] == torch.__version__ and d["device"].startswith("cpu")
    rep.row("step throughput fp32", 123.456, "images/s")
    d = json.loads(path.read_text())
    assert d["rows"] == [{"what": "step throughput fp32", "value": 123.456, "unit": "images/s"}]
    rep.row("MFU", None, "%")
    assert json.loads(path.read_text())["rows"][1]["value"] is None
    assert 0 < rep.remaining() <= 5
    with pytest.raises(SystemExit) as e:
        rep.skip("teacher missing:\n  /x/y.pt")
    assert e.value.code == 0
    d = json.loads(path.read_text())
    assert d["skipped"] == "teacher missing: /x/y.pt" and len(d["rows"]) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_gpu_report_without_cuda_skips(tmp_path):
    args = bench.gpu_parser("demo").parse_args(["--out", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        bench.gpu_report("demo", args)
    assert e.value.code == 0
    assert "CUDA is not available" in json.loads((tmp_path / "demo.json").read_text())["skipped"]
