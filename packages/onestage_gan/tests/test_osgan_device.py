"""Device placement on a fake CUDA device (tenfold.testing.fake_cuda): the GAN steps in one and two stages (both
forms, every precision), the data-free KD steps (teacher input normalisation included: it used to be built on the
CPU, so every KD step on CUDA failed) and the quality-proxy feature path create nothing on the CPU. Backward is
skipped (no GPU here)."""
import pytest
import torch
from onestage_gan.fid import MnistNet, features
from onestage_gan.kd import kd_one_stage_step, kd_two_stage_step
from onestage_gan.losses import get_loss
from onestage_gan.method import one_stage_step, two_stage_step
from onestage_gan.nets import DCDiscriminator, DCGenerator
from onestage_gan.proxy import _cifar_input
from tenfold import runtime
from tenfold.nets import create
from tenfold.testing import DeviceMismatch, fake_cuda, is_fake

CUDA = torch.device("cuda")


def _gan(d_norm):
    G = DCGenerator(8, 3, 8, 32).to(CUDA)
    D = DCDiscriminator(3, 8, 32, d_norm).to(CUDA)
    return G, D, torch.optim.Adam(G.parameters(), 2e-4), torch.optim.Adam(D.parameters(), 2e-4)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
@pytest.mark.parametrize("loss_name,d_norm,form", [("minimax", "bn", "simple"), ("nonsaturating", "gn", "simple"),
                                                   ("hinge", "gn", "packed"), ("wgan", "bn", "simple")])
def test_gan_steps_on_fake_cuda(loss_name, d_norm, form, precision):
    with fake_cuda(skip_backward=True):
        G, D, og, od = _gan(d_norm)
        x = torch.randn(4, 3, 32, 32, device=CUDA)
        z = torch.randn(4, 8, device=CUDA)
        with runtime.autocast(CUDA, precision):
            r = one_stage_step(G, D, og, od, x, z, get_loss(loss_name), form=form, clip=0.01)
            assert r.loss_d.device.type == "cuda" and is_fake(r.loss_g)
            r = two_stage_step(G, D, og, od, x, z, torch.randn(4, 8, device=CUDA), get_loss(loss_name), clip=0.01)
            assert r.loss_d.device.type == "cuda"


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
@pytest.mark.parametrize("mode", ["one", "two"])
def test_r1_penalty_on_fake_cuda(mode, precision):
    """R1 builds its input gradient with autograd.grad (double backward graph): no CPU tensor may enter it."""
    with fake_cuda(skip_backward=True):
        G, D, og, od = _gan("bn")
        x = torch.randn(4, 3, 32, 32, device=CUDA)
        z = torch.randn(4, 8, device=CUDA)
        with runtime.autocast(CUDA, precision):
            if mode == "one":
                r = one_stage_step(G, D, og, od, x, z, get_loss("minimax"), r1=10.0)
            else:
                r = two_stage_step(G, D, og, od, x, z, torch.randn(4, 8, device=CUDA), get_loss("minimax"), r1=10.0)
            assert r.loss_d.device.type == "cuda" and is_fake(r.loss_d)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_kd_steps_on_fake_cuda(precision):
    with fake_cuda(skip_backward=True):
        T = create("wrn16_1", 10).to(CUDA).eval().requires_grad_(False)
        S = create("wrn16_1", 10).to(CUDA)
        G = DCGenerator(16, 3, 8, 32).to(CUDA)
        og, os_ = torch.optim.Adam(G.parameters(), 1e-3), torch.optim.SGD(S.parameters(), 0.1)
        z = torch.randn(4, 16, device=CUDA)
        with runtime.autocast(CUDA, precision):
            assert kd_one_stage_step(G, S, T, og, os_, z).device.type == "cuda"
            assert kd_two_stage_step(G, S, T, og, os_, z, z, student_steps=2).device.type == "cuda"


def test_quality_proxy_features_on_fake_cuda():
    with fake_cuda():
        fake = torch.rand(6, 3, 32, 32, device=CUDA) * 2 - 1
        x = _cifar_input(fake)
        assert x.device.type == "cuda"
        f, p = features(create("wrn16_1", 10).to(CUDA).eval(), fake[:, :3], batch=4, transform=_cifar_input)
        assert f.device.type == "cuda" and p.shape == (6, 10)
        f, _ = features(MnistNet(32).to(CUDA), fake[:, :1], batch=4)
        assert f.shape == (6, 64)


def test_fake_cuda_catches_a_cpu_tensor():
    """The guard itself: a CPU tensor mixed into a CUDA forward raises (as real CUDA would)."""
    with fake_cuda():
        G = DCGenerator(8, 1, 8, 16).to(CUDA)
        with pytest.raises((DeviceMismatch, RuntimeError), match="device"):
            G(torch.randn(2, 8))


@pytest.mark.parametrize("task", ["gan", "kd"])
def test_precision_is_threaded_to_autocast(task, monkeypatch, tmp_path):
    """cfg.precision reaches the spine's autocast (bf16 used to be hard-wired; the paper's speed figure is fp32)."""
    from onestage_gan import kd, train
    from onestage_gan.config import OSGANConfig
    from tenfold import config

    seen = []
    real = runtime.autocast
    monkeypatch.setattr(runtime, "autocast", lambda dev, precision="bf16", enabled=True: (
        seen.append(precision), real(dev, precision, enabled))[1])
    if task == "kd":
        monkeypatch.setattr(kd, "_teacher_path", lambda cfg: None)
        monkeypatch.setattr(kd.nets, "load_teacher", lambda p: create("wrn16_1", 10).eval().requires_grad_(False))
    for precision in ("fp32", "fp16", "bf16"):
        over = ["device=cpu", f"precision={precision}", "max_steps=1", "eval_samples=0", f"out={tmp_path / precision}"]
        if task == "gan":
            train.run_gan(config.load(OSGANConfig, None, over + ["model.arch=mlp", "data.name=ring",
                                                                  "data.num_samples=64", "batch_size=16"]))
        else:
            kd.run_kd(config.load(OSGANConfig, None, over + ["task=kd", "batch_size=2", "kd.g_width=8", "kd.zdim=8",
                                                              "kd.iters_per_epoch=2", "max_steps=2"]), stop_at=1)
    assert seen == ["fp32", "fp16", "bf16"]


@pytest.mark.parametrize("mode", ["one", "two"])
def test_grad_scaler_path_gives_the_unscaled_update(mode):
    """fp16 runs pass a GradScaler: γ scales the scaled gradient linearly, so the step equals the unscaled one."""
    from onestage_gan.nets import MLPDiscriminator, MLPGenerator

    def run(scaler):
        torch.manual_seed(0)
        G, D = MLPGenerator(4, 16).double(), MLPDiscriminator(2, 16).double()
        og, od = torch.optim.SGD(G.parameters(), 0.1), torch.optim.SGD(D.parameters(), 0.1)
        x, z = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
        if mode == "one":
            one_stage_step(G, D, og, od, x, z, get_loss("nonsaturating"), scaler=scaler)
        else:
            two_stage_step(G, D, og, od, x, z, z, get_loss("nonsaturating"), scaler=scaler)
        return [p.detach().clone() for p in [*G.parameters(), *D.parameters()]]

    plain = run(None)
    scaled = run(torch.amp.GradScaler("cpu", init_scale=1024.0))
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-15) for a, b in zip(plain, scaled))
