"""Typed configs; defaults are the spec's CIFAR / ViT-Tiny/2 settings (§2.6 pre-training, §2.7 fine-tuning)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tenfold.config import RunConfig, nonnegative, positive, probability
from tenfold.errors import ConfigError

__all__ = ["ModelConfig", "SamplingConfig", "AugConfig", "DataConfig", "OptimConfig", "EvalConfig",
           "PretrainConfig", "FinetuneConfig", "EvalRunConfig"]

CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2023, 0.1994, 0.2010]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class ModelConfig:
    img_size: int = 32
    patch_size: int = 2  # grid G = img_size // patch_size (never hard-coded, pitfall 11)
    embed_dim: int = 192  # tiny 192/3 heads, small 384/6, base 768/12
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    hidden_dim: int = 512  # projector / predictor hidden width
    out_dim: int = 128  # projector / predictor output
    init: Literal["pytorch", "timm"] = "pytorch"  # official: PyTorch default init (pitfall 9)
    compile: bool = False  # torch.compile the training forward (measured in bench/gpu.py, not assumed faster)
    compile_backend: str = "inductor"  # torch.compile backend ("aot_eager": no C++/Triton compiler needed)

    def validate(self):
        if self.img_size % self.patch_size:
            raise ConfigError(f"model.img_size {self.img_size} must be a multiple of model.patch_size "
                              f"{self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"model.embed_dim {self.embed_dim} must be divisible by model.num_heads "
                              f"{self.num_heads}")


@dataclass
class SamplingConfig:
    # aps: sparse view 1 + selective view 2; random: view 2 uniform (= power 0); symmetric: both views
    # independent sparse subsets; full: all tokens, one step per batch (MoCo-v3-style baseline, no momentum)
    mode: Literal["aps", "random", "symmetric", "full"] = "aps"
    ratio: float = 0.25  # r: kept fraction of patches per view
    num_subsets: int = 4  # K: subset pairs (= optimizer steps) per batch; K·r ≤ 1
    power: float = 3.0  # γ in p ∝ (1 − overlap)^γ
    # false = official flip-blind geometry (quirk Q1, faithful default); true = the flipped view's columns are
    # mirrored in the overlap geometry (the improvement: true overlap 0.040 instead of 0.117-0.128)
    flip_aware: bool = False

    def validate(self):
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"sampling.ratio must be in (0, 1], got {self.ratio}")
        if self.num_subsets < 1 or self.num_subsets * self.ratio > 1.0 + 1e-9:
            raise ConfigError(f"sampling.num_subsets·sampling.ratio must be ≤ 1 (got {self.num_subsets}·"
                              f"{self.ratio}); the K view-1 subsets are chunks of one permutation")
        if self.power < 0:
            raise ConfigError(f"sampling.power must be ≥ 0, got {self.power}")


@dataclass
class AugConfig:
    crop_scale: tuple[float, float] = (0.15, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 4 / 3)
    flip_p: float = probability(0.5)
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = probability(0.8)
    gray_p: float = probability(0.2)
    mean: list[float] = field(default_factory=lambda: list(CIFAR_MEAN))
    std: list[float] = field(default_factory=lambda: list(CIFAR_STD))


@dataclass
class DataConfig:
    dataset: Literal["cifar10", "cifar100", "stl10", "folder", "synthetic"] = "cifar10"
    folder_train: str | None = None  # dataset=folder: <dir>/<class>/<image> (ImageNet layout)
    folder_test: str | None = None
    train_per_class: int = 0  # >0: class-balanced subset (pool and kNN bank), e.g. 500
    test_per_class: int = 0
    subset_seed: int = 0
    synthetic_train: int = 2000  # dataset=synthetic (offline demo)
    synthetic_test: int = 500
    num_workers: int = 0

    def validate(self):
        if self.dataset == "folder" and not self.folder_train:
            raise ConfigError("data.dataset=folder needs data.folder_train=<dir with one subfolder per class>")


@dataclass
class OptimConfig:
    batch_size: int = positive(512)  # global
    lr_base: float = positive(1e-3)  # per 256 images: lr = lr_base · batch_size / 256
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.05
    wd_exclude_norm_bias: bool = False  # official: decay on ALL parameters (pitfall 15)
    epochs: int = nonnegative(1600)
    max_steps: int = nonnegative(0)  # >0: stop after this many batches (each has K optimizer steps)
    warmup_epochs: float = nonnegative(20.0)
    # >0: warm-up length in optimizer steps (schedule_unit=step only), the same for arms with different K;
    # 0: warmup_epochs epochs of this arm (K·batches_per_epoch optimizer steps each)
    warmup_steps: int = 0
    schedule_unit: Literal["epoch", "step"] = "epoch"  # official: factor updated once per epoch
    tau: float = 0.1

    def validate(self):
        if self.batch_size < 2:
            raise ConfigError("optim.batch_size must be ≥ 2 (contrastive loss and BatchNorm need a batch)")
        if self.lr_base <= 0 or self.tau <= 0:
            raise ConfigError("optim.lr_base and optim.tau must be positive")
        if self.epochs < 1:
            raise ConfigError("optim.epochs must be ≥ 1")
        if self.warmup_steps < 0 or (self.warmup_steps > 0 and self.schedule_unit != "step"):
            raise ConfigError("optim.warmup_steps must be ≥ 0 and needs optim.schedule_unit=step")


@dataclass
class EvalConfig:
    knn_k: int = 20
    knn_t: float = 0.07
    knn_every: int = 0  # epochs between online kNN monitors (0: only at the end)
    final_knn: bool = True
    linear_probe: bool = False
    # spec §7(d): full-batch L-BFGS logistic regression on standardised frozen CLS features; sgd: the spine's
    # minibatch SGD probe (momentum 0.9, cosine lr) for linear_epochs
    linear_solver: Literal["lbfgs", "sgd"] = "lbfgs"
    linear_iters: int = nonnegative(100)  # L-BFGS iterations
    linear_l2: float = 1e-4  # L2 on the weights (not the bias), added to the mean cross-entropy as l2/2·‖W‖²
    linear_epochs: int = nonnegative(100)  # sgd only
    batch_size: int = positive(256)

    def validate(self):
        if self.linear_iters < 1 or self.linear_epochs < 1:
            raise ConfigError("eval.linear_iters and eval.linear_epochs must be ≥ 1")
        if self.linear_l2 < 0:
            raise ConfigError(f"eval.linear_l2 must be ≥ 0, got {self.linear_l2}")


@dataclass
class PretrainConfig(RunConfig):
    out: str = "runs/aps-pretrain"
    model: ModelConfig = field(default_factory=ModelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    ckpt_every: int = 200  # batches between checkpoints (last.pt is also written at the end)
    log_every: int = 10
    amp: bool = True  # bf16 autocast on CUDA; CPU always runs fp32
    threads: int = 0  # >0: torch.set_num_threads


@dataclass
class FinetuneConfig(RunConfig):
    out: str = "runs/aps-finetune"
    pretrained: str | None = None  # aps-train run dir / last.pt, or a bare backbone state dict (.pth)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    num_classes: int = 0  # 0: from the data set
    epochs: int = nonnegative(100)
    max_steps: int = nonnegative(0)
    batch_size: int = positive(128)
    lr_base: float = positive(2e-3)  # per 512: lr = lr_base · batch_size / 512 (tiny 2e-3, small 1e-3, base 5e-4)
    weight_decay: float = 0.05  # not on 1-D params, biases, pos_embed, cls_token
    layer_decay: float = 1.0  # layer-wise lr decay (1.0 = none, as the official code)
    warmup_epochs: int = nonnegative(5)
    warmup_lr: float = nonnegative(1e-6)
    min_lr: float = nonnegative(1e-5)
    lr_lag: bool = True  # official: scheduler stepped after the epoch, so epoch e uses lr(e-1)
    randaug_ops: int = 2
    randaug_magnitude: int = 9
    reprob: float = probability(0.25)  # random erasing probability (random pixel values)
    mixup: float = 0.8  # Beta(α) for MixUp (0 disables)
    cutmix: float = 1.0  # Beta(α) for CutMix (0 disables)
    mix_prob: float = probability(1.0)
    switch_prob: float = probability(0.5)
    smoothing: float = 0.1
    drop_path: float = 0.0  # official configs say 0.1 but never wire it
    ema: bool = True
    ema_decay: float = 0.99996
    ema_eval: bool = False  # official builds the EMA but never evaluates it
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))  # official fine-tune uses ImageNet stats
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    eval_batch_size: int = positive(192)
    eval_every: int = 1  # epochs
    amp: bool = True
    threads: int = 0
    log_every: int = 10
    ckpt_every: int = 0

    def validate(self):
        if not 0 < self.layer_decay <= 1:
            raise ConfigError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if not 0 <= self.smoothing < 1:
            raise ConfigError(f"smoothing must be in [0, 1), got {self.smoothing}")


@dataclass
class EvalRunConfig(RunConfig):
    out: str = "runs/aps-eval"
    checkpoint: str | None = None  # aps-train / aps-finetune run dir or file; none = random init
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(linear_probe=True))
    mean: list[float] = field(default_factory=lambda: list(CIFAR_MEAN))
    std: list[float] = field(default_factory=lambda: list(CIFAR_STD))
    threads: int = 0
