"""Device placement on a fake CUDA device (tenfold.testing.fake_cuda, no GPU needed): a whole PatchMix training
step (augmentation on the device, mixing, momentum keys, EMA, optimizer; backward is a no-op under fake tensors)
for every objective and framework, and the evaluation paths (features, fine-tune forward) run with model and batch
on "cuda"; a tensor left on the CPU anywhere in them raises."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from patchmix.config import PretrainConfig
from patchmix.models import build_models
from patchmix.train import StepFn, build_optimizer
from tenfold import config as config_mod
from tenfold.loop import LoopState
from tenfold.testing import DeviceMismatch, fake_cuda, is_fake

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _plain_normal_init(monkeypatch):
    """nn.init.trunc_normal_ cannot run on fake tensors (it reads a value back); values do not matter for device
    placement, so the fake models start from a plain normal draw."""
    def normal(t, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
        with torch.no_grad():
            return t.normal_(mean, std)

    monkeypatch.setattr(torch.nn.init, "trunc_normal_", normal)


def _cfg(*overrides):
    return config_mod.load(PretrainConfig, DEMO, ["device=cuda", "optim.batch_size=8", "optim.warmup_epochs=0",
                                                  "aug.local_crops=2", "aug.local_size=16", *overrides])


@pytest.fixture(autouse=True)
def _host_coin_flips(monkeypatch):
    """The augmentations' per-sample coin flips come from a CPU generator and gaussian_blur skips its work when no
    sample of the batch is selected (`if not on.any()`): a host-side read of a CPU tensor, no device sync on a real
    GPU, but a value fake tensors cannot give. Here every such truth value answers "some are selected", so the blur
    runs and its device placement is checked too."""
    real = torch.Tensor.__bool__

    def truth(self):
        return True if is_fake(self) and self.device.type == "cpu" and self.dtype == torch.bool else real(self)

    monkeypatch.setattr(torch.Tensor, "__bool__", truth)


@pytest.mark.parametrize("objective,framework,precision", [
    ("patchmix", "momentum", "bf16"), ("patchmix", "no_momentum", "fp16"), ("patchmix", "momentum", "fp32"),
    ("src_only", "momentum", "bf16"), ("mocov3", "momentum", "bf16")])
def test_training_step_on_cuda(objective, framework, precision):
    cfg = _cfg(f"loss.objective={objective}", f"model.framework={framework}", f"precision={precision}")
    with fake_cuda(skip_backward=True):
        online, mom = build_models(cfg.model, cfg.model.framework)
        online.to(CUDA)
        if mom is not None:
            mom.to(CUDA)
        step = StepFn(cfg, online, mom, build_optimizer(cfg, online), CUDA, 10, 100)
        batch = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)  # what the loader yields (CPU, uint8)
        out = step((batch, torch.zeros(8, dtype=torch.long)), LoopState())
        assert is_fake(out["loss"]) and out["loss"].device.type == "cuda" and out["loss"].dtype == torch.float32


def test_training_step_on_loader_cropped_views_on_cuda():
    """Image folders: the loader yields one uint8 crop per view (2 globals, 2 locals); flip etc. on the device."""
    cfg = _cfg()
    with fake_cuda(skip_backward=True):
        online, mom = build_models(cfg.model, cfg.model.framework)
        online.to(CUDA)
        mom.to(CUDA)
        step = StepFn(cfg, online, mom, build_optimizer(cfg, online), CUDA, 10, 100)
        views = [torch.randint(0, 256, (8, 3, s, s), dtype=torch.uint8) for s in (32, 32, 16, 16)]
        out = step((views, torch.zeros(8, dtype=torch.long)), LoopState())
        assert is_fake(out["loss"]) and out["loss"].device.type == "cuda" and "l_multi" in out


def test_a_momentum_encoder_left_on_the_cpu_is_caught():
    cfg = _cfg()
    with fake_cuda(skip_backward=True):
        online, mom = build_models(cfg.model, cfg.model.framework)
        online.to(CUDA)  # the momentum encoder forgotten on the CPU
        step = StepFn(cfg, online, mom, build_optimizer(cfg, online), CUDA, 10, 100)
        with pytest.raises((DeviceMismatch, RuntimeError)):
            step((torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), None), LoopState())


def test_eval_features_and_finetune_forward_on_cuda():
    from patchmix.augment import eval_view
    from patchmix.data import to_unit

    cfg = _cfg()
    with fake_cuda():
        online, _ = build_models(cfg.model, "no_momentum")
        bb = online.backbone.to(CUDA).eval()
        x = to_unit(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8).to(CUDA))
        f = bb.cls_feature(eval_view(x, 32))
        assert f.device.type == "cuda" and f.shape == (4, 64)
        head = torch.nn.Linear(64, 10).to(CUDA)
        assert head(f).device.type == "cuda"
