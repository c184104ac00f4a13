"""Issue #17: device placement on a fake CUDA device (no GPU needed), no host syncs in the augmentation, fp32
contrastive logits under autocast, the compile switch."""
import random

import pytest
import torch
from mgc.augment import PARAMS, _blur, _gray, _jitter_op, apply_photometric, sample_photometric
from mgc.config import AugmentConfig, ModelConfig, TrainConfig
from mgc.method import info_nce
from mgc.model import MGC, patch_tokens
from mgc.train import maybe_compile, optimize_step
from mgc.views import render
from tenfold.config import load
from tenfold.testing import fake_cuda

TINY = ModelConfig(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2, levels=[1, 2, 4], pairs=[4, 2, 1],
                   proj_hidden=32, pred_hidden=32, out_dim=16)


@pytest.fixture(autouse=True)
def _plain_normal_init(monkeypatch):
    """nn.init.trunc_normal_ cannot run on fake tensors (DataDependentOutputException on torch 2.14); values do
    not matter for device placement, so the fake models are initialised with a plain normal draw."""
    def normal(t, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
        with torch.no_grad():
            return t.normal_(mean, std)

    monkeypatch.setattr(torch.nn.init, "trunc_normal_", normal)


def _corr(cfg: ModelConfig, b: int, device):
    out = []
    for c, k in zip(cfg.levels, cfg.pairs):
        n = (cfg.grid // c) ** 2
        out.append((torch.randint(0, n, (b, k), device=device), torch.randint(0, n, (b, k), device=device),
                    torch.full((b, k), 0.25, device=device)))
    return out


def _views(b: int, s: int, aug: AugmentConfig):
    rng = random.Random(0)
    return {"view1": torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8),
            "view2": torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8),
            "photo1": torch.stack([sample_photometric(aug, 0, rng) for _ in range(b)]),
            "photo2": torch.stack([sample_photometric(aug, 1, rng) for _ in range(b)])}


def test_training_step_forward_on_fake_cuda():
    """Loader batch (CPU, uint8) -> render on the device -> the whole MGC forward (EMA, keys, loss) and the
    optimizer step; any tensor left on the CPU raises. The augmentation has no data-dependent branch (a
    `bool(mask.any())` or boolean indexing cannot run on fake tensors)."""
    cfg = TrainConfig(model=TINY)
    with fake_cuda(skip_backward=True):
        dev = torch.device("cuda")
        model = MGC(cfg.model, cfg.loss).to(dev)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        x1, x2 = render(_views(4, 16, cfg.augment), cfg.augment, dev)
        assert x1.device.type == "cuda" and x1.dtype == torch.float32
        loss, info = optimize_step(model, opt, torch.amp.GradScaler("cuda", enabled=False),
                                   [p for p in model.parameters() if p.requires_grad], x1, x2,
                                   _corr(cfg.model, 4, dev), 0.99, cfg, dev)
        assert loss.device.type == "cuda" and loss.shape == () and set(info) == {"loss_c1", "loss_c2", "loss_c4"}


def test_evaluation_paths_on_fake_cuda():
    aug = AugmentConfig()
    with fake_cuda():
        dev = torch.device("cuda")
        model = MGC(TINY).to(dev)
        x1, x2 = render(_views(3, 16, aug), aug, dev, photometric=False)
        t = patch_tokens(model.backbone("momentum"), x1)
        assert t.device.type == "cuda" and t.shape == (3, 16, 32)
        loss, _ = model(x1, x2, _corr(TINY, 3, dev), None)  # evaluation: no EMA update
        assert loss.device.type == "cuda"


def test_batched_photometric_equals_per_image_ops():
    """The where-selected batch equals each image augmented on its own, op by op in its own order."""
    aug = AugmentConfig()
    rng = random.Random(3)
    b = 24
    x = torch.rand(b, 3, 12, 12)
    p = torch.stack([sample_photometric(aug, v % 2, rng) for v in range(b)])
    p[:4, 0], p[4:8, 0] = 1.0, 0.0  # both jitter branches, whatever the draw
    got = apply_photometric(x.clone(), p, aug)
    for i in range(b):
        xi, pi = x[i:i + 1].clone(), p[i]
        if pi[0] > 0:
            for op in pi[5:9].long().tolist():
                xi = _jitter_op(xi, op, pi[1 + op:2 + op])
        if pi[9] > 0:
            xi = _gray(xi).expand(-1, 3, -1, -1)
        if pi[10] > 0:
            xi = _blur(xi, pi[11:12], aug.blur_sigma[1])
        if pi[12] > 0:
            xi = torch.where(xi >= 128 / 255, 1.0 - xi, xi)
        want = (xi - torch.tensor(aug.mean).view(1, 3, 1, 1)) / torch.tensor(aug.std).view(1, 3, 1, 1)
        torch.testing.assert_close(got[i:i + 1], want, atol=1e-5, rtol=0, msg=f"image {i}, {dict(zip(PARAMS, pi))}")


def test_info_nce_logits_are_fp32_under_autocast():
    """method.py: 'the softmax runs in fp32' -- also when autocast would run the matmul in bf16."""
    torch.manual_seed(0)
    q, k = torch.randn(64, 16), torch.randn(64, 16)
    ref = info_nce(q, k, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = info_nce(q, k, 0.1)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_precision_is_a_config_key(precision):
    cfg = load(TrainConfig, None, [f"precision={precision}", "data.dataset=synthetic"])
    assert cfg.precision == precision


def test_compile_switch_keeps_state_dict_names():
    """cfg.compile compiles the MGC forward in place; checkpoints and exports keep their names. The compiled
    forward + backward itself runs in `bench/gpu.py --smoke` (make bench-gpu-smoke): tracing costs ~10 s of CPU."""
    cfg = load(TrainConfig, None, ["compile=true", "compile_backend=eager", "data.dataset=synthetic"])
    model = MGC(TINY)
    names = list(model.state_dict())
    assert maybe_compile(model, cfg) is model and model._compiled_call_impl is not None
    assert list(model.state_dict()) == names
    plain = MGC(TINY)
    assert maybe_compile(plain, TrainConfig(model=TINY)) is plain and plain._compiled_call_impl is None
