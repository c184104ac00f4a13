"""Typed configs; defaults are the spec's ImageNet ViT-S/16 pre-training settings (§2.8) and eval protocols (§3)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tenfold.config import RunConfig, nonnegative, positive, probability
from tenfold.errors import ConfigError

__all__ = ["ModelConfig", "MixConfig", "LossConfig", "AugConfig", "DataConfig", "OptimConfig", "MonitorConfig",
           "PretrainConfig", "KnnConfig", "LinearConfig", "FinetuneConfig", "EvalConfig"]


@dataclass
class ModelConfig:
    arch: str = "vit_small"  # vit_tiny | vit_small | vit_base (or any name with embed_dim and num_heads set)
    patch_size: int = 16  # ViT patch: 16 for ImageNet, 2 for CIFAR
    img_size: int = 224  # size the position embedding is built for
    embed_dim: int = 0  # 0: from arch
    depth: int = 12
    num_heads: int = 0  # 0: from arch (ViT-S: 12 heads, MoCo-v3 style)
    mlp_ratio: float = 4.0
    drop_path: float = 0.1  # online backbone only; the momentum backbone uses 0
    framework: Literal["momentum", "no_momentum"] = "momentum"
    proj_layers: int = 3
    proj_hidden: int = 4096
    proj_dim: int = 256
    pred_layers: int = 2
    pred_hidden: int = 4096
    compile: bool = False  # torch.compile the online network's forward (measured in bench/gpu.py, not assumed)
    compile_backend: str = "inductor"  # torch.compile backend ("eager"/"aot_eager": no C++/Triton compiler)

    def validate(self):
        if self.img_size % self.patch_size:
            raise ConfigError(f"model.img_size {self.img_size} must be a multiple of model.patch_size "
                              f"{self.patch_size}")
        if self.proj_layers < 1 or self.pred_layers < 1:
            raise ConfigError("model.proj_layers and model.pred_layers must be >= 1")


@dataclass
class MixConfig:
    mix_num: list[int] = field(default_factory=lambda: [2])  # m; a list draws one m per step
    mix_p: float = probability(1.0)  # probability that a step mixes (0: identity mixing, one-hot targets)
    patch_size: list[int] = field(default_factory=list)  # mix patch size(s); empty: the ViT patch size
    scope: Literal["local", "global"] = "local"  # DDP: mix within each device's batch (reference) or all-gathered
    smoothing: float = 0.0  # label smoothing eps of the soft targets

    def validate(self):
        if not self.mix_num or min(self.mix_num) < 1:
            raise ConfigError("mix.mix_num must be a non-empty list of integers >= 1, e.g. [2]")
        if not 0.0 <= self.mix_p <= 1.0:
            raise ConfigError(f"mix.mix_p must be in [0, 1], got {self.mix_p}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ConfigError(f"mix.smoothing must be in [0, 1), got {self.smoothing}")


@dataclass
class LossConfig:
    # patchmix: L_src + L_m2o/2 + L_m2m/2 (+ multi-crop); src_only: the MoCo-v3-style no-mix baseline (L_src);
    # mocov3: the symmetric no-mix step l(q1,k2) + l(q2,k1) (2 online + 2 momentum passes).
    objective: Literal["patchmix", "src_only", "mocov3"] = "patchmix"
    temp: float = 0.2
    warmup_temp: float = 0.2  # linear warmup_temp -> temp over warmup_temp_epochs (constant by default)
    warmup_temp_epochs: float = nonnegative(30)
    w_src: float = 1.0
    w_m2o: float = 0.5
    w_m2m: float = 0.5
    w_multi: float = 1.0
    w_multi_mix: float = 1.0
    # Label smoothing eps of the original->original targets Y_oo (L_src, L_multi), separate from mix.smoothing:
    # the reference builds its un-mixed targets with PatchMixer's default eps = 0.1 while its configs give the
    # mixed targets eps = 0, so 0.1 reproduces the paper; 0 gives one-hot Y_oo.
    o2o_smoothing: float = 0.1

    def validate(self):
        if self.temp <= 0 or self.warmup_temp <= 0:
            raise ConfigError("loss.temp and loss.warmup_temp must be > 0")
        if not 0.0 <= self.o2o_smoothing < 1.0:
            raise ConfigError(f"loss.o2o_smoothing must be in [0, 1), got {self.o2o_smoothing}")


@dataclass
class AugConfig:
    input_size: int = 224
    global_scale: tuple[float, float] = (0.35, 1.0)  # (0.1, 1) for CIFAR; (0.35, 1) with multi-crop
    local_crops: int = 8  # number of 96-px local crops (0 for CIFAR)
    local_size: int = 96
    local_scale: tuple[float, float] = (0.05, 0.35)
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    jitter_p: float = probability(0.8)
    gray_p: float = probability(0.2)
    blur_p: tuple[float, float] = (1.0, 0.1)  # view 1, view 2
    local_blur_p: float = probability(0.5)
    solarize_p: tuple[float, float] = (0.0, 0.2)
    flip_p: float = probability(0.5)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet statistics, also for CIFAR
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # torchvision: RandomResizedCrop's rule (10 tries, whole pixels, centre-crop fallback); clamp: one draw with
    # the sides clamped to the image (the earlier batched approximation; the calibrated CPU configs keep it)
    rrc: Literal["torchvision", "clamp"] = "torchvision"
    # random: each image applies brightness/contrast/saturation/hue in its own random order (torchvision's
    # ColorJitter); fixed: always in that order (earlier behaviour, kept by the calibrated CPU configs)
    jitter_order: Literal["random", "fixed"] = "random"

    def validate(self):
        lo, hi = self.global_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"aug.global_scale must satisfy 0 < lo <= hi <= 1, got {self.global_scale}")
        if self.local_crops < 0:
            raise ConfigError("aug.local_crops must be >= 0")


@dataclass
class DataConfig:
    dataset: Literal["cifar10", "cifar100", "stl10", "imagefolder", "shapes"] = "cifar10"
    path: str | None = None  # imagefolder: directory with train/ and val/ sub-folders
    train_per_class: int = 0  # >0: class-balanced subset of the train split
    test_per_class: int = 0
    subset_seed: int = 0
    shapes_train: int = 2000  # synthetic shapes (offline demo data)
    shapes_test: int = 1000
    # imagefolder evaluation images (kNN features, test sets): shorter side resized to this, centre-cropped; the
    # random training crops are taken from the full-resolution images instead (data.FolderCrops)
    base_size: int = 256
    num_workers: int = 0


@dataclass
class OptimConfig:
    epochs: float = nonnegative(300)
    steps: int = nonnegative(0)  # >0: total optimizer steps (overrides epochs)
    warmup_epochs: float = nonnegative(10)
    batch_size: int = positive(1024)  # global batch; per device = batch_size / world size
    base_lr: float = positive(5e-4)  # lr_eff = base_lr * global_batch / 256
    min_lr: float = nonnegative(1e-6)
    weight_decay: float = 0.04  # cosine wd -> wd_end per iteration, group 0 only
    weight_decay_end: float = 0.4
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = probability(0.996)  # EMA mu0 -> 1 (cosine)
    faithful_momentum_per_epoch: bool = False  # reference quirk Q1: mu changes once per epoch

    def validate(self):
        if self.batch_size < 2:
            raise ConfigError("optim.batch_size must be >= 2 (BatchNorm heads; use >= 8)")
        if self.epochs <= 0 and self.steps <= 0:
            raise ConfigError("set optim.epochs > 0 or optim.steps > 0")
        if not 0.0 <= self.momentum <= 1.0:
            raise ConfigError(f"optim.momentum must be in [0, 1], got {self.momentum}")


@dataclass
class MonitorConfig:
    knn_every: int = 0  # steps between online kNN monitors (0: only at the end)
    knn_final: bool = True  # kNN (k=20) on the test split at the end of training
    knn_k: int = 20
    knn_t: float = 0.07
    max_eval: int = 0  # >0: cap on train/test images used by the monitor


@dataclass
class PretrainConfig(RunConfig):
    seed: int = 7
    out: str = "runs/patchmix"
    model: ModelConfig = field(default_factory=ModelConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(dataset="imagefolder"))
    optim: OptimConfig = field(default_factory=OptimConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    amp: bool = True  # autocast on CUDA to `precision` (bf16 | fp16 with a GradScaler); no-op on CPU
    ckpt_every: int = 0  # steps; last.pt is always written at the end
    log_every: int = 10

    def validate(self):
        for p in self.mix.patch_size or [self.model.patch_size]:
            for s in [self.aug.input_size] + ([self.aug.local_size] if self.aug.local_crops else []):
                if s % p:
                    raise ConfigError(f"mix.patch_size {p} must divide the crop size {s}")


@dataclass
class KnnConfig:
    k: list[int] = field(default_factory=lambda: [10, 20, 100, 200])
    t: float = 0.07
    batch_size: int = positive(256)
    faithful_random_head: bool = False  # reference quirk Q3: kNN on a random Linear(D, 1000) of the CLS


@dataclass
class LinearConfig:
    epochs: int = nonnegative(100)
    base_lr: float = positive(0.02)  # lr = base_lr * batch / 256 (ViT-S 0.02, ViT-T 0.05, ViT-B 0.01)
    batch_size: int = positive(256)
    momentum: float = probability(0.9)  # Nesterov SGD, weight decay 0, cosine per epoch
    weight_decay: float = 0.0
    scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop + flip on the train split
    augment: bool = True  # false: precompute frozen features once (fast, no augmentation)


@dataclass
class FinetuneConfig:
    epochs: int = nonnegative(100)
    base_lr: float = positive(5e-4)  # lr = base_lr * batch / 256 (ViT-T: 1e-3)
    batch_size: int = positive(256)
    warmup_epochs: float = nonnegative(10)
    warmup_lr: float = nonnegative(1e-6)
    min_lr: float = nonnegative(1e-5)
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    drop_path: float = 0.1
    smoothing: float = 0.1
    mixup: float = 0.8
    cutmix: float = 1.0
    mix_prob: float = probability(1.0)
    switch_prob: float = probability(0.5)
    random_crop_pad: int = 4  # CIFAR: RandomCrop(32, padding=4) + flip; 0: RandomResizedCrop(0.08, 1)
    randaug_ops: int = 2  # RandAugment (torchvision's, per image) after the crop; 0 disables
    randaug_magnitude: int = 9
    reprob: float = 0.25  # RandomErasing probability (one box, N(0, 1) pixels) after normalisation


@dataclass
class EvalConfig(RunConfig):
    seed: int = 7
    out: str = "runs/patchmix-eval"
    checkpoint: str = ""  # a patchmix-train run directory or its last.pt
    protocol: Literal["knn", "linear", "finetune"] = "knn"
    encoder: Literal["auto", "momentum", "online"] = "auto"  # auto: momentum if present (fixes Q5)
    data: DataConfig = field(default_factory=lambda: DataConfig(dataset="cifar10"))
    eval_size: int = 0  # 0: the pre-training model.img_size
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    knn: KnnConfig = field(default_factory=KnnConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    amp: bool = True
