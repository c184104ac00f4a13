"""Dynamic node classification on a frozen DPS encoder (spec §2.8, §3.3).

h = h_src^{(L)}(t) of each event's source at the event time (with `binary`, [h_src ‖ h_dst]); the encoder is
frozen and in eval mode, so embeddings are computed once and cached (the official code caches the train set).
MLP D → D/2 → D/4 → 1, BCE, Adam lr 1e-4, batch 200, ≤ 50 epochs, early stopping on val AUC (patience 10).
`balance`: each batch gets size // neg_ratio extra positive-label training events from before the batch's
max time — the intent of the official code (whose indexing with the 0/1 label vector is a bug).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from tenfold.errors import DataError

from .config import NodeTaskConfig
from .metrics import EarlyStopMonitor, roc_auc
from .model import NodeMLP
from .split import node_task_split

__all__ = ["NodeTaskConfig", "event_embeddings", "train_node_classifier", "node_events"]


def node_events(stream, cfg, device) -> dict:
    """The node task's labelled events per split (official quantile rule, no node filter)."""
    d = stream.data
    if getattr(d, "y", None) is None:
        raise DataError(f"{stream.name}: no event labels (a 'label' / state_label column) for node classification")
    sp = node_task_split(d.t.double(), cfg.data.train_frac, cfg.data.val_frac)
    return {k: tuple(x[getattr(sp, k)].to(device) for x in (d.src, d.dst, d.t.double(), d.y))
            for k in ("train", "val", "test")}


@torch.no_grad()
def event_embeddings(model, samplers, src, dst, t, batch_size=200, binary=False, seed=0):
    model.eval()
    gen = torch.Generator(device=src.device).manual_seed(seed)
    out = []
    for s in range(0, src.numel(), batch_size):
        b = slice(s, s + batch_size)
        nodes = torch.cat([src[b], dst[b]]) if binary else src[b]
        tt = torch.cat([t[b], t[b]]) if binary else t[b]
        h = model.encoder.embed(nodes, tt, samplers, generator=gen)
        if binary:
            h = torch.cat([h[: src[b].numel()], h[src[b].numel():]], 1)
        out.append(h)
    return torch.cat(out)


def train_node_classifier(model, samplers, events: dict, cfg: NodeTaskConfig, seed: int = 0, log=print) -> dict:
    """`events`: {"train"|"val"|"test": (src, dst, t, y)}. Returns val/test AUC of the best epoch."""
    emb = {k: event_embeddings(model, samplers, *v[:3], cfg.batch_size, cfg.binary, seed) for k, v in events.items()}
    ys = {k: v[3].float().to(emb[k].device) for k, v in events.items()}
    torch.manual_seed(seed)
    mlp = NodeMLP(emb["train"].shape[1], cfg.dropout).to(emb["train"].device)
    opt = torch.optim.Adam(mlp.parameters(), lr=cfg.lr)
    mon = EarlyStopMonitor(cfg.patience, cfg.tol)
    best = copy.deepcopy(mlp.state_dict())
    t_train = events["train"][2]
    pos_idx = torch.nonzero(ys["train"] > 0.5).squeeze(1)
    n = emb["train"].shape[0]

    def score(split):
        mlp.eval()
        with torch.no_grad():
            return torch.sigmoid(mlp(emb[split])).cpu().numpy()

    for epoch in range(cfg.epochs):
        mlp.train()
        for s in range(0, n, cfg.batch_size):
            idx = torch.arange(s, min(n, s + cfg.batch_size), device=emb["train"].device)
            if cfg.balance and pos_idx.numel():
                avail = pos_idx[t_train[pos_idx] <= t_train[idx[-1]]]
                extra = idx.numel() // cfg.neg_ratio
                if avail.numel() and extra:
                    idx = torch.cat([idx, avail[torch.randint(avail.numel(), (extra,), device=avail.device)]])
            loss = F.binary_cross_entropy_with_logits(mlp(emb["train"][idx]), ys["train"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        val_auc = roc_auc(ys["val"].cpu().numpy(), score("val"))
        stop = mon.step(val_auc if np.isfinite(val_auc) else 0.0)
        if mon.best_epoch == epoch:
            best = copy.deepcopy(mlp.state_dict())
        if stop:
            break
    mlp.load_state_dict(best)
    res = {"val_auc": roc_auc(ys["val"].cpu().numpy(), score("val")),
           "test_auc": roc_auc(ys["test"].cpu().numpy(), score("test")), "epochs": mon.epoch_count,
           "best_epoch": mon.best_epoch}
    log(f"node classification: val AUC {res['val_auc']:.4f}, test AUC {res['test_auc']:.4f}")
    return res
