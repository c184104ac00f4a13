"""Fréchet distance and KID in the feature space of a pluggable extractor (Inception weights cannot be
downloaded here; spec §7d uses a small MNIST CNN trained by this package or cifar10_wrn40_2's features)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn

__all__ = ["frechet_distance", "kid", "MnistNet", "train_mnist_classifier", "features", "class_stats"]


def frechet_distance(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """‖μ1−μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½) of two feature sets [N, D] (float64)."""
    a, b = f1.double().numpy(), f2.double().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():
        eps = 1e-6 * np.eye(s1.shape[0])
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def kid(f1: torch.Tensor, f2: torch.Tensor, subsets: int = 10, subset_size: int = 500, seed: int = 0) -> float:
    """Unbiased MMD² with the cubic polynomial kernel (xᵀy/d + 1)³, averaged over random subsets."""
    g = torch.Generator().manual_seed(seed)
    a, b = f1.double(), f2.double()
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    vals = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=g)[:m]]
        y = b[torch.randperm(len(b), generator=g)[:m]]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        vals.append(((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum())
                     / (m * (m - 1)) - 2 * kxy.mean()).item())
    return float(np.mean(vals))


class MnistNet(nn.Module):
    """A small MNIST CNN; its 64-d penultimate layer is the feature space of the quality proxy."""

    def __init__(self, size: int = 32):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(64 * (size // 4) ** 2, 64), nn.ReLU())
        self.fc = nn.Linear(64, 10)

    def forward(self, x, return_features: bool = False):
        f = self.body(x)
        return (self.fc(f), f) if return_features else self.fc(f)


def train_mnist_classifier(images: torch.Tensor, labels: torch.Tensor, epochs: int = 1, seed: int = 0,
                           batch: int = 128) -> MnistNet:
    """Train on images in [−1, 1] (the GAN's range), shape [N, 1, S, S]."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = MnistNet(images.shape[-1])
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(images), generator=g)
        for i in range(0, len(images), batch):
            idx = perm[i:i + batch]
            loss = F.cross_entropy(net(images[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def features(net: nn.Module, images: torch.Tensor, batch: int = 500, transform=None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate features, class probabilities) of `images`."""
    fs, ps = [], []
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        if transform is not None:
            x = transform(x)
        logits, f = net(x, return_features=True)
        fs.append(f.float())
        ps.append(logits.float().softmax(1))
    return torch.cat(fs), torch.cat(ps)


def class_stats(probs: torch.Tensor, min_share: float = 0.05) -> dict:
    counts = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).float() / len(probs)
    return {"classes_covered": int((counts >= min_share).sum()), "mean_max_prob": probs.max(1).values.mean().item()}
