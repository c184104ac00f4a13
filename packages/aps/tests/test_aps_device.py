"""Device placement on a fake CUDA device (tenfold.testing.fake_cuda, no GPU needed): a whole pre-training batch
(K sub-steps, sparse and full-token, optimizer and fp16 scaler included; backward is a no-op under fake tensors),
the forward of a fine-tuning step and the evaluation paths run with model and batch on "cuda"; a tensor left on
the CPU anywhere in them raises."""
from __future__ import annotations

import pytest
import torch
from aps.config import FinetuneConfig, ModelConfig, PretrainConfig
from aps.evaluate import count_correct
from aps.finetune import finetune_loss
from aps.model import build_backbone
from aps.train import batch_to_device, build_model, build_optimizer, pretrain_forward, pretrain_step
from tenfold.testing import DeviceMismatch, fake_cuda, is_fake

TINY = ModelConfig(img_size=32, patch_size=8, embed_dim=24, depth=1, num_heads=2, hidden_dim=32, out_dim=16)
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _plain_normal_init(monkeypatch):
    """nn.init.trunc_normal_ cannot run on fake tensors (it reads a value back); values do not matter for device
    placement, so the fake models start from a plain normal draw."""
    def normal(t, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
        with torch.no_grad():
            return t.normal_(mean, std)

    monkeypatch.setattr(torch.nn.init, "trunc_normal_", normal)


def _batch(b=8, k=4, n=4, m=16):
    """A loader batch as the CPU side produces it: uint8 images, int64 indices [B, K, n]."""
    x = torch.randint(0, 256, (b, 3, 32, 32), dtype=torch.uint8)
    idx = torch.stack([torch.randperm(m)[: k * n].view(k, n) for _ in range(b)])
    return (x, idx, x.clone(), idx.flip(-1)), torch.zeros(b, dtype=torch.long)


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("full", [False, True])
def test_pretrain_forward_on_cuda(precision, full):
    with fake_cuda():
        model = build_model(PretrainConfig(model=TINY)).to(CUDA)
        x1, i1, x2, i2 = batch_to_device(_batch(), CUDA)
        assert x1.device.type == "cuda" and x1.dtype == torch.float32 and i1.device.type == "cuda"
        idx1, idx2 = (None, None) if full else (i1[:, 0], i2[:, 0])
        loss, sim = pretrain_forward(model, x1, idx1, x2, idx2, device=CUDA, tau=0.1, precision=precision)
        assert is_fake(loss) and loss.device.type == "cuda" and loss.dim() == 0 and loss.dtype == torch.float32
        assert sim.device.type == "cuda"


@pytest.mark.parametrize("full", [False, True])
def test_whole_pretrain_batch_on_cuda(full):
    """Loader batch (CPU, uint8, pinned in real runs) -> device -> K optimizer sub-steps with lr schedule and the
    fp16 GradScaler path."""
    from aps.config import OptimConfig

    with fake_cuda(skip_backward=True):
        model = build_model(PretrainConfig(model=TINY)).to(CUDA)
        opt = build_optimizer(model, OptimConfig(batch_size=8))
        scaler = torch.amp.GradScaler("cuda", enabled=True)
        out = pretrain_step(model, opt, _batch(), device=CUDA, tau=0.1, full_tokens=full, lr_of=lambda k: 1e-3,
                            precision="fp16", scaler=scaler)
        assert out["loss"].device.type == "cuda" and out["pos_cos"].device.type == "cuda"


def test_a_model_left_on_the_cpu_is_caught():
    with fake_cuda():
        model = build_model(PretrainConfig(model=TINY))  # forgot .to(cuda)
        x1, i1, x2, i2 = batch_to_device(_batch(), CUDA)
        with pytest.raises((DeviceMismatch, RuntimeError)):
            pretrain_forward(model, x1, i1[:, 0], x2, i2[:, 0], device=CUDA, tau=0.1)


def test_finetune_forward_and_eval_count_on_cuda():
    cfg = FinetuneConfig(model=TINY, mixup=0.0, cutmix=0.0, precision="bf16")  # mixing draws host scalars
    with fake_cuda():
        model = build_backbone(TINY, num_classes=10).to(CUDA)
        x = torch.rand(8, 3, 32, 32, device=CUDA)
        y = torch.randint(0, 10, (8,), device=CUDA)
        loss = finetune_loss(model, x, y, cfg, 10, CUDA)
        assert loss.device.type == "cuda" and loss.dim() == 0
        hits = count_correct(model.eval(), x, y, CUDA, precision="bf16")
        assert hits.device.type == "cuda"


def test_feature_extraction_on_cuda():
    from aps.evaluate import cls_batch

    with fake_cuda():
        backbone = build_backbone(TINY).to(CUDA)
        for precision in ("bf16", "fp32"):
            f = cls_batch(backbone.eval(), torch.rand(4, 3, 32, 32), CUDA, precision=precision)  # CPU batch in
            assert f.shape == (4, 24) and f.device.type == "cuda" and f.dtype == torch.float32
