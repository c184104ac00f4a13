"""Downstream protocols on a pre-trained backbone (spec §3): kNN, linear probe, fine-tuning. Resumable.

Under torchrun every rank works: features and test accuracy are computed on each rank's shard (loader workers:
data.num_workers) and combined; the linear head and the fine-tuned network are DistributedDataParallel with the
global batch split over the ranks."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from tenfold import config as config_mod
from tenfold import distributed, runtime
from tenfold.data import make_loader, steps_per_epoch
from tenfold.errors import ConfigError
from tenfold.loop import Trainer
from tenfold.meters import MetricLogger
from torch import nn

from .augment import eval_view, hflip, normalize, rand_augment, random_erasing, random_resized_crop
from .config import EvalConfig
from .data import CropSpec, load_split, to_unit
from .evaluate import all_reduce_sum, extract, knn_eval, load_pretrained, random_head, shard_loader

__all__ = ["run_eval", "layer_decay_groups", "mixup_cutmix", "accuracy"]


@torch.no_grad()
def accuracy(fn, ds, device, size, mean, std, amp=True, precision: str = "bf16", num_workers: int = 0) -> float:
    """Top-1 (%) of `fn` on `ds`; each rank counts its shard's hits on the device, the counts are summed."""
    counts = torch.zeros(2, dtype=torch.long, device=device)  # hits, images
    for x, y in shard_loader(ds, 256, device, num_workers):
        with runtime.autocast(device, precision, enabled=amp):
            logits = fn(eval_view(to_unit(x.to(device, non_blocking=True)), size, mean, std))
        counts[0] += (logits.float().argmax(1) == torch.as_tensor(y).to(device)).sum()
        counts[1] += len(y)
    hits, total = all_reduce_sum(counts, device).tolist()
    return 100.0 * hits / max(total, 1)


class Classifier(nn.Module):
    """backbone CLS feature -> linear head, as one module (one DDP wrapper for the fine-tuning forward)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        return self.head(self.backbone.cls_feature(x))


def _per_rank_batch(batch_size: int, what: str) -> int:
    world = distributed.world_size()
    if batch_size % world:
        raise ConfigError(f"{what} {batch_size} is not divisible by the world size {world}")
    return batch_size // world


def _step_seed(seed: int, step: int) -> int:
    """The step's augmentation seed; under torchrun each rank draws its own (one process: as before)."""
    s = seed * 1_000_003 + step
    return s if distributed.world_size() == 1 else s * 7919 + distributed.rank()


def layer_decay_groups(backbone, head, wd: float, decay: float) -> list[dict]:
    """timm-style layer-wise lr decay: patch/cls/pos = layer 0, block i = i+1, head = depth+1; scale
    decay^(depth+1-layer). No weight decay on biases, norms, pos_embed and cls_token (fine-tune recipe)."""
    depth = len(backbone.blocks)
    groups: dict[tuple, dict] = {}

    def add(name, p, layer):
        no_wd = p.ndim < 2 or name.endswith(".bias") or name in ("pos_embed", "cls_token")
        key = (layer, no_wd)
        g = groups.setdefault(key, {"params": [], "weight_decay": 0.0 if no_wd else wd,
                                    "lr_scale": decay ** (depth + 1 - layer)})
        g["params"].append(p)

    for name, p in backbone.named_parameters():
        if name.startswith("blocks."):
            layer = int(name.split(".")[1]) + 1
        elif name.startswith(("norm.", "head.")):
            layer = depth + 1
        else:
            layer = 0
        add(name, p, layer)
    for name, p in head.named_parameters():
        add("head." + name, p, depth + 1)
    return list(groups.values())


def mixup_cutmix(x, y, num_classes, cfg, g: torch.Generator):
    """Batch-mode Mixup (alpha) / CutMix (alpha) with label smoothing -> soft targets (timm Mixup semantics)."""
    off = cfg.smoothing / num_classes
    y1 = F.one_hot(y, num_classes).float() * (1 - cfg.smoothing) + off
    if torch.rand(1, generator=g).item() >= cfg.mix_prob or (cfg.mixup <= 0 and cfg.cutmix <= 0):
        return x, y1
    use_cut = cfg.cutmix > 0 and (cfg.mixup <= 0 or torch.rand(1, generator=g).item() < cfg.switch_prob)
    alpha = cfg.cutmix if use_cut else cfg.mixup
    lam = float(torch.distributions.Beta(alpha, alpha).sample()) if alpha > 0 else 1.0
    xf, yf = x.flip(0), y1.flip(0)
    if use_cut:
        h, w = x.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = torch.randint(h, (1,), generator=g).item(), torch.randint(w, (1,), generator=g).item()
        y0, y1_, x0, x1_ = max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1_, x0:x1_] = xf[..., y0:y1_, x0:x1_]
        lam = 1 - (y1_ - y0) * (x1_ - x0) / (h * w)
    else:
        x = lam * x + (1 - lam) * xf
    return x, lam * y1 + (1 - lam) * yf


