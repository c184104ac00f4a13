"""Frozen-feature monitors: kNN (k=20, cosine, T=0.07) and a linear probe on full-token CLS features."""
from __future__ import annotations

import torch
from tenfold import eval as teval
from tenfold import runtime
from torch.utils.data import DataLoader

__all__ = ["cls_batch", "cls_features", "knn_monitor", "fit_logistic_lbfgs", "lbfgs_linear_probe",
           "linear_probe_monitor"]


@torch.no_grad()
def cls_batch(backbone, x: torch.Tensor, device, amp: bool = True, precision: str = "bf16") -> torch.Tensor:
    """CLS features (after the final LayerNorm, all tokens) of one batch, float32 on the device."""
    x = x.to(device, non_blocking=True)
    with runtime.autocast(device, precision, enabled=amp):
        return backbone.features(x if x.is_floating_point() else x.float()).float()


@torch.no_grad()
def cls_features(backbone, dataset, device, batch_size: int = 256, amp: bool = True, precision: str = "bf16"):
    """CLS features of a whole data set (float32 on the CPU) and its labels; the backbone's mode is restored."""
    was_training = backbone.training
    backbone.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    try:
        return teval.extract_features(lambda x: cls_batch(backbone, x, device, amp, precision), loader, device)
    finally:
        backbone.train(was_training)


def knn_monitor(backbone, bank, test, device, k: int = 20, t: float = 0.07, batch_size: int = 256,
                num_classes: int | None = None, amp: bool = True, precision: str = "bf16") -> dict:
    fb, yb = cls_features(backbone, bank, device, batch_size, amp, precision)
    ft, yt = cls_features(backbone, test, device, batch_size, amp, precision)
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
    w = torch.zeros(xtr.shape[1], num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
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
    return teval.topk_accuracy(((test_feats.float() - mean) / std) @ w + b, test_labels.long())


def linear_probe_monitor(features, seed: int = 0, epochs: int = 100, num_classes: int | None = None,
                         ecfg=None) -> dict:
    """Linear probe on (bank, test) features; `ecfg` (an EvalConfig) picks the solver (L-BFGS by default)."""
    fb, yb, ft, yt = (f.cpu() for f in features)
    if ecfg is None or ecfg.linear_solver == "lbfgs":
        iters, l2 = (100, 1e-4) if ecfg is None else (ecfg.linear_iters, ecfg.linear_l2)
        acc = lbfgs_linear_probe(fb, yb, ft, yt, iters=iters, l2=l2, num_classes=num_classes)
    else:
        acc = teval.linear_probe(fb, yb, ft, yt, epochs=ecfg.linear_epochs, seed=seed, num_classes=num_classes)
    return {"linear_top1": acc["top1"]}
