"""Spec §7.1 unit tests: partition, graft identity, loss, gradient flow/freezing, merge, schedule."""
import copy

import pytest
import torch
import torchvision
from netgraft.method import Grafted, Student, build_units, graft_loss, merge_adapters, normalized_logit_loss
from netgraft.models import VGG16_TEACHER, build_student, build_teacher, copy_prefix_
from netgraft.partition import partition
from tenfold import nets
from torch import nn


def test_vgg16_partition_shapes():
    t, s = partition(build_teacher("vgg_blockwise", 10)), partition(build_student("vgg_blockwise", 10))
    x = torch.randn(1, 3, 32, 32)
    shapes_t, shapes_s = [], []
    ht, hs = x, x
    for bt, bs in zip(t.blocks, s.blocks):
        ht, hs = bt(ht), bs(hs)
        shapes_t.append(list(ht.shape[1:]))
        shapes_s.append(list(hs.shape[1:]))
    assert shapes_t == [[64, 16, 16], [128, 8, 8], [256, 4, 4], [512, 2, 2], [512, 1, 1]]
    assert shapes_s == [[64, 16, 16], [128, 8, 8], [256, 4, 4], [256, 2, 2], [256, 1, 1]]


def _identity_pair(teacher):
    """Student with the teacher's widths and weights, every adapter a 1×1 identity conv."""
    tp = partition(teacher)
    student = copy.deepcopy(teacher)
    sp = partition(student)
    units = build_units(tp, sp, [3, 4, 5], force_adapters=True)
    for u in units:
        for a in (u.t2s, u.s2t):
            if isinstance(a, nn.Conv2d):
                with torch.no_grad():
                    a.weight.copy_(torch.eye(a.in_channels).view(a.in_channels, a.in_channels, 1, 1))
                    a.bias.zero_()
    return tp, sp, units


def test_graft_identity_every_position_and_chain():
    torch.manual_seed(0)
    teacher = build_teacher("vgg_blockwise", 10).eval()
    with torch.no_grad():  # non-trivial running statistics for the head BN
        teacher.classifier[1].running_mean.normal_()
        teacher.classifier[1].running_var.uniform_(0.5, 2)
    tp, sp, units = _identity_pair(teacher)
    assert all(isinstance(u.s2t, nn.Conv2d) for u in units[:2]) and isinstance(units[1].t2s, nn.Conv2d)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = teacher(x)
        for g, pos in enumerate([3, 4, 5]):
            out = Grafted(tp, units[g], pos, 1)(x)
            assert torch.allclose(out, ref, atol=1e-5)
            assert normalized_logit_loss(out, ref).item() < 1e-8
        for n in (2, 3):
            out = Grafted(tp, nn.Sequential(*units[:n]), 3, n)(x)
            assert torch.allclose(out, ref, atol=1e-5)


def test_loss_hand_computed():
    zg, zt = torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, 3.0]])
    assert normalized_logit_loss(zg, zt).item() == pytest.approx(0.08, abs=1e-6)
    assert normalized_logit_loss(zg.repeat(2, 1), zt.repeat(2, 1)).item() == pytest.approx(0.16, abs=1e-6)
    assert normalized_logit_loss(5 * zg, zt).item() == pytest.approx(0.08, abs=1e-6)
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 10, generator=g, dtype=torch.float64), torch.randn(6, 10, generator=g, dtype=torch.float64)
    cos = nn.functional.cosine_similarity(a, b, dim=1)
    assert normalized_logit_loss(a, b).item() == pytest.approx((2 - 2 * cos).sum().item(), rel=1e-9)
    assert normalized_logit_loss(3 * b, b).item() == pytest.approx(0.0, abs=1e-12)
    assert normalized_logit_loss(-b, b).item() == pytest.approx(4.0 * 6, rel=1e-9)
    # the sum reduction: the loss grows with the batch (the n/10 lr rule assumes it)
    assert normalized_logit_loss(a[:3], b[:3]).item() < normalized_logit_loss(a, b).item()
    assert graft_loss(a, b, "mse").item() == pytest.approx(((a - b) ** 2).mean().item())


def _mini():
    torch.manual_seed(0)
    teacher = build_teacher("vgg_blockwise", 10, [[8, 8], [16, 16], [32, 32], [32, 32]]).eval().requires_grad_(False)
    student = build_student("vgg_blockwise", 10, [[8, 8], [16, 16], [16, 16], [16, 16]], head_hidden=16)
    tp, sp = partition(teacher), partition(student)
    copy_prefix_(tp, sp, 2)
    return teacher, tp, sp, build_units(tp, sp, [2, 3, 4])


