"""Frozen-feature evaluation: weighted kNN (cosine) and a linear probe; top-1/top-5."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

__all__ = ["extract_features", "knn_predict", "knn_accuracy", "linear_probe", "topk_accuracy"]


@torch.no_grad()
def extract_features(fn: Callable[[torch.Tensor], torch.Tensor], batches: Iterable, device: torch.device
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply `fn` to every (x, y) batch; returns features [N, D] (float32, cpu) and labels [N]."""
    feats, labels = [], []
    for x, y in batches:
        feats.append(fn(x.to(device, non_blocking=True)).float().cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(feats), torch.cat(labels)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    out = {}
    for k in ks:
        k_eff = min(k, scores.shape[1])
        top = scores.topk(k_eff, dim=1).indices
        out[f"top{k}"] = (top == labels[:, None]).any(1).float().mean().item() * 100.0
    return out


@torch.no_grad()
def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                k: int = 20, t: float = 0.07, num_classes: int | None = None, chunk: int = 1024) -> torch.Tensor:
    """Class scores [M, C] of the weighted kNN: sum over the k nearest (cosine) of exp(sim / t)."""
    num_classes = num_classes or int(train_labels.max()) + 1
    k = min(k, train_feats.shape[0])
    bank = F.normalize(train_feats.float(), dim=1)
    test = F.normalize(test_feats.float(), dim=1)
    out = []
    for i in range(0, test.shape[0], chunk):
        sim = test[i:i + chunk] @ bank.T
        w, idx = sim.topk(k, dim=1)
        w = (w / t).exp()
        scores = torch.zeros(sim.shape[0], num_classes, dtype=w.dtype)
        scores.scatter_add_(1, train_labels[idx].long(), w)
        out.append(scores)
    return torch.cat(out)


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k: int = 20, t: float = 0.07,
                 num_classes: int | None = None) -> dict[str, float]:
    scores = knn_predict(train_feats, train_labels, test_feats, k, t, num_classes)
    return topk_accuracy(scores, test_labels.long())


def linear_probe(train_feats, train_labels, test_feats, test_labels, *, epochs: int = 100, lr: float = 0.1,
                 weight_decay: float = 0.0, batch_size: int = 256, seed: int = 0,
                 num_classes: int | None = None) -> dict[str, float]:
    """Logistic regression on standardised frozen features (SGD momentum 0.9, cosine lr)."""
    num_classes = num_classes or int(train_labels.max()) + 1
    g = torch.Generator().manual_seed(seed)
    mean, std = train_feats.mean(0), train_feats.std(0).clamp_min(1e-6)
    xtr, xte = (train_feats - mean) / std, (test_feats - mean) / std
    ytr = train_labels.long()
    head = torch.nn.Linear(xtr.shape[1], num_classes)
    with torch.no_grad():
        head.weight.normal_(0, 0.01, generator=g)
        head.bias.zero_()
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps = epochs * max(1, (len(xtr) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), batch_size):
            b = perm[i:i + batch_size]
            loss = F.cross_entropy(head(xtr[b]), ytr[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        return topk_accuracy(head(xte), test_labels.long())
