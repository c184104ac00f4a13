"""Plumbing shared by the three entry points: run directory, teacher, data sets, evaluation, exported weights."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch
from tenfold import config as config_mod
from tenfold import distributed, runtime
from tenfold.checkpoint import load_module_state
from tenfold.data.root import cache_dir
from tenfold.errors import CheckpointError, ConfigError
from tenfold.eval import topk_accuracy
from tenfold.nets import load_teacher, teacher_meta
from torch import nn

from .config import DataConfig, ModelConfig
from .data import ImageSet, load_split, normalizer_for, patch_shuffle
from .method import select_high_entropy
from .nets import build_classifier

__all__ = ["setup_run", "build_teacher", "in_domain_test", "ood_pool", "norms", "evaluate", "teacher_logits",
           "apply_ood_subset", "export_model", "Timer", "save_synthetic", "grid_path"]


def setup_run(cfg) -> torch.device:
    """Device, seeds, determinism and `<out>/config.yaml` (the resolved config)."""
    if distributed.world_size() > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("mosaickd runs on one device: the four-player game is not data-parallel here; "
                          "launch without torchrun")
    device = runtime.select_device(cfg.device)
    runtime.seed_everything(cfg.seed)
    runtime.set_deterministic(cfg.deterministic)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    config_mod.save(cfg, Path(cfg.out) / "config.yaml")
    return device


def build_teacher(mcfg: ModelConfig, device: torch.device) -> tuple[nn.Module, int]:
    if not mcfg.teacher:
        raise ConfigError("model.teacher is empty: pass the teacher weights, e.g. model.teacher="
                          "../shared/models/cifar10_animals6_wrn40_2.pt (train one with mosaickd-teacher)")
    p = Path(mcfg.teacher).expanduser()
    if not p.is_file():
        raise CheckpointError(f"teacher weights not found: {p} (model.teacher)")
    meta = teacher_meta(p) if p.with_suffix(".json").is_file() else {}
    if mcfg.teacher_arch:
        if mcfg.num_classes <= 0:
            raise ConfigError("model.teacher_arch needs model.num_classes > 0")
        t = load_teacher(p, arch=mcfg.teacher_arch, num_classes=mcfg.num_classes)
    elif int(meta.get("in_chans", 3)) != 3:  # grey teachers: the spine's load_teacher builds 3-channel nets only
        t = build_classifier(meta["arch"], int(meta["num_classes"]), int(meta["in_chans"]))
        try:
            sd = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"{p}: cannot read teacher weights ({str(e).splitlines()[0]})") from None
        load_module_state(t, sd, what=f"teacher {p.name}")
    else:
        t = load_teacher(p)
    n = t.fc.out_features if hasattr(t, "fc") else mcfg.num_classes
    return t.to(device).eval().requires_grad_(False), int(n)


def in_domain_test(d: DataConfig, root) -> ImageSet:
    return load_split(d.in_domain, False, root=root, img_size=d.img_size, channels=d.channels,
                      classes=d.in_domain_classes, remap=True, per_class=d.test_per_class, synthetic_n=d.synthetic_n)


def ood_pool(d: DataConfig, root) -> ImageSet:
    """The unlabeled OOD transfer set: the first set (class filter, per-class pool), plus any further sets."""
    sets = [load_split(d.ood[0], True, root=root, img_size=d.img_size, channels=d.channels, classes=d.ood_classes,
                       per_class=d.ood_per_class, synthetic_n=d.synthetic_n)]
    for name in d.ood[1:]:
        sets.append(load_split(name, True, root=root, img_size=d.img_size, channels=d.channels, cap=d.ood_max,
                               synthetic_n=d.synthetic_n))
    pool = sets[0] if len(sets) == 1 else ImageSet(torch.cat([s.images for s in sets]),
                                                   torch.cat([s.labels for s in sets]), "+".join(d.ood))
    if d.ood_patch_shuffle:
        pool = ImageSet(patch_shuffle(pool.images, d.ood_patch_shuffle), pool.labels, pool.name + "-shuffled")
    return pool


def norms(d: DataConfig):
    """(in-domain normaliser, KD-stream OOD normaliser); spec §2.4 and pitfall 4."""
    n_id = normalizer_for(d.in_domain_norm or d.in_domain, d.channels)
    n_ood = normalizer_for(d.ood_norm or d.ood[0], d.channels) if d.kd_ood_normalization == "ood" else n_id
    return n_id, n_ood


@torch.no_grad()
def teacher_logits(teacher: nn.Module, data: ImageSet, norm: nn.Module, device, batch: int = 500,
                   precision: str = "bf16") -> torch.Tensor:
    norm = norm.to(device)
    out = []
    for i in range(0, len(data), batch):
        x = norm(data.images[i:i + batch].to(device).float().div_(255))
        with runtime.autocast(device, precision):
            out.append(teacher(x).float())
    return torch.cat(out)


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageSet, norm: nn.Module, device, batch: int = 500,
             precision: str = "bf16") -> dict[str, float]:
    was = model.training
    model.eval()
    scores = teacher_logits(model, data, norm, device, batch, precision).cpu()
    model.train(was)
    acc = topk_accuracy(scores, data.labels, ks=(1, 5) if scores.shape[1] > 5 else (1,))
    return {k: round(v, 3) for k, v in acc.items()}


def apply_ood_subset(d: DataConfig, ood: ImageSet, teacher: nn.Module, teacher_path: str, norm: nn.Module, device,
                     root) -> ImageSet:
    """Keep the N highest-teacher-entropy OOD images (spec §2.4, pitfall 10), the index list cached on disk."""
    n = d.ood_subset_size or len(load_split(d.in_domain, True, root=root, img_size=d.img_size, channels=d.channels,
                                            classes=d.in_domain_classes, synthetic_n=d.synthetic_n))
    n = min(n, len(ood))
    key = hashlib.sha1(f"{'+'.join(d.ood)}|{d.ood_classes}|{d.ood_per_class}|{d.ood_max}|{len(ood)}|"
                       f"{Path(teacher_path).resolve()}|{n}".encode()).hexdigest()[:16]
    path = cache_dir() / f"mosaickd_ood_index_{key}.pt"
    if path.is_file():
        idx = torch.load(path, weights_only=True)
    else:
        norm = norm.to(device)
        idx = select_high_entropy(ood.images, teacher, n, transform=lambda x: norm(x.float().div(255)), device=device)
        torch.save(idx, path)
    return ood.subset(idx)


def export_model(model: nn.Module, path: Path, arch: str, num_classes: int, **meta) -> None:
    """Plain state_dict + JSON beside it: loadable with tenfold.nets.load_teacher (e.g. as a next teacher)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    path.with_suffix(".json").write_text(json.dumps({"arch": arch, "num_classes": num_classes, **meta}, indent=1))


class Timer:
    def __init__(self):
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0


def grid_path(out: Path, step: int) -> Path:
    """The synthetic-batch grid written at the evaluation after iteration `step` (name order = step order)."""
    return Path(out) / "synthetic" / f"step_{step:07d}.png"


@torch.no_grad()
def save_synthetic(G: nn.Module, path: Path, device: torch.device, n: int = 64) -> Path:
    """G's images for a fixed latent batch (own CPU generator: the run's RNG streams are not drawn from, and the
    grids of one run compare over time), eval-mode BN (no running-statistics update), 8 per row."""
    from torchvision.utils import save_image

    z = torch.randn(n, G.nz, generator=torch.Generator().manual_seed(0)).to(device)
    was = G.training
    G.eval()
    try:
        x = G(z).float().cpu()
    finally:
        G.train(was)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(x, path, nrow=8)
    return path
