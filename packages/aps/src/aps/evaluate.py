"""Frozen-feature monitors: kNN (k=20, cosine, T=0.07) and a linear probe on full-token CLS features.

Feature extraction uses `data.num_workers` loader processes and, under torchrun, every rank: rank r extracts the
r-th contiguous shard of the data set and the shards are gathered, so each rank holds all features in data-set
order (the same as one process would compute) and none idles while another decodes the whole set.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
from tenfold import distributed, runtime
from tenfold import eval as teval
from torch import nn
from torch.utils.data import DataLoader, Subset

__all__ = ["cls_batch", "cls_features", "shard_range", "gather_rows", "evaluate_top1", "count_correct",
           "distributed_sum", "knn_monitor", "fit_logistic_lbfgs", "lbfgs_linear_probe", "linear_probe_monitor"]


def shard_range(n: int, rank: int, world: int) -> range:
    """The rank's contiguous share of n items (the last shards may be shorter or empty)."""
    per = math.ceil(n / world)
    return range(min(n, rank * per), min(n, (rank + 1) * per))


def gather_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """Concatenate every rank's rows (shards of `shard_range`) in rank order, on every rank. Rows are padded to the
    largest shard for the collective and trimmed after; NCCL gathers on this rank's GPU, gloo on the CPU."""
    world = distributed.world_size()
    if world == 1:
        return x
    per = math.ceil(n / world)
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    pad = torch.zeros((per, *x.shape[1:]), dtype=x.dtype, device=dev)
    pad[: len(x)] = x.to(dev)
    out = [torch.empty_like(pad) for _ in range(world)]
    dist.all_gather(out, pad)
    return torch.cat([o[: len(shard_range(n, r, world))] for r, o in enumerate(out)]).to(x.device)


@torch.no_grad()
def cls_batch(backbone, x: torch.Tensor, device, amp: bool = True, precision: str = "bf16") -> torch.Tensor:
    """CLS features (after the final LayerNorm, all tokens) of one batch, float32 on the device."""
    x = x.to(device, non_blocking=True)
    with runtime.autocast(device, precision, enabled=amp):
        return backbone.features(x if x.is_floating_point() else x.float()).float()


@torch.no_grad()
def cls_features(backbone, dataset, device, batch_size: int = 256, amp: bool = True, precision: str = "bf16",
                 num_workers: int = 0):
    """CLS features of a whole data set (float32 on the CPU, data-set order) and its labels, extracted by every
    rank on its shard with `num_workers` loader processes; the backbone's mode is restored."""
    was_training = backbone.training
    backbone.eval()
    n, world = len(dataset), distributed.world_size()
    part = Subset(dataset, shard_range(n, distributed.rank(), world)) if world > 1 else dataset
    loader = DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=torch.device(device).type == "cuda")
    try:
        if len(part):
            f, y = teval.extract_features(lambda x: cls_batch(backbone, x, device, amp, precision), loader, device)
        else:  # an empty shard (more ranks than items)
            d = backbone.num_features
            f, y = torch.zeros(0, d), torch.zeros(0, dtype=torch.long)
    finally:
        backbone.train(was_training)
    return gather_rows(f, n), gather_rows(y.long(), n)


@torch.no_grad()
def evaluate_top1(model: nn.Module, dataset, device, batch_size: int = 192, amp: bool = True,
                  precision: str = "bf16", num_workers: int = 0) -> float:
    """Top-1 (%) on `dataset` with `num_workers` loader processes. Under torchrun every rank counts the hits of its
    contiguous shard and the counts are summed, so every rank returns the whole set's accuracy. The count stays on
    the device until the end (one host read per evaluation)."""
    was = model.training
    model.eval()
    world = distributed.world_size()
    part = Subset(dataset, shard_range(len(dataset), distributed.rank(), world)) if world > 1 else dataset
    counts = torch.zeros(2, dtype=torch.long, device=device)  # hits, images
    for x, y in DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                           pin_memory=device.type == "cuda"):
        counts[0] += count_correct(model, x.to(device, non_blocking=True), torch.as_tensor(y).to(device), device,
                                   amp, precision)
        counts[1] += len(y)
    model.train(was)
    if world > 1:
        counts = distributed_sum(counts, device)
    hits, total = counts.tolist()
    return 100.0 * hits / max(total, 1)


