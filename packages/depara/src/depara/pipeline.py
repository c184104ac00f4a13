"""The experiment behind the CLIs: train a zoo, measure transfer, build graphs, rank, evaluate."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from tenfold import checkpoint, runtime
from tenfold.data.transforms import CIFAR10_MEAN, CIFAR10_STD
from tenfold.errors import ConfigError, DataError
from tenfold.meters import progress, write_json

from .config import DeparaConfig
from .data import TASKS, make_pool, probe_images, task_view, transform_pool
from .graph import Graph, build_graph, load_graph, save_graph
from .sources import load_source, parse_model_spec, representation, weights_digest
from .zoo import features, preprocess, probe_accuracy, save_zoo_model, train_task_model

__all__ = ["zoo_dir", "train_zoo", "measure_transfer", "default_targets", "zoo_models", "probe_tensor",
           "model_graphs", "amp_for", "graph_key", "resize_center_crop"]


def zoo_dir(cfg: DeparaConfig) -> Path:
    return Path(cfg.zoo_dir or cfg.out)


def amp_for(device: torch.device | str, precision: str = "bf16"):
    """The autocast factory the extraction/training code calls per batch: None for fp32 and off CUDA."""
    device = torch.device(device)
    if device.type != "cuda" or precision == "fp32":
        return None
    return lambda: runtime.autocast(device, precision)


def _pool_kind(task: str, cfg: DeparaConfig) -> str:
    kind = TASKS[task].pool
    if (kind == "synth") != (cfg.data.kind == "synth"):
        raise ConfigError(f"task {task} is a {kind} task but data.kind={cfg.data.kind}: "
                          f"use T1..T8 with synth, C1..C6/M1/M2/R with real")
    return kind


def default_targets(cfg: DeparaConfig) -> list[str]:
    tgts = cfg.transfer.targets or [t for t in cfg.zoo.tasks if not TASKS[t].rule.startswith("random")]
    bad = [t for t in tgts if t not in cfg.zoo.tasks]
    if bad:
        raise ConfigError(f"transfer.targets {bad} are not zoo tasks {cfg.zoo.tasks}")
    return tgts


class _Pools:
    """Pools loaded once per (kind, split)."""

    def __init__(self, cfg: DeparaConfig):
        self.cfg, self.cache = cfg, {}

    def get(self, kind: str, split: str, n: int):
        key = (kind, split, n)
        if key not in self.cache:
            self.cache[key] = make_pool(kind, split, n, self.cfg.seed, self.cfg.data_root, self.cfg.data.image_size)
        return self.cache[key]


def train_zoo(cfg: DeparaConfig, device: torch.device, resume: bool = False, pools: _Pools | None = None) -> dict:
    """Train one model per task into <zoo>/models/<task>.pt; with `resume`, finished models are kept and an
    interrupted one continues exactly from <zoo>/runs/<task>/last.pt."""
    pools = pools or _Pools(cfg)
    out = zoo_dir(cfg)
    (out / "models").mkdir(parents=True, exist_ok=True)
    info = {}
    unknown = [t for t in cfg.zoo.tasks if t not in TASKS]  # before any training, not after the first models
    if unknown:
        raise ConfigError(f"unknown task {unknown[0]!r} in zoo.tasks; known: {', '.join(TASKS)}")
    for i, task in enumerate(progress(cfg.zoo.tasks, desc="zoo")):
        path = out / "models" / f"{task}.pt"
        if resume and path.is_file():
            info[task] = checkpoint.load(path, kind="depara-zoo-model")["meta"]
            continue
        pool = pools.get(_pool_kind(task, cfg), "train", cfg.data.n_train * _oversample(task))
        x, y, _ = task_view(task, pool, cfg.seed)
        x, y = x[:cfg.data.n_train], y[:cfg.data.n_train]
        t0 = time.time()
        model = train_task_model(out / "runs" / task, x, y, TASKS[task].num_classes, arch=cfg.zoo.arch,
                                 width=cfg.zoo.width, epochs=cfg.zoo.epochs, batch_size=cfg.zoo.batch_size,
                                 lr=cfg.zoo.lr, seed=cfg.seed * 1000 + i, device=device,
                                 resume="auto" if resume else None, amp=amp_for(device, cfg.precision),
                                 config=cfg)
        meta = {"task": task, "arch": cfg.zoo.arch, "width": cfg.zoo.width, "num_classes": TASKS[task].num_classes,
                "mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD),
                "about": TASKS[task].about, "n_train": int(len(y)), "train_s": round(time.time() - t0, 2)}
        save_zoo_model(path, model, meta)
        info[task] = meta
    return info


def _oversample(task: str) -> int:
    """Subset tasks need a bigger pool to find n images of their classes (vehicles are 40% of CIFAR)."""
    return {"animals": 2, "vehicles": 3}.get(TASKS[task].rule, 1)


def zoo_models(cfg: DeparaConfig, device) -> dict[str, tuple[torch.nn.Module, dict]]:
    """Every source: the zoo's task models plus the configured teachers, or the score.models entries
    (files, torchvision:<arch>[@weights], module:callable, each optionally NAME= and #TAP; depara.sources)."""
    specs = [parse_model_spec(s) for s in cfg.score.models]
    if not specs:
        mdir = zoo_dir(cfg) / "models"
        paths = [mdir / f"{t}.pt" for t in cfg.zoo.tasks]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise DataError(f"zoo model {missing[0]} not found: run depara-zoo with the same config first "
                            f"(or set zoo_dir=DIR)")
        specs = [parse_model_spec(str(p)) for p in paths + [Path(p) for p in cfg.zoo.teachers]]
    out = {}
    for spec in specs:
        if spec.name in out:
            raise ConfigError(f"two models are named {spec.name!r}: give one a name, NAME=SOURCE")
        out[spec.name] = load_source(spec, device)
    return out


def measure_transfer(cfg: DeparaConfig, models: dict, device, pools: _Pools | None = None) -> dict:
    """acc(s -> t): linear probe of source s's frozen pooled features on target t (spec 7.2 ground truth)."""
    pools = pools or _Pools(cfg)
    targets = default_targets(cfg)
    if cfg.transfer.random_floor:
        torch.manual_seed(cfg.seed + 99)
        arch_model = next(iter(models.values()))
        from .zoo import create_model

        floor = create_model(arch_model[1]["arch"], 10, int(arch_model[1].get("width", 16))).to(device).eval()
        models = dict(models, random_init=(floor, {"arch": arch_model[1]["arch"]}))
    feats: dict = {}
    acc = np.full((len(targets), len(models)), np.nan)
    amp = amp_for(device, cfg.precision)
    sizes = {"transfer": cfg.data.n_transfer, "test": cfg.data.n_test}
    for ti, t in enumerate(progress(targets, desc="transfer")):
        kind, transform = _pool_kind(t, cfg), TASKS[t].transform
        views = {split: task_view(t, pools.get(kind, split, n), cfg.seed) for split, n in sizes.items()}
        for si, (s, (model, _)) in enumerate(models.items()):
            if s == t:
                continue  # the target's own model is its reference, not a source
            f = {}
            for split, (_, y, rows) in views.items():
                key = (s, kind, transform, split)
                if key not in feats:  # same pool + transform: extract once, reuse for every target on it
                    imgs = transform_pool(pools.get(kind, split, sizes[split]), transform, cfg.seed).images
                    feats[key] = features(model, preprocess(imgs), device=device, amp=amp)
                f[split] = (feats[key][rows], y)
            acc[ti, si] = probe_accuracy(f["transfer"][0], f["transfer"][1], f["test"][0], f["test"][1],
                                         cfg.transfer.iters, cfg.transfer.l2)
    names = list(models)
    result = {"targets": targets, "sources": [n for n in names if n != "random_init"],
              "acc": {t: {s: (None if np.isnan(acc[i, j]) else round(float(acc[i, j]), 3))
                          for j, s in enumerate(names) if s != "random_init"} for i, t in enumerate(targets)}}
    if "random_init" in names:
        j = names.index("random_init")
        result["random_init_floor"] = {t: round(float(acc[i, j]), 3) for i, t in enumerate(targets)}
    return result


def probe_tensor(cfg: DeparaConfig) -> tuple[torch.Tensor, np.ndarray]:
    """The ordered probe set, preprocessed once for every model (same raw images, same crops)."""
    if cfg.data.probe_folder:
        raw = _folder_images(Path(cfg.data.probe_folder), cfg.data.n_probe, cfg.data.image_size, cfg.data.resize)
    else:
        kind = cfg.data.probe_pool
        if kind == "auto":
            kind = "synth" if cfg.data.kind == "synth" else "cifar"
        raw = probe_images(kind, cfg.data.n_probe, cfg.seed, cfg.data_root, cfg.data.image_size)
    return preprocess(raw, *_stats(cfg, {})), raw


def _stats(cfg: DeparaConfig, meta: dict) -> tuple[tuple, tuple]:
    """A model's own normalisation (checkpoint meta), else data.mean/std, else CIFAR-10's (the zoo's)."""
    if "mean" in meta and "std" in meta:
        return tuple(meta["mean"]), tuple(meta["std"])
    if cfg.data.mean:
        return tuple(cfg.data.mean), tuple(cfg.data.std)
    return tuple(CIFAR10_MEAN), tuple(CIFAR10_STD)


def resize_center_crop(im, size: int, resize: int = 0):
    """resize = 0: the largest centre square, resized to size x size; resize = R: the shorter side resized to R
    (aspect kept, as torchvision's Resize(R)), then the centre size x size crop (CenterCrop)."""
    from PIL import Image

    if not resize:
        s = min(im.size)
        left, top = (im.width - s) // 2, (im.height - s) // 2
        return im.crop((left, top, left + s, top + s)).resize((size, size), Image.BILINEAR)
    w, h = im.size
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nw, nh = int(resize * w / h), resize
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    return im.crop((left, top, left + size, top + size))


def _folder_images(folder: Path, n: int, size: int, resize: int = 0) -> np.ndarray:
    from PIL import Image

    if not folder.is_dir():
        raise DataError(f"data.probe_folder {folder} is not a directory of images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
    if len(files) < 3:
        raise DataError(f"data.probe_folder {folder}: found {len(files)} images, need at least 3")
    out = []
    for p in files[:n]:  # the same crop for every model
        out.append(np.asarray(resize_center_crop(Image.open(p).convert("RGB"), size, resize)))
    return np.stack(out)


def model_graphs(cfg: DeparaConfig, models: dict, probes: torch.Tensor, device, cache_dir: Path | None = None,
                 raw: np.ndarray | None = None) -> dict[str, Graph]:
    """One graph per model on the shared probes, of its representation (pooled features, or its TAP's output).

    Each model gets the same raw probes (`raw`, uint8 NHWC) normalised its own way (`_stats`). Graphs are cached
    as <cache>/<name>-<key>.pt, the key a hash of the weights, the probe tensor the model sees, the
    representation and every graph option (`graph_key`): a changed model, probe set or option is recomputed,
    and a stale graph is never read (a zoo's graphs/ may be shared by depara-score and depara-select)."""
    graphs = {}
    amp = amp_for(device, cfg.precision)
    for name, (model, meta) in progress(list(models.items()), desc="graphs"):
        x = preprocess(raw, *_stats(cfg, meta)) if raw is not None else probes
        tap = meta.get("tap", "")
        key = graph_key(weights_digest(model), x, cfg.graph,
                        {"tap": tap, "device": torch.device(device).type, "amp": amp is not None,
                         **({"precision": cfg.precision} if amp is not None else {})})
        path = cache_dir / f"{name}-{key[:20]}.pt" if cache_dir is not None else None
        if path is not None and path.is_file():
            g = load_graph(path)
            if g.meta.get("key") == key:
                graphs[name] = g
                continue
        fn, close = representation(model, tap)
        try:
            g = build_graph(fn, x, cfg.graph, model=model, device=device, meta={"name": name, "key": key}, amp=amp)
        finally:
            close()
        if path is not None:
            save_graph(g, path)
        graphs[name] = g
    return graphs


def graph_key(weights: str, probes: torch.Tensor, opts, extra: dict) -> str:
    """sha256 of the weights digest, the exact probe tensor, every GraphOptions field and `extra`."""
    h = hashlib.sha256(f"depara-graph-v2|{weights}|".encode())
    t = probes.detach().cpu().contiguous()
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(json.dumps({"graph": dataclasses.asdict(opts), **extra}, sort_keys=True).encode())
    return h.hexdigest()


def load_transfer(cfg: DeparaConfig) -> dict | None:
    p = zoo_dir(cfg) / "transfer.json"
    return json.loads(p.read_text()) if p.is_file() else None


def save_transfer(cfg: DeparaConfig, result: dict) -> Path:
    return write_json(zoo_dir(cfg) / "transfer.json", result)
