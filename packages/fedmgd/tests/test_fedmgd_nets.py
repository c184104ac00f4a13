import torch
import torch.nn.functional as F
from fedmgd.nets import Classifier, Discriminator, Generator, init_weights, n_params
from torch import nn


def test_parameter_counts_match_reference_table():
    assert n_params(Generator(26, 1)) == 3_358_657
    assert n_params(Generator(10, 1)) == 3_325_889
    assert n_params(Generator(10, 3)) == 3_327_043
    assert n_params(Discriminator(1)) == 3_033_409
    assert n_params(Discriminator(3)) == 3_034_561
    assert n_params(Classifier(26, 1)) == 2_130_330
    assert n_params(Classifier(10, 1)) == 2_122_122
    assert n_params(Classifier(10, 3)) == 2_123_722


def test_shapes_and_ranges_32_and_16():
    torch.manual_seed(0)
    for size, ngf in ((32, 16), (16, 8)):
        G = init_weights(Generator(10, 3, size, n_z=16, ngf=ngf, nf_max=4 * ngf))
        y = torch.tensor([0, 3, 9])
        x = G(torch.randn(3, 16, 1, 1), F.one_hot(y, 10).float().view(3, 10, 1, 1))
        assert x.shape == (3, 3, size, size) and x.abs().max() <= 1
        d = init_weights(Discriminator(3, size, ngf, 4 * ngf))(x)
        assert d.shape == (3, 1) and bool(((d > 0) & (d < 1)).all())
        assert Classifier(10, 3, size)(x).shape == (3, 10)


def test_init_overrides_xavier_and_bn():
    torch.manual_seed(0)
    C = init_weights(Classifier(10, 3))
    fc = C.head[0].weight
    assert abs(float(fc.detach().std()) - 0.02) < 0.002  # Xavier on 4096->512 would give std ~0.033
    assert float(C.head[0].bias.detach().abs().max()) == 0
    G = init_weights(Generator(10, 3))
    bn2 = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)]
    w = torch.cat([m.weight for m in bn2])
    assert abs(float(w.mean()) - 1) < 0.01 and abs(float(w.std()) - 0.02) < 0.005
    bn1 = [m for m in G.modules() if isinstance(m, nn.BatchNorm1d)]
    assert all(float((m.weight - 1).abs().max()) == 0 for m in bn1)  # BatchNorm1d keeps PyTorch defaults
    conv = G.blocks[0].conv0.weight
    assert abs(float(conv.std()) - 0.02) < 0.002
