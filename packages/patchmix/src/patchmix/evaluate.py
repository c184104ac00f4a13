"""Frozen-backbone evaluation: kNN on the CLS feature (spec §3), instance retrieval, mixed->source hits.

Feature extraction uses `data.num_workers` loader processes and, under torchrun, every rank: rank r extracts the
r-th contiguous shard and the shards are gathered, so each rank holds all features in data-set order (what one
process computes) and none idles while another decodes the whole set.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tenfold import checkpoint, distributed, runtime
from tenfold import config as config_mod
from tenfold.errors import CheckpointError
from tenfold.eval import knn_accuracy
from torch.utils.data import DataLoader, Subset

from .augment import eval_view, make_view
from .config import PretrainConfig
from .data import load_split, to_unit
from .method import patch_mix
from .models import build_models

__all__ = ["eval_mode", "shard_range", "gather_rows", "shard_loader", "all_reduce_sum", "extract", "knn_eval",
           "knn_monitor", "random_head", "instance_retrieval", "mixed_source_hits", "load_pretrained"]


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module):
    was = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was)


def shard_range(n: int, rank: int, world: int) -> range:
    """The rank's contiguous share of n items (the last shards may be shorter or empty)."""
    per = math.ceil(n / world)
    return range(min(n, rank * per), min(n, (rank + 1) * per))


def _collective_device(device) -> torch.device:
    return torch.device(device) if dist.get_backend() == "nccl" else torch.device("cpu")


def gather_rows(x: torch.Tensor, n: int, device="cpu") -> torch.Tensor:
    """Concatenate every rank's rows (shards of `shard_range`) in rank order, on every rank; padded to the largest
    shard for the collective (on `device` under NCCL, the CPU under gloo) and trimmed after."""
    world = distributed.world_size()
    if world == 1:
        return x
    per = math.ceil(n / world)
    dev = _collective_device(device)
    pad = torch.zeros((per, *x.shape[1:]), dtype=x.dtype, device=dev)
    pad[: len(x)] = x.to(dev)
    out = [torch.empty_like(pad) for _ in range(world)]
    dist.all_gather(out, pad)
    return torch.cat([o[: len(shard_range(n, r, world))] for r, o in enumerate(out)]).to(x.device)


def all_reduce_sum(x: torch.Tensor, device="cpu") -> torch.Tensor:
    if distributed.world_size() == 1:
        return x
    y = x.to(_collective_device(device)).clone()
    dist.all_reduce(y)
    return y.to(x.device)


def shard_loader(ds, batch_size: int, device, num_workers: int = 0) -> DataLoader:
    """In-order batches of this rank's contiguous shard of `ds` (all of it in one process), pinned for CUDA."""
    world = distributed.world_size()
    part = Subset(ds, shard_range(len(ds), distributed.rank(), world)) if world > 1 else ds
    return DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=torch.device(device).type == "cuda")


@torch.no_grad()
def extract(backbone, ds, device, size: int, mean, std, batch_size: int = 256, head=None, amp: bool = True,
            limit: int = 0, precision: str = "bf16", num_workers: int = 0):
    """CLS features (after the final LN; through `head` if given) and labels of a uint8 image set (the first
    `limit` images when > 0), float32 on the CPU in data-set order. Under torchrun every rank must call it."""
    if limit:
        ds = Subset(ds, range(min(limit, len(ds))))
    n = len(ds)
    feats, labels = [], []
    with eval_mode(backbone):
        for x, y in shard_loader(ds, batch_size, device, num_workers):
            x = eval_view(to_unit(x.to(device, non_blocking=True)), size, mean, std)
            with runtime.autocast(device, precision, enabled=amp):
                f = backbone.cls_feature(x)
                if head is not None:
                    f = head(f)
            feats.append(f.float().cpu())
            labels.append(torch.as_tensor(y))
    dim = head.out_features if head is not None else backbone.num_features
    f = torch.cat(feats) if feats else torch.zeros(0, dim)
    y = torch.cat(labels).long() if labels else torch.zeros(0, dtype=torch.long)
    return gather_rows(f, n, device), gather_rows(y, n, device)


def random_head(dim: int, seed: int = 7) -> torch.nn.Linear:
    """Reference quirk Q3: the kNN script's untouched timm head, Linear(D, 1000) with xavier init."""
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(dim, 1000)
    bound = (6.0 / (dim + 1000)) ** 0.5
    with torch.no_grad():
        head.weight.uniform_(-bound, bound, generator=g)
        head.bias.zero_()
    return head


