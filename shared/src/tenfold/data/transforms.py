"""Normalisation constants and the standard CIFAR/MNIST train/test transforms (torchvision v2)."""
from __future__ import annotations

import torch
from torchvision.transforms import v2

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "MNIST_MEAN", "MNIST_STD", "IMAGENET_MEAN", "IMAGENET_STD",
           "normalize", "normalize_batch", "cifar_train", "eval_transform"]

# The teachers in ../shared/models were trained with these (see their JSON files).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(mean=CIFAR10_MEAN, std=CIFAR10_STD):
    return v2.Normalize(mean, std)


def normalize_batch(x: torch.Tensor, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> torch.Tensor:
    """(x − mean) / std per channel for an [N, C, H, W] batch already in [0, 1] (no per-image transform)."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def eval_transform(mean=CIFAR10_MEAN, std=CIFAR10_STD):
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def cifar_train(mean=CIFAR10_MEAN, std=CIFAR10_STD, size: int = 32):
    """Random crop with 4-pixel zero padding + horizontal flip (the teachers' recipe)."""
    return v2.Compose([v2.RandomCrop(size, padding=4), v2.RandomHorizontalFlip(),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