def distributed_sum(x: torch.Tensor, device) -> torch.Tensor:
    """All-reduce sum (on the GPU under NCCL, the CPU under gloo)."""
    y = x.to(device if dist.get_backend() == "nccl" else "cpu").clone()
    dist.all_reduce(y)
    return y.to(x.device)


def count_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device, amp: bool = True,
                  precision: str = "bf16") -> torch.Tensor:
    """Number of top-1 hits of one batch, as a device tensor."""
    with runtime.autocast(device, precision, enabled=amp):
        logits = model(x)
    return (logits.argmax(1) == y).sum()


def knn_monitor(backbone, bank, test, device, k: int = 20, t: float = 0.07, batch_size: int = 256,
                num_classes: int | None = None, amp: bool = True, precision: str = "bf16",
                num_workers: int = 0) -> dict:
    """kNN top-1/top-5 of the test split against the bank. Under torchrun every rank must call it (each extracts
    its shard); all ranks get the same result."""
    fb, yb = cls_features(backbone, bank, device, batch_size, amp, precision, num_workers)
    ft, yt = cls_features(backbone, test, device, batch_size, amp, precision, num_workers)
    acc = teval.knn_accuracy(fb, yb, ft, yt, k=k, t=t, num_classes=num_classes)
    return {"knn_top1": acc["top1"], "knn_top5": acc["top5"], "_features": (fb, yb, ft, yt)}


def fit_logistic_lbfgs(train_feats, train_labels, num_classes: int, *, iters: int = 100, l2: float = 1e-4):
    """Full-batch L-BFGS logistic regression (spec §7(d)): minimise mean CE + l2/2·‖W‖² over the whole train set
    at once, from a zero start (the objective is convex, so the result depends on no seed or sample order).
    Features are standardised with the train statistics, as the spine's SGD probe does.
    Returns (W [D, C], b [C], mean [D], std [D]); scores of x are ((x - mean) / std) @ W + b."""
    xtr = train_feats.float()
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr = (xtr - mean) / std
    ytr = train_labels.long()
    w = torch.zeros(xtr.shape[1], num_classes, device=xtr.device, requires_grad=True)
    b = torch.zeros(num_classes, device=xtr.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(xtr @ w + b, ytr) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach(), mean, std


def lbfgs_linear_probe(train_feats, train_labels, test_feats, test_labels, *, iters: int = 100, l2: float = 1e-4,
                       num_classes: int | None = None) -> dict[str, float]:
    """Top-1/top-5 on the test features of `fit_logistic_lbfgs` trained on the train features."""
    num_classes = num_classes or int(train_labels.max()) + 1
    w, b, mean, std = fit_logistic_lbfgs(train_feats, train_labels, num_classes, iters=iters, l2=l2)
    scores = ((test_feats.float().to(w.device) - mean) / std) @ w + b
    return teval.topk_accuracy(scores.cpu(), test_labels.long().cpu())


def linear_probe_monitor(features, seed: int = 0, epochs: int = 100, num_classes: int | None = None,
                         ecfg=None, device=None) -> dict:
    """Linear probe on (bank, test) features; `ecfg` (an EvalConfig) picks the solver (L-BFGS by default), which
    runs on `device` (the GPU when given: a 1.28 M x 384 full batch is slow on a CPU). Under torchrun every rank
    holds the gathered features and computes the same deterministic probe, so none waits on another."""
    fb, yb, ft, yt = (f.cpu() for f in features)
    if ecfg is None or ecfg.linear_solver == "lbfgs":
        if device is not None:
            fb, yb = fb.to(device), yb.to(device)
        iters, l2 = (100, 1e-4) if ecfg is None else (ecfg.linear_iters, ecfg.linear_l2)
        acc = lbfgs_linear_probe(fb, yb, ft, yt, iters=iters, l2=l2, num_classes=num_classes)
    else:
        acc = teval.linear_probe(fb, yb, ft, yt, epochs=ecfg.linear_epochs, seed=seed, num_classes=num_classes)
    return {"linear_top1": acc["top1"]}
