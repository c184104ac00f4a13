"""Device placement on a fake CUDA device (tenfold.testing.fake_cuda): the MosaicKD game (D, G and student
steps, with and without cached teacher logits), the data-free baseline, the batch stream with augmentation and the
teacher-logit / evaluation path create nothing on the CPU. Backward is skipped (no GPU here)."""
import pytest
import torch
from mosaickd.baselines import DataFreeGame
from mosaickd.common import teacher_logits
from mosaickd.data import BatchStream, ImageSet
from mosaickd.game import MosaicGame
from mosaickd.nets import NORMALIZE_DICT, Normalizer, PatchDiscriminator, UpsampleGenerator
from tenfold.nets import create
from tenfold.testing import DeviceMismatch, fake_cuda

CUDA = torch.device("cuda")


def _players(num_classes=6):
    T = create("wrn16_1", num_classes).to(CUDA)
    S = create("wrn16_1", num_classes).to(CUDA)
    G = UpsampleGenerator(16, 8).to(CUDA)
    return T, S, G, Normalizer(*NORMALIZE_DICT["cifar10"])


def _on_cuda(d: dict):
    return {k for k, v in d.items() if torch.is_tensor(v) and v.device.type != "cuda"}


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_mosaic_outer_step_on_fake_cuda(precision):
    with fake_cuda(skip_backward=True):
        T, S, G, norm = _players()
        game = MosaicGame(G, PatchDiscriminator(3, 16).to(CUDA), S, T, norm, total_iters=10, kd_steps=2,
                          device=CUDA, precision=precision)
        images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)  # the OOD pool arrives on the CPU
        pool = ImageSet(images, torch.zeros(12, dtype=torch.long), "ood")
        real = BatchStream(pool, 4, seed=0, normalizer=norm, augment=False, device=CUDA)
        kd = BatchStream(pool, 4, seed=1, normalizer=Normalizer(*NORMALIZE_DICT["cifar10"]), augment=True,
                         device=CUDA)
        x_real, _ = real.next()
        assert x_real.device.type == "cuda"
        out = game.outer_step(x_real, lambda: (kd.next()[0], None))
        assert not _on_cuda(out) and out["kd_loss"].device.type == "cuda"
        t_cache = teacher_logits(T, pool, norm, CUDA, batch=5, precision=precision)
        assert t_cache.device.type == "cuda" and t_cache.shape == (12, 6)

        def cached():
            x, idx = kd.next()
            return x, t_cache[idx.to(t_cache.device)]

        out = game.outer_step(x_real, cached)
        assert out["kd_loss"].device.type == "cuda"


def test_datafree_baseline_step_on_fake_cuda():
    with fake_cuda(skip_backward=True):
        T, S, G, norm = _players()
        opt = torch.optim.SGD(S.parameters(), lr=0.1)
        game = DataFreeGame(G, S, T, norm, opt, kd_steps=2, device=CUDA)
        m = game.step(4)
        assert m["loss"].device.type == "cuda" and m["g_total"].device.type == "cuda"


def test_a_game_left_on_the_cpu_is_caught():
    with fake_cuda(skip_backward=True):
        T, S, _, norm = _players()
        G_cpu = UpsampleGenerator(16, 8)  # forgot .to(device)
        game = MosaicGame(G_cpu, None, S, T, norm, total_iters=10, kd_steps=1, local=0.0, device=CUDA)
        with pytest.raises((DeviceMismatch, RuntimeError)):
            game.outer_step(torch.randn(4, 3, 32, 32, device=CUDA))
