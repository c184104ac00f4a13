"""GPU-path pieces checked on the CPU (issue #17): uint8 batches converted on the device, pinned loaders, no
host sync in the step's forward/backward, precision threaded through, torch.compile switch, fp32 logits."""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from patchmix.config import PretrainConfig
from patchmix.models import build_models
from patchmix.train import StepFn, build_optimizer
from tenfold import config as config_mod
from tenfold.loop import LoopState

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def tiny_cfg(*overrides):
    return config_mod.load(PretrainConfig, DEMO, ["device=cpu", "optim.batch_size=8", "optim.warmup_epochs=0",
                                                  *overrides])


def make_step(cfg):
    torch.manual_seed(0)
    online, mom = build_models(cfg.model, cfg.model.framework)
    return StepFn(cfg, online, mom, build_optimizer(cfg, online), torch.device("cpu"), 10, 100), online


@contextlib.contextmanager
def no_host_reads():
    """A read of a tensor's value on the host (what forces a CUDA sync) raises inside the block. Exempt: the truth
    value of a boolean tensor, which the augmentations take of their per-sample coin flips drawn on the CPU
    generator (no device tensor involved; the images and the network never feed it)."""
    names = ("item", "__float__", "__int__", "__bool__", "tolist", "numpy")
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def boom(self, *a, **k):
        raise AssertionError("host read of a tensor value inside the training step")

    def bool_of_flags(self):
        if self.dtype != torch.bool or self.requires_grad:
            boom(self)
        return saved["__bool__"](self)

    try:
        for n in names:
            setattr(torch.Tensor, n, boom)
        torch.Tensor.__bool__ = bool_of_flags
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


def test_data_sets_yield_uint8_and_the_step_converts_after_the_copy():
    from patchmix.data import load_split, to_unit

    cfg = tiny_cfg("data.shapes_train=16", "data.shapes_test=8")
    ds = load_split(cfg.data, True, None, 0)
    x, _ = ds[0]
    assert x.dtype == torch.uint8 and x.shape == (3, 32, 32)  # 4x fewer bytes to pin and copy
    batch = torch.stack([ds[i][0] for i in range(8)])
    a, _ = make_step(cfg)
    b, _ = make_step(cfg)
    out_u8 = a.compute(to_unit(batch), 0, 0.2)
    out_f = b.compute(batch.float() / 255, 0, 0.2)
    assert out_u8["loss"].item() == out_f["loss"].item()


def test_training_loader_pins_for_the_device(tmp_path, monkeypatch):
    import patchmix.train as tr

    seen = []
    real = tr.make_loader

    def spy(*a, **k):
        seen.append(k.get("device"))
        return real(*a, **k)

    monkeypatch.setattr(tr, "make_loader", spy)
    cfg = tiny_cfg("data.shapes_train=16", "data.shapes_test=8", "optim.steps=1", "monitor.knn_final=false",
                   f"out={tmp_path}", "ckpt_every=0")
    tr.pretrain(cfg)
    assert seen and all(d == torch.device("cpu") for d in seen)  # make_loader pins when this is CUDA


def test_step_forward_and_backward_read_nothing_back():
    step, online = make_step(tiny_cfg("aug.local_crops=2", "aug.local_size=16"))
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with no_host_reads():
        out = step.compute(x, 0, 0.2)
        out["loss"].backward()
    assert all(p.grad is not None for p in online.backbone.parameters() if p.requires_grad)


def test_precision_reaches_autocast(monkeypatch):
    import patchmix.train as tr

    seen = []
    real = tr.runtime.autocast
    monkeypatch.setattr(tr.runtime, "autocast", lambda d, p="bf16", enabled=True: (seen.append((p, enabled)),
                                                                                     real(d, p, enabled))[1])
    step, _ = make_step(tiny_cfg("precision=fp16", "amp=true"))
    step((torch.rand(8, 3, 32, 32), None), LoopState())
    assert seen == [("fp16", True)]
    assert not step.scaler.is_enabled()  # fp16 scaling only on CUDA


def test_compile_switch_gives_the_eager_loss():
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain, _ = make_step(tiny_cfg())
    compiled, _ = make_step(tiny_cfg("model.compile=true", "model.compile_backend=eager"))
    assert compiled.forward is not compiled.online
    a, b = plain.compute(x, 0, 0.2), compiled.compute(x, 0, 0.2)
    torch.testing.assert_close(a["loss"], b["loss"], rtol=1e-5, atol=1e-6)


def test_soft_info_nce_logits_stay_fp32_under_autocast():
    from patchmix.method import soft_info_nce, soft_targets

    q, k = torch.randn(6, 16), torch.randn(6, 16)
    y = soft_targets(6, 2)[1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = soft_info_nce(q.bfloat16(), k.bfloat16(), y, 0.2)
    exact = soft_info_nce(q.bfloat16().float(), k.bfloat16().float(), y, 0.2)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, exact, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad", ["precision=fp8"])
def test_bad_precision_is_one_config_error(bad):
    from tenfold.errors import ConfigError

    with pytest.raises(ConfigError, match="precision"):
        tiny_cfg(bad)
