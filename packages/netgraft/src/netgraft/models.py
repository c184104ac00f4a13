"""Teacher and student networks (spec §2.2): VGG16-blockwise teacher, "vgg16-graft" student, and the
generic ResNet pairs."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tenfold import nets
from tenfold.checkpoint import load_module_state
from tenfold.errors import CheckpointError
from torch import nn

from .config import VGG16_GRAFT_STUDENT, VGG16_TEACHER
from .partition import Partition, partition

__all__ = ["VGG16_TEACHER", "VGG16_GRAFT_STUDENT", "build_teacher", "build_student", "load_teacher_weights",
           "init_vgg_"]



def init_vgg_(model: nn.Module) -> nn.Module:
    """Official init: Kaiming-normal (fan_out, relu) convs, N(0, 0.01) linears, zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return model


def build_teacher(arch: str, num_classes: int, blocks: list[list[int]] | None = None) -> nn.Module:
    if arch == "vgg_blockwise":
        return init_vgg_(nets.VGGBlockwise(num_classes, blocks=blocks or VGG16_TEACHER))
    if arch.startswith("tv_"):
        import torchvision

        return getattr(torchvision.models, arch[3:])(num_classes=num_classes)
    return nets.create(arch, num_classes)


def build_student(arch: str, num_classes: int, blocks: list[list[int]] | None = None, head_hidden: int = 512,
                  width: int = 32) -> nn.Module:
    """vgg_blockwise: conv blocks `blocks`, head Linear(c, hidden) → Linear(hidden, C) (no BN, no ReLU)."""
    if arch == "vgg_blockwise":
        s = nets.VGGBlockwise(num_classes, blocks=blocks or VGG16_GRAFT_STUDENT)
        c = s.num_features
        s.classifier = nn.Sequential(nn.Linear(c, head_hidden), nn.Linear(head_hidden, num_classes))
        return init_vgg_(s)
    if arch in ("resnet18", "resnet34"):
        return nets.create(arch, num_classes, width=width)
    if arch.startswith("tv_"):
        import torchvision

        return getattr(torchvision.models, arch[3:])(num_classes=num_classes)
    raise ValueError(f"unknown student arch '{arch}' (vgg_blockwise, resnet18, resnet34, tv_resnet18, ...)")


def load_teacher_weights(model: nn.Module, path: str | Path) -> None:
    """Plain state_dict (strict=True), e.g. ../shared/models/cifar10_vgg16_blockwise.pt."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"teacher weights not found: {p} (train one with netgraft-teacher, or point "
                              f"model.teacher_ckpt at ../shared/models/cifar10_vgg16_blockwise.pt)")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{p}: cannot read teacher weights ({str(e).splitlines()[0]})") from None
    load_module_state(model, sd, what=f"teacher {p.name}")


def teacher_meta(path: str | Path) -> dict:
    j = Path(path).with_suffix(".json")
    return json.loads(j.read_text()) if j.is_file() else {}


def copy_prefix_(teacher: Partition, student: Partition, upto: int) -> None:
    """Student blocks [0, upto) become verbatim copies of the teacher's (never trained, §2.2)."""
    for i in range(upto):
        load_module_state(student.blocks[i], teacher.blocks[i].state_dict(), what=f"student block {i}")


__all__ += ["teacher_meta", "copy_prefix_", "partition"]
