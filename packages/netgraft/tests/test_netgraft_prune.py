"""The pruned student initialisation (model.student_init=prune, an extension)."""
import pytest
import torch
from netgraft.config import NetGraftConfig
from netgraft.method import Grafted, build_units
from netgraft.models import build_student, build_teacher, copy_prefix_
from netgraft.partition import partition
from netgraft.prune import prune_init_
from tenfold import config
from tenfold.errors import ConfigError
from torch import nn

T_BLOCKS = [[8, 8], [16, 16], [32, 32], [32, 32]]
S_BLOCKS = [[8, 8], [16, 16], [16, 16], [16, 16]]


def _pair(student_blocks, hidden, force=False):
    torch.manual_seed(0)
    teacher = build_teacher("vgg_blockwise", 10, T_BLOCKS)
    bn = teacher.classifier[1]  # non-trivial BN statistics, so the fold is exercised
    bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
    teacher.eval().requires_grad_(False)
    student = build_student("vgg_blockwise", 10, student_blocks, hidden)
    tp, sp = partition(teacher), partition(student)
    copy_prefix_(tp, sp, 2)
    units = build_units(tp, sp, [2, 3, 4], force_adapters=force)
    prune_init_(tp, units, [2, 3, 4])
    return teacher, tp, units


def test_full_width_prune_reproduces_the_teacher():
    teacher, tp, units = _pair(T_BLOCKS, 32, force=True)  # adapters present: they become identity selections
    x = torch.randn(6, 3, 16, 16)
    h = tp.forward_prefix(x, 2)
    with torch.no_grad():
        student = nn.Sequential(*units).eval()(h)
        assert torch.allclose(student, teacher(x), atol=1e-4)
        for g in range(3):  # and so does every stage-1 hybrid
            assert torch.allclose(Grafted(tp, units[g], 2 + g)(h, start=2), teacher(x), atol=1e-4)


def test_thin_prune_takes_top_l1_filters_and_selection_adapters():
    teacher, tp, units = _pair(S_BLOCKS, 16)
    t_conv = [m for m in tp.blocks[2].modules() if isinstance(m, nn.Conv2d)]
    s_conv = [m for m in units[0].body.modules() if isinstance(m, nn.Conv2d)]
    idx0 = t_conv[0].weight.abs().sum((1, 2, 3)).topk(16).indices.sort().values
    assert torch.equal(s_conv[0].weight, t_conv[0].weight[idx0])  # full input (the copied prefix's 16 channels)
    idx1 = t_conv[1].weight.abs().sum((1, 2, 3)).topk(16).indices.sort().values
    assert torch.equal(s_conv[1].weight, t_conv[1].weight[idx1][:, idx0])
    s2t, t2s = units[0].s2t.weight[..., 0, 0], units[1].t2s.weight[..., 0, 0]
    assert s2t.shape == (32, 16) and torch.equal(s2t[idx1], torch.eye(16)) and s2t.sum() == 16
    assert torch.equal(t2s @ s2t, torch.eye(16))  # t2s picks back exactly what s2t placed
    lin = [m for m in units[2].body.modules() if isinstance(m, nn.Linear)]
    assert lin[0].weight.shape == (16, 16) and lin[1].weight.shape == (10, 16)


def test_prune_config_errors():
    with pytest.raises(ConfigError, match="student_init=prune"):
        config.load(NetGraftConfig, None, ["model.student_init=prune", "method=scratch"])
    with pytest.raises(ConfigError, match="student_init=prune"):
        config.load(NetGraftConfig, None, ["model.student_init=prune", "model.teacher_arch=resnet34",
                                           "model.student_arch=resnet18"])
    with pytest.raises(ConfigError):
        config.load(NetGraftConfig, None, ["model.student_init=pruned"])