def knn_eval(train_f, train_y, test_f, test_y, ks=(10, 20, 100, 200), t: float = 0.07) -> dict:
    nc = int(max(train_y.max(), test_y.max())) + 1
    out = {}
    for k in ks:
        r = knn_accuracy(train_f, train_y, test_f, test_y, k=k, t=t, num_classes=nc)
        out[f"knn{k}_top1"], out[f"knn{k}_top5"] = r["top1"], r["top5"]
    return out


def knn_monitor(cfg: PretrainConfig, backbone, device) -> dict:
    """kNN top-1 (cfg.monitor.knn_k) on the pre-training data set's test split; {} if it has no labels."""
    try:
        train = load_split(cfg.data, True, cfg.data_root, cfg.seed)
        test = load_split(cfg.data, False, cfg.data_root, cfg.seed)
    except Exception:  # noqa: BLE001 - the monitor is optional (e.g. no val/ folder)
        return {}
    mon = cfg.monitor
    kw = dict(size=cfg.model.img_size, mean=tuple(cfg.aug.mean), std=tuple(cfg.aug.std), amp=cfg.amp,
              limit=mon.max_eval, precision=cfg.precision, num_workers=cfg.data.num_workers)
    tf, ty = extract(backbone, train, device, **kw)
    vf, vy = extract(backbone, test, device, **kw)
    r = knn_eval(tf, ty, vf, vy, ks=(mon.knn_k,), t=mon.knn_t)
    return {"knn_top1": r[f"knn{mon.knn_k}_top1"], "knn_top5": r[f"knn{mon.knn_k}_top5"]}


@torch.no_grad()
def instance_retrieval(backbone, x: torch.Tensor, spec1, spec2, seed: int, mean, std) -> float:
    """Held-out instance retrieval top-1 (%): view 2 of image i must retrieve view 1 of image i (CLS cosine)."""
    g = torch.Generator().manual_seed(seed)
    with eval_mode(backbone):
        a = F.normalize(backbone.cls_feature(make_view(x, spec1, g, mean, std)), dim=1)
        b = F.normalize(backbone.cls_feature(make_view(x, spec2, g, mean, std)), dim=1)
    hit = (b @ a.T).argmax(1) == torch.arange(len(x), device=x.device)
    return hit.float().mean().item() * 100


@torch.no_grad()
def mixed_source_hits(backbone, x_norm: torch.Tensor, m: int, patch_size: int, seed: int) -> float:
    """Fraction (%) of mixed images whose m sources are exactly their top-m neighbours among the originals."""
    g = torch.Generator().manual_seed(seed)
    xm, _ = patch_mix(x_norm, m, patch_size, g)
    with eval_mode(backbone):
        fo = F.normalize(backbone.cls_feature(x_norm), dim=1)
        fm = F.normalize(backbone.cls_feature(xm), dim=1)
    top = (fm @ fo.T).topk(m, dim=1).indices.sort(1).values.cpu()
    n = len(x_norm)
    src = ((torch.arange(n)[:, None] + torch.arange(m)[None]) % n).sort(1).values
    return (top == src).all(1).float().mean().item() * 100


def load_pretrained(path: str, encoder: str = "auto"):
    """Backbone from a patchmix-train run dir / last.pt. auto: momentum encoder if present (fixes Q5)."""
    p = Path(path)
    if not str(path):
        raise CheckpointError("no checkpoint given: set checkpoint=RUN_DIR (a patchmix-train output) "
                              "or checkpoint=RUN_DIR/last.pt")
    ck = checkpoint.load(p, kind="patchmix")
    try:
        cfg = config_mod.from_dict(PretrainConfig, ck["config"])
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: its stored config cannot be read ({e})") from None
    online, momentum = build_models(cfg.model, cfg.model.framework)
    has_m = "momentum" in ck["state"]
    if encoder == "momentum" and not has_m:
        raise CheckpointError(f"{path} has no momentum encoder (framework=no_momentum); use encoder=online")
    use_m = has_m and encoder != "online"
    if use_m:
        checkpoint.load_module_state(momentum, ck["state"]["momentum"], what="momentum encoder")
        bb = momentum.backbone
    else:
        checkpoint.load_module_state(online, ck["state"]["online"], what="online network")
        bb = online.backbone
    for q in bb.parameters():
        q.requires_grad_(False)
    return bb.eval(), cfg, ("momentum" if use_m else "online")