def test_stage1_step_changes_only_its_unit_and_grads_flow_through_teacher():
    teacher, tp, sp, units = _mini()
    x = torch.randn(8, 3, 16, 16)
    for g, pos in enumerate([2, 3, 4]):
        before_t = copy.deepcopy(teacher.state_dict())
        before_u = copy.deepcopy(units.state_dict())
        model = Grafted(tp, units[g], pos, 1)
        opt = torch.optim.Adam(units[g].parameters(), lr=1e-2)
        loss = normalized_logit_loss(model(x), teacher(x))
        loss.backward()
        for name, p in units[g].named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"unit {g} {name} got no gradient"
        opt.step()
        assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before_t.items())
        after = units.state_dict()
        for k, v in before_u.items():
            mine = k.startswith(f"{g}.")
            assert torch.equal(v, after[k]) != mine, k
        units.zero_grad()
    chain = nn.Sequential(*units)
    normalized_logit_loss(Grafted(tp, chain, 2, 3)(x), teacher(x)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in chain.parameters())


def test_teacher_bn_stays_in_eval_mode():
    torch.manual_seed(0)
    teacher = build_teacher("vgg_blockwise", 10, [[8], [16], [16]]).eval().requires_grad_(False)
    student = build_student("vgg_blockwise", 10, [[8], [8], [8]], head_hidden=8)
    tp, sp = partition(teacher), partition(student)
    units = build_units(tp, sp, [1, 2, 3])
    g = Grafted(tp, units[0], 1, 1)
    g.train()  # training the graft must not switch the teacher (and its head BN) to train mode
    rm = teacher.classifier[1].running_mean.clone()
    g(torch.randn(4, 3, 8, 8))
    assert not teacher.training and torch.equal(rm, teacher.classifier[1].running_mean)


def test_merge_adapters_exact_and_param_counts():
    torch.manual_seed(0)
    teacher, student = build_teacher("vgg_blockwise", 10), build_student("vgg_blockwise", 10)
    tp, sp = partition(teacher), partition(student)
    copy_prefix_(tp, sp, 3)
    units = build_units(tp, sp, [3, 4, 5])
    for p in units.parameters():  # random adapters and biases, not just the zero-bias init
        with torch.no_grad():
            p.add_(0.05 * torch.randn_like(p))
    s = Student(nn.ModuleList(list(sp.blocks[:3])), units).eval()
    assert sum(p.numel() for p in student.parameters()) == 5_412_682
    assert sum(p.numel() for p in s.parameters()) == 5_938_506
    merged = merge_adapters(s)
    assert sum(p.numel() for p in merged.parameters()) == 5_344_330
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(merged(x), s(x), atol=1e-4, rtol=1e-4)


def test_progressive_schedule_and_final_student():
    from netgraft.config import NetGraftConfig
    from netgraft.train import phases

    cfg = NetGraftConfig()
    plan = phases(cfg)
    assert [(p.kind, p.index) for p in plan] == [("block", 0), ("block", 1), ("block", 2), ("net", 0), ("net", 1)]
    teacher, tp, sp, units = _mini()
    s = Student(nn.ModuleList(list(sp.blocks[:2])), units).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(s(x), Grafted(tp, nn.Sequential(*units), 2, 3)(x), atol=1e-6)
    # the shared prefix is the teacher's (copied), the units are the student's own modules
    assert all(torch.equal(a, b) for a, b in zip(s.prefix.state_dict().values(),
                                                  nn.ModuleList(list(tp.blocks[:2])).state_dict().values()))
    assert units[0].body is sp.blocks[2] and units[2].body is sp.head


@pytest.mark.parametrize("kind", ["cifar", "torchvision"])
def test_resnet_partitions_graft(kind):
    torch.manual_seed(0)
    if kind == "cifar":
        teacher, student, size = nets.create("resnet34", 10, width=16), nets.create("resnet18", 10, width=8), 32
    else:
        teacher, student = torchvision.models.resnet34(num_classes=10), torchvision.models.resnet18(num_classes=10)
        size = 64
    teacher.eval()
    tp, sp = partition(teacher), partition(student)
    assert tp.num_blocks == 5 and len(tp.channels) == 5
    units = build_units(tp, sp, [1, 2, 3, 4, 5])
    x = torch.randn(2, 3, size, size)
    for g in range(5):
        assert Grafted(tp, units[g], g + 1, 1)(x).shape == (2, 10)
    # the student's prefix is always a copy of the teacher's (here the stem, whose widths differ from the
    # student's own stem, so unit 0 starts with a t2s adapter)
    s = Student(nn.ModuleList([copy.deepcopy(tp.blocks[0])]), units).eval()
    assert isinstance(units[0].t2s, nn.Conv2d) == (kind == "cifar")
    with torch.no_grad():
        assert torch.allclose(merge_adapters(s)(x), s(x), atol=1e-4, rtol=1e-4)


def test_bad_positions():
    teacher, tp, sp, _ = _mini()
    with pytest.raises(ValueError, match="increasing"):
        build_units(tp, sp, [3, 2])
    with pytest.raises(ValueError, match="outside"):
        build_units(tp, sp, [3, 4, 5])
    with pytest.raises(ValueError, match="does not fit"):
        Grafted(tp, nn.Identity(), 4, 2)
    assert VGG16_TEACHER[3] == [512, 512, 512]
