"""Device placement (#17) without a GPU: the forward half of every training phase, the evaluation paths and the
frozen-prefix cache with teacher, units and batch on a fake CUDA device (tenfold.testing.fake_cuda), where any
tensor left on the CPU and mixed in raises. Backward does not run under fake tensors."""
import pytest
import torch
from netgraft.config import NetGraftConfig
from netgraft.fewshot import PrefixCache
from netgraft.method import Grafted
from netgraft.models import build_teacher
from netgraft.train import _logits, build_models, phase_model, phases, step_loss, student_from_prefix
from tenfold import config
from tenfold.testing import DeviceMismatch, fake_cuda, is_fake

MINI = ["model.teacher_blocks=[[8, 8], [16, 16], [32, 32], [32, 32]]",
        "model.student_blocks=[[8, 8], [16, 16], [16, 16], [16, 16]]", "model.student_head_hidden=16",
        "model.positions=[2, 3, 4]", "stage1.epochs=[1, 1, 1]", "stage2.epochs=[1, 1]", "data.image_size=16"]
CUDA = torch.device("cuda")


def _setup(method: str, extra=()):
    cfg = config.load(NetGraftConfig, None, MINI + [f"method={method}", "precision=bf16", *extra])
    state = build_teacher("vgg_blockwise", 10, cfg.model.teacher_blocks).state_dict()  # fake, inside the mode
    return cfg, build_models(cfg, state, device=CUDA)


@pytest.mark.parametrize("method", ["netgraft", "kd", "kd_scratch", "scratch"])
def test_training_step_forward_on_fake_cuda(method):
    with fake_cuda():
        cfg, s = _setup(method, ["loss=kl"] if method == "kd_scratch" else [])
        assert all(p.device.type == "cuda" for p in s.teacher.parameters())
        assert all(p.device.type == "cuda" for p in list(s.units.parameters()) + list(s.student.parameters()))
        x = torch.randn(4, 3, 16, 16, device="cuda")
        for ph in phases(cfg):  # every stage-1 unit and stage-2 chain, or the baseline's one phase
            model, _ = phase_model(cfg, s, ph)
            batch = (x, torch.zeros(4, dtype=torch.long, device="cuda")) if ph.kind == "scratch" else x
            loss = step_loss(cfg, s, ph, model, batch)
            assert is_fake(loss) and loss.device.type == "cuda" and loss.dim() == 0, ph


def test_evaluation_and_prefix_cache_on_fake_cuda():
    with fake_cuda():
        cfg, s = _setup("netgraft")
        x = torch.randn(6, 3, 16, 16)  # test images stay on the host; evaluation moves each batch
        assert _logits(s, student_from_prefix(s), x).shape == (6, 10)
        assert _logits(s, s.teacher, x).shape == (6, 10)
        hybrid = Grafted(s.tpart, s.units[1], cfg.model.positions[1], 1)
        assert _logits(s, lambda t: hybrid(t), x).shape == (6, 10)
        prefix_fn = lambda v: s.tpart.forward_prefix(v.to(CUDA), s.prefix_end)  # noqa: E731 (as in build)
        cache = PrefixCache([x, x.flip(-1)], prefix_fn, lambda h: s.tpart.forward(h, start=s.prefix_end), flip=True)
        assert cache.h[0].device.type == "cuda" and cache.z[0].shape == (6, 10)
        s.cached = True
        ph = phases(cfg)[-1]
        model, _ = phase_model(cfg, s, ph)
        h, z = torch.stack([cache.h[0][0], cache.h[1][1]]), torch.stack([cache.z[0][0], cache.z[1][1]])
        assert step_loss(cfg, s, ph, model, (h, z)).device.type == "cuda"


def test_fake_cuda_catches_a_host_tensor_in_the_step():
    """The check can fail: a batch left on the CPU meets the CUDA teacher."""
    with fake_cuda():
        cfg, s = _setup("kd")
        ph = phases(cfg)[0]
        model, _ = phase_model(cfg, s, ph)
        h = torch.randn(4, 16, 4, 4)  # the cached prefix output, never moved: must raise, not run on the host
        with pytest.raises((DeviceMismatch, RuntimeError)):
            model(h, start=s.prefix_end)