def _random_crop_flip(x, pad, g):
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    out = torch.stack([xp[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w] for i in range(n)])
    flip = (torch.rand(n, generator=g) < 0.5).to(x.device).view(n, 1, 1, 1)
    return torch.where(flip, out.flip(-1), out)


def _train_crops(cfg: EvalConfig, size: int) -> list[CropSpec] | None:
    """The protocol's RandomResizedCrop of a training image; an image folder's loader takes it per sample from
    the full-resolution image (data.FolderCrops) instead of from the resized centre square. None where training
    images are not resized-cropped (kNN, linear without augmentation, fine-tuning with RandomCrop(pad))."""
    if cfg.protocol == "linear" and cfg.linear.augment:
        return [CropSpec(size, tuple(cfg.linear.scale))]
    if cfg.protocol == "finetune" and not cfg.finetune.random_crop_pad:
        return [CropSpec(size, (0.08, 1.0))]
    return None


def _crop_flip(x, size, scale, g, device):
    """Training crop + flip on the device; a list is the loader's crop (image folders): only the flip is left."""
    if isinstance(x, (list, tuple)):
        return hflip(to_unit(x[0].to(device, non_blocking=True)), 0.5, g)
    return random_resized_crop(to_unit(x.to(device, non_blocking=True)), size, scale, g, flip_p=0.5)


def run_eval(cfg: EvalConfig, resume: str | None = None) -> dict:
    device = runtime.select_device(cfg.device)
    distributed.init(device)
    runtime.set_deterministic(cfg.deterministic)
    runtime.seed_everything(cfg.seed)
    out = Path(cfg.out)
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        config_mod.save(cfg, out / "config.yaml")
    backbone, pcfg, which = load_pretrained(cfg.checkpoint, cfg.encoder)
    backbone.to(device)
    size = cfg.eval_size or pcfg.model.img_size
    mean, std = tuple(cfg.mean), tuple(cfg.std)
    train = load_split(cfg.data, True, cfg.data_root, cfg.seed, crops=_train_crops(cfg, size))
    test = load_split(cfg.data, False, cfg.data_root, cfg.seed)
    num_classes = len(getattr(train, "classes", [])) or int(max(train.labels)) + 1
    res = {"protocol": cfg.protocol, "encoder": which, "checkpoint": str(cfg.checkpoint)}
    if cfg.protocol == "knn":
        head = random_head(backbone.num_features, cfg.seed).to(device) if cfg.knn.faithful_random_head else None
        kw = dict(size=size, mean=mean, std=std, batch_size=cfg.knn.batch_size, head=head, amp=cfg.amp,
                  precision=cfg.precision, num_workers=cfg.data.num_workers)
        tf, ty = extract(backbone, train, device, **kw)
        vf, vy = extract(backbone, test, device, **kw)
        res.update(knn_eval(tf, ty, vf, vy, ks=tuple(cfg.knn.k), t=cfg.knn.t))
    elif cfg.protocol == "linear":
        res.update(_linear(cfg, backbone, train, test, num_classes, device, size, mean, std, out, resume))
    else:
        res.update(_finetune(cfg, backbone, train, test, num_classes, device, size, mean, std, out, resume))
    MetricLogger(out).summary(**res)
    return res


def _epoch_trainer(cfg, out, kind, stateful, ds_len, bs, epochs, batches, evaluate, resume):
    ipe = steps_per_epoch(ds_len, bs)
    if ipe == 0:
        raise ConfigError(f"the train split ({ds_len} images) is smaller than one batch ({bs})")
    hist = {"best": 0.0, "last": 0.0, "curve": []}
    trainer = Trainer(out, kind=kind, config=cfg, stateful=stateful, total_steps=epochs * ipe, batches=batches,
                      log_every=max(ipe, 1), extra_state=lambda: dict(hist),
                      load_extra_state=lambda s: hist.update(s))
    trainer.maybe_resume(resume)

    def on_end(state, _):
        if state.batch_in_epoch == ipe:  # end of an epoch: test accuracy, best and last (pitfall 14)
            acc = evaluate()
            hist["last"], hist["best"] = acc, max(hist["best"], acc)
            hist["curve"] = hist["curve"] + [acc]
            trainer.logger.log(state.step, epoch=state.epoch + 1, test_top1=acc)

    return trainer, ipe, hist, on_end


