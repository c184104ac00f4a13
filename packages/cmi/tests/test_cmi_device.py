"""Device placement on a fake CUDA device (tenfold.testing.fake_cuda): one CMI synthesis iteration's forward
(global + local views, hooks, head, memory-bank negatives), the generative baselines' generator losses and the KD
forward on pool batches create nothing on the CPU; plus the fp32 hooks under bf16 and the uint8 pool path (real
tensors, CPU). Backward and `.item()` do not run on fake tensors, so whole synthesis rounds are not run here."""
import pytest
import torch
from cmi.augment import Normalizer
from cmi.config import SynthConfig
from cmi.hooks import TeacherTaps
from cmi.models import ToyNet
from cmi.pool import ImagePool
from cmi.synthesis import CMISynthesizer, GenerativeSynthesizer
from tenfold.data.transforms import CIFAR10_MEAN, CIFAR10_STD
from tenfold.nets import create
from tenfold.testing import fake_cuda

CUDA = torch.device("cuda")


def _cfg(**kw):
    return SynthConfig(**{**dict(batch_size=4, g_steps=1, nz=16, ngf=8, bank_size=8, n_neg=4, head_dim=8), **kw})


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_cmi_synthesis_iteration_forward_on_fake_cuda(precision):
    with fake_cuda():
        teacher = create("wrn16_1", 10).to(CUDA).eval().requires_grad_(False)
        student = create("wrn16_1", 10).to(CUDA).eval().requires_grad_(False)
        syn = CMISynthesizer(teacher, student, 10, _cfg(adv=0.5), Normalizer(CIFAR10_MEAN, CIFAR10_STD), CUDA,
                             img_size=32, arch="wrn16_1", precision=precision)
        z = torch.randn(4, 16, device=CUDA)
        y = torch.randint(10, (4,), device=CUDA)
        terms = syn.losses(syn.generator(z), y)  # no negatives yet
        assert terms["loss"].device.type == "cuda" and terms["fg"].shape[0] == 4
        syn.bank.add(torch.cat([terms["fl"], terms["fg"]], 1))  # the bank lives on the device
        terms = syn.losses(syn.generator(z), y)  # with cached negatives from the bank
        assert terms["cr"].device.type == "cuda" and terms["cached"].device.type == "cuda"


@pytest.mark.parametrize("method_kw", [dict(bn=1.0, oh=1.0, adv=1.0), dict(act=0.1, balance=5.0, oh=1.0)])
def test_generative_baseline_losses_on_fake_cuda(method_kw):
    with fake_cuda():
        teacher = create("wrn16_1", 10).to(CUDA).eval().requires_grad_(False)
        syn = GenerativeSynthesizer(teacher, create("wrn16_1", 10).to(CUDA), 10, _cfg(**method_kw),
                                    Normalizer(CIFAR10_MEAN, CIFAR10_STD), CUDA, img_size=32, precision="bf16")
        terms = syn.generator_losses(torch.randn(4, 16, device=CUDA))
        assert terms["loss"].device.type == "cuda"
        assert syn.sample(3).device.type == "cuda"


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_kd_forward_on_pool_batches_on_fake_cuda(precision):
    from tenfold import runtime

    with fake_cuda():
        teacher = create("wrn16_1", 10).to(CUDA).eval().requires_grad_(False)
        student = create("wrn16_1", 10).to(CUDA)
        pool = ImagePool(quantize=True)
        pool.add(torch.rand(6, 3, 32, 32))  # synthesized images arrive as float and are stored as uint8 on the host
        for x in pool.batches(2, 4, Normalizer(CIFAR10_MEAN, CIFAR10_STD), CUDA):
            assert x.device.type == "cuda" and x.dtype == torch.float32
            with torch.no_grad(), runtime.autocast(CUDA, precision):
                t = teacher(x)
            with runtime.autocast(CUDA, precision):
                s = student(x)
            assert (s.float() - t.float()).device.type == "cuda"


def test_hooks_compute_fp32_statistics_from_low_precision_activations():
    """Under bf16 autocast the BN inputs are bf16; the BN-statistics loss and the contrastive features are fp32."""
    torch.manual_seed(0)
    net = ToyNet(16, 4).eval()
    taps = TeacherTaps(net, None, None)
    x = torch.rand(8, 3, 16, 16)
    net(x)
    ref_bn, ref_f = taps.bn_loss(), taps.features()
    net.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert taps.bn_loss().dtype == torch.float32 and taps.features().dtype == torch.float32
    assert torch.allclose(taps.bn_loss(), ref_bn, rtol=0.05)
    assert torch.allclose(taps.features(), ref_f, rtol=0.05, atol=0.05)


def test_pool_stays_uint8_and_batches_match_the_float_pool():
    """KD batches gather uint8 rows and convert after the copy: same values as converting the whole pool first."""
    pool = ImagePool(quantize=True)
    pool.add(torch.rand(10, 3, 8, 8))
    norm = Normalizer([0.5] * 3, [0.25] * 3)
    torch.manual_seed(0)
    got = list(pool.batches(3, 4, norm, "cpu", augment=False))
    assert pool.stored().dtype == torch.uint8  # no float copy of the pool is kept
    torch.manual_seed(0)
    perm = torch.randperm(10)
    full = pool.tensor()
    assert torch.equal(got[0], norm(full[perm[:4]])) and torch.equal(got[1], norm(full[perm[4:8]]))
    assert all(b.dtype == torch.float32 and b.shape == (4, 3, 8, 8) for b in got)
