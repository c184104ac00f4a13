"""Typed configs; defaults are the official COCO pre-training settings (spec 2.5)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tenfold.config import RunConfig, nonnegative, positive, probability
from tenfold.errors import ConfigError

from .correspondence import OFFICIAL_STRIDE_RULES

__all__ = ["ModelConfig", "LossConfig", "ViewConfig", "AugmentConfig", "DataConfig", "OptimConfig",
           "MonitorConfig", "TrainConfig", "EvalConfig"]


@dataclass
class ModelConfig:
    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 8  # the downstream configs assume 8 heads for ViT-S, not the usual 6
    drop_path: float = 0.05  # base encoder only; the momentum encoder has 0
    levels: list[int] = field(default_factory=lambda: [1, 2, 7])  # cell sizes in tokens (16/32/112 px)
    pairs: list[int] = field(default_factory=lambda: [10, 10, 2])  # K_c sampled pairs per image and level
    proj_hidden: int = 4096
    pred_hidden: int = 4096
    out_dim: int = 128
    momentum_init: Literal["copy", "official"] = "copy"  # official: momentum Linear weights re-drawn, not copied

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    def validate(self) -> None:
        if self.img_size % self.patch_size:
            raise ConfigError(f"model.img_size {self.img_size} is not a multiple of model.patch_size "
                              f"{self.patch_size}")
        if self.embed_dim % self.num_heads or self.embed_dim % 4:
            raise ConfigError(f"model.embed_dim {self.embed_dim} must be divisible by model.num_heads "
                              f"({self.num_heads}) and by 4 (sin-cos position embedding)")
        if not self.levels or len(self.levels) != len(self.pairs):
            raise ConfigError(f"model.levels {self.levels} and model.pairs {self.pairs} must be non-empty "
                              f"lists of the same length")
        g = self.img_size // self.patch_size
        for c, k in zip(self.levels, self.pairs):
            if c < 1 or g % c:
                raise ConfigError(f"model.levels: cell size {c} tokens does not divide the {g}x{g} token grid; "
                                  f"use divisors of {g}, e.g. {[d for d in range(1, g + 1) if g % d == 0]}")
            if k < 1:
                raise ConfigError(f"model.pairs: K must be >= 1, got {k}")
        if self.momentum_init not in ("copy", "official"):
            raise ConfigError("model.momentum_init must be 'copy' or 'official'")


@dataclass
class LossConfig:
    temperature: float = 0.1
    pair_weighting: Literal["none", "w", "official"] = "none"  # none: mean over real pairs; official: no-op w
    mask_duplicates: bool = False  # exclude same-image keys sharing the query's cell (reference: kept)

    def validate(self) -> None:
        if self.temperature <= 0:
            raise ConfigError(f"loss.temperature must be > 0, got {self.temperature}")


@dataclass
class ViewConfig:
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    min_iou: float = 0.2  # view 2 is re-drawn until box IoU with view 1 exceeds this
    max_tries: int = 1000
    flip_p: float = probability(0.5)
    # per level: [r_row, r_col, lo_row, hi_row, lo_col, hi_col]; null = dense (stride 1)
    stride_rules: list[list[float]] | None = field(default_factory=lambda: [list(r) for r in OFFICIAL_STRIDE_RULES])

    def validate(self) -> None:
        if not (0 < self.scale[0] <= self.scale[1] <= 1):
            raise ConfigError(f"views.scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")
        if self.stride_rules is not None and any(len(r) != 6 for r in self.stride_rules):
            raise ConfigError("views.stride_rules: each rule is [r_row, r_col, lo_row, hi_row, lo_col, hi_col]")


@dataclass
class AugmentConfig:
    """BYOL-style asymmetric photometric augmentation; pairs are (view 1, view 2)."""
    jitter_p: float = probability(0.8)
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    gray_p: float = probability(0.2)
    blur_p: tuple[float, float] = (1.0, 0.1)
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: tuple[float, float] = (0.0, 0.2)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class DataConfig:
    dataset: Literal["image_folder", "cifar10", "cifar100", "stl10", "synthetic"] = "image_folder"
    path: str | None = None  # image_folder: <path>/<any sub-folder>/<images>
    subset: int = 0  # > 0: a class-balanced subset of this many training images (data-efficiency runs)
    synthetic_n: int = 2000
    num_workers: int = 8

    def validate(self) -> None:
        if self.dataset == "image_folder" and not self.path:
            raise ConfigError("data.path is required for data.dataset=image_folder (e.g. data.path=/data/coco/train)")


@dataclass
class OptimConfig:
    epochs: int = nonnegative(800)
    steps: int = nonnegative(0)  # > 0 overrides epochs
    batch_size: int = positive(256)  # total over all processes
    lr_base: float = positive(1e-3)  # lr = lr_base * batch_size / 256
    min_lr: float = nonnegative(1e-6)
    warmup_epochs: float = nonnegative(10)
    warmup_steps: int = -1  # >= 0 overrides warmup_epochs
    weight_decay: float = 0.05
    decay_norm_bias: bool = True  # official: one group, decay on biases/norms/cls too
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float = 3.0  # per parameter tensor; 0 disables
    momentum: float = probability(0.996)  # m0 of the cosine schedule to 1

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("optim.batch_size must be >= 1")
        if not 0 <= self.momentum <= 1:
            raise ConfigError(f"optim.momentum must be in [0, 1], got {self.momentum}")


@dataclass
class MonitorConfig:
    """Online kNN monitor on labelled data sets (cifar10/100, stl10, synthetic)."""
    knn_every: int = 0  # steps; 0 = only at the end
    bank: int = 5000  # class-balanced subsets for the online monitor; 0 = the whole split (the GPU/paper configs)
    test: int = 1000
    final_eval: bool = True


@dataclass
class TrainConfig(RunConfig):
    out: str = "runs/mgc"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    views: ViewConfig = field(default_factory=ViewConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    amp: bool = True  # autocast to `precision` (bf16 | fp16 | fp32, RunConfig) on CUDA; false = fp32
    compile: bool = False  # torch.compile the MGC forward (Module.compile: state_dict names unchanged)
    compile_backend: str = "inductor"  # e.g. aot_eager for a quick CPU check of the captured graphs
    ckpt_every: int = 0
    log_every: int = 10

    def validate(self) -> None:
        rules = self.views.stride_rules
        if rules is not None and len(rules) != len(self.model.levels):
            raise ConfigError(f"views.stride_rules has {len(rules)} rules for {len(self.model.levels)} levels "
                              f"{self.model.levels}; give one per level or null for dense")


@dataclass
class EvalConfig(RunConfig):
    out: str = "runs/mgc-eval"
    checkpoint: str = ""  # a training run dir / last.pt, or an exported backbone .pt (JSON beside it)
    encoder: Literal["base", "momentum"] = "base"
    dataset: Literal["cifar10", "cifar100", "stl10", "synthetic"] = "cifar10"
    bank: int = 0  # kNN bank / linear-probe train set: 0 = the whole train split (the paper's protocol); N > 0 =
    #                a class-balanced subset of N (the CPU proofs: 5000)
    test: int = 0  # test images: 0 = the whole test split; N > 0 = a class-balanced subset
    knn_k: int = 20
    knn_t: float = 0.07
    probe_epochs: int = nonnegative(50)
    pairs: int = 500  # held-out view pairs for dense correspondence retrieval
    pairs_k: int = 10  # top-K level-1 (token) pairs per image
    photometric: bool = True  # render the retrieval views with the training augmentation
    batch_size: int = positive(256)

    def validate(self) -> None:
        if not self.checkpoint:
            raise ConfigError("checkpoint is required: mgc-eval checkpoint=runs/mgc/last.pt (or an export .pt)")