def _linear(cfg, backbone, train, test, nc, device, size, mean, std, out, resume):
    lc = cfg.linear
    head = nn.Linear(backbone.num_features, nc).to(device)  # PyTorch default init, no BN in front
    lr0 = lc.base_lr * lc.batch_size / 256
    opt = torch.optim.SGD(head.parameters(), lr=lr0, momentum=lc.momentum, nesterov=True,
                          weight_decay=lc.weight_decay)
    if lc.augment:
        data = train

        def feats(x, g):
            x = _crop_flip(x, size, lc.scale, g, device)
            with torch.no_grad(), runtime.autocast(device, cfg.precision, enabled=cfg.amp):
                return backbone.cls_feature(normalize(x, mean, std)).float()
    else:
        f, y = extract(backbone, train, device, size, mean, std, amp=cfg.amp, precision=cfg.precision,
                       num_workers=cfg.data.num_workers)
        data = torch.utils.data.TensorDataset(f, y)

        def feats(x, g):
            return x.to(device)
    bs = _per_rank_batch(lc.batch_size, "linear.batch_size")
    batches = lambda e, s: make_loader(data, bs, seed=cfg.seed, epoch=e, start_batch=s,  # noqa: E731
                                       device=device, num_workers=cfg.data.num_workers if lc.augment else 0)
    evaluate = lambda: accuracy(lambda x: head(backbone.cls_feature(x).float()), test, device, size, mean,  # noqa
                                std, cfg.amp, cfg.precision, cfg.data.num_workers)
    trainer, ipe, hist, on_end = _epoch_trainer(cfg, out, "patchmix-linear", {"head": head, "opt": opt},
                                                len(data), bs, lc.epochs, batches, evaluate, resume)
    train_head = distributed.wrap(head, device)  # gradients averaged over the ranks' shares of the batch

    def step(batch, state):
        for g in opt.param_groups:  # CosineAnnealingLR(T_max=epochs), stepped per epoch
            g["lr"] = lr0 * 0.5 * (1 + math.cos(math.pi * state.epoch / lc.epochs))
        gen = torch.Generator().manual_seed(_step_seed(cfg.seed, state.step))
        loss = F.cross_entropy(train_head(feats(batch[0], gen)), torch.as_tensor(batch[1]).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}

    trainer.run(step, on_step_end=on_end)
    return {"linear_top1_last": hist["last"], "linear_top1_best": hist["best"], "epochs": lc.epochs}


def _finetune(cfg, backbone, train, test, nc, device, size, mean, std, out, resume):
    fc = cfg.finetune
    model = copy.deepcopy(backbone).train()
    for p in model.parameters():
        p.requires_grad_(True)
    depth = len(model.blocks)
    for i, blk in enumerate(model.blocks):
        blk.drop_path.p = fc.drop_path * i / max(depth - 1, 1)
    head = nn.Linear(model.num_features, nc).to(device)
    groups = layer_decay_groups(model, head, fc.weight_decay, fc.layer_decay)
    opt = torch.optim.AdamW(groups, lr=0.0, eps=1e-8)
    lr0 = fc.base_lr * fc.batch_size / 256
    bs = _per_rank_batch(fc.batch_size, "finetune.batch_size")
    total = fc.epochs * steps_per_epoch(len(train), bs)
    warm = round(fc.warmup_epochs * steps_per_epoch(len(train), bs))
    batches = lambda e, s: make_loader(train, bs, seed=cfg.seed, epoch=e, start_batch=s,  # noqa: E731
                                       device=device, num_workers=cfg.data.num_workers)
    net = distributed.wrap(Classifier(model, head), device)  # the training forward; gradients averaged

    def predict(x):
        return head(model.cls_feature(x))

    def evaluate():
        model.eval()
        try:
            return accuracy(predict, test, device, size, mean, std, cfg.amp, cfg.precision, cfg.data.num_workers)
        finally:
            model.train()

    trainer, ipe, hist, on_end = _epoch_trainer(cfg, out, "patchmix-finetune",
                                                {"model": model, "head": head, "opt": opt}, len(train),
                                                bs, fc.epochs, batches, evaluate, resume)

    def step(batch, state):
        i = state.step
        if i < warm:
            lr = fc.warmup_lr + (lr0 - fc.warmup_lr) * i / max(warm, 1)
        else:
            lr = fc.min_lr + 0.5 * (lr0 - fc.min_lr) * (1 + math.cos(math.pi * (i - warm) / max(total - warm, 1)))
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        gen = torch.Generator().manual_seed(_step_seed(cfg.seed, i))
        if fc.random_crop_pad:
            x = _random_crop_flip(to_unit(batch[0].to(device, non_blocking=True)), fc.random_crop_pad, gen)
        else:
            x = _crop_flip(batch[0], size, (0.08, 1.0), gen, device)
        y = torch.as_tensor(batch[1]).to(device)
        x = rand_augment(x, fc.randaug_ops, fc.randaug_magnitude, gen)  # timm order: crop, flip, RA, normalise,
        x = random_erasing(normalize(x, mean, std), fc.reprob, gen)       # erase, then batch Mixup/CutMix
        x, soft = mixup_cutmix(x, y, nc, fc, gen)
        with runtime.autocast(device, cfg.precision, enabled=cfg.amp):
            logits = net(x)
        loss = -(soft * F.log_softmax(logits.float(), 1)).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach(), "lr": lr}

    trainer.run(step, on_step_end=on_end)
    return {"finetune_top1_last": hist["last"], "finetune_top1_best": hist["best"], "epochs": fc.epochs}
