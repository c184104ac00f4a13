"""Configuration (defaults = the official CIFAR-10 settings, spec §2.7)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tenfold.config import RunConfig, nonnegative, positive
from tenfold.errors import ConfigError

# here, not in .models, so that the CLIs' parsers load without torch (--help stays fast)
VGG16_TEACHER = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
VGG16_GRAFT_STUDENT = [[64, 64], [128, 128], [256, 256, 256], [256, 256, 256], [256, 256, 256]]


@dataclass
class ModelConfig:
    teacher_arch: str = "vgg_blockwise"  # vgg_blockwise | resnet18 | resnet34 | tv_resnet18 | tv_resnet34 | ...
    teacher_blocks: list[list[int]] = field(default_factory=lambda: [list(b) for b in VGG16_TEACHER])
    teacher_ckpt: str | None = None  # plain state_dict; None: $TENFOLD_MODELS/cifar10_vgg16_blockwise.pt
    student_arch: str = "vgg_blockwise"
    student_blocks: list[list[int]] = field(default_factory=lambda: [list(b) for b in VGG16_GRAFT_STUDENT])
    student_head_hidden: int = 512
    student_width: int = 32  # CIFAR ResNet students: base width
    positions: list[int] = field(default_factory=lambda: [3, 4, 5])  # K (= number of blocks) is the head
    force_adapters: bool = False  # 1×1 adapters even where widths match
    student_init: Literal["random", "prune"] = "random"  # prune: teacher's top-L1 filters (extension, VGG only)
    num_classes: int = 10


@dataclass
class DataConfig:
    name: Literal["cifar10", "cifar100", "synthetic"] = "cifar10"
    n_shot: int = 10
    few_shot_seed: int = 6  # official: 6 for CIFAR-10, 10 for CIFAR-100
    pool_per_class: int = 5000  # official: shuffled range(5000) per class (500 for CIFAR-100)
    val_per_class: int = 0  # held out of the n shots for select=best_on_val (unlabeled: teacher agreement)
    val_labelled_per_class: int = 0  # labelled images per class from the training split, disjoint from the shots:
    #                                 summary.json's val_acc, for choosing hyperparameters (never the test set)
    augment: Literal["crop_flip", "flip", "none"] = "crop_flip"
    cache_prefix: bool = False  # with augment in {flip, none}: cache the frozen prefix and teacher logits
    cache_crops: int = 0  # with cache_prefix: also cache this many seeded random crops (pad 4) of each image;
    #                      ≥ 81: all 81 offsets once, exactly RandomCrop(32, padding=4)'s distribution
    test_limit: int = 0  # evaluate on a fixed random subset of N test images (0 = all)
    synthetic_train: int = 3000
    synthetic_test: int = 1000
    image_size: int = 32


@dataclass
class Stage1Config:
    epochs: list[int] = field(default_factory=lambda: [100, 60, 60])
    lr_block: list[float] = field(default_factory=lambda: [2.5e-4, 2.5e-4, 2.5e-4])
    lr_t2s: list[float] = field(default_factory=lambda: [2.5e-3, 2.5e-3, 2.5e-3])
    lr_s2t: list[float] = field(default_factory=lambda: [2.5e-3, 2.5e-3, 2.5e-3])
    scale_lr_by_shots: bool = True  # lr × n/10 (official)


@dataclass
class Stage2Config:
    epochs: list[int] = field(default_factory=lambda: [100, 100])
    lr: float = positive(1e-4)  # the reference hard-codes 1e-4 here; configurable, not scaled by shots
    select: Literal["last", "best_on_val", "best_on_test"] = "last"  # best_on_test = the reference (leaks test)


@dataclass
class BaselineConfig:
    # Adam lr of the KD / scratch baselines; for plain KD the best of {1e-4, 3e-4, 9e-4} on labelled validation
    # images from the training split (bench/compare_tuned.py, CIFAR-10 10-shot; never chosen on the test set)
    lr: float = positive(3e-4)
    epochs: int = nonnegative(0)  # 0: the same number of epochs as NetGraft's two stages together (equal steps)


@dataclass
class NetGraftConfig(RunConfig):
    out: str = "runs/netgraft"
    method: Literal["netgraft", "kd", "kd_scratch", "scratch"] = "netgraft"  # kd_scratch: no copied prefix
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    loss: Literal["normalized_mse", "mse", "kl"] = "normalized_mse"
    kl_temperature: float = 4.0
    batch_size: int = nonnegative(0)  # 0: int(64 · n/10) (official scaling rule)
    eval_every: int = 0  # evaluate the test set every N epochs for logging (0: only at the end)
    num_workers: int = 0
    checkpoint_every: int = 10  # epochs between resume checkpoints (and at every phase end); resume stays exact

    def validate(self):
        n_units = len(self.model.positions)
        for name, vals in (("stage1.epochs", self.stage1.epochs), ("stage1.lr_block", self.stage1.lr_block),
                           ("stage1.lr_t2s", self.stage1.lr_t2s), ("stage1.lr_s2t", self.stage1.lr_s2t)):
            if len(vals) != n_units:
                raise ConfigError(f"{name} needs one value per grafting unit ({n_units}), got {len(vals)}")
        if len(self.stage2.epochs) != n_units - 1:
            raise ConfigError(f"stage2.epochs needs {n_units - 1} values (chains of length 2..{n_units}), "
                              f"got {len(self.stage2.epochs)}")
        pos = self.model.positions
        if any(b != a + 1 for a, b in zip(pos, pos[1:])):
            raise ConfigError(f"model.positions must be consecutive for progressive grafting, got {pos}")
        if self.data.n_shot < 1:
            raise ConfigError("data.n_shot must be ≥ 1")
        if self.data.val_per_class >= self.data.n_shot:
            raise ConfigError("data.val_per_class must be smaller than data.n_shot")
        if self.stage2.select == "best_on_val" and self.data.val_per_class == 0:
            raise ConfigError("stage2.select=best_on_val needs data.val_per_class ≥ 1")
        if self.data.cache_prefix and self.data.augment == "crop_flip":
            raise ConfigError("data.cache_prefix needs data.augment=flip or none (random crops change the prefix; "
                              "data.cache_crops=N caches N fixed crops per image instead)")
        archs = {self.model.teacher_arch, self.model.student_arch}
        if self.model.student_init == "prune" and (self.method in ("scratch", "kd_scratch")
                                                   or archs != {"vgg_blockwise"}):
            raise ConfigError("model.student_init=prune needs VGG-blockwise teacher and student and method "
                              "netgraft or kd (it copies pruned teacher filters into the grafted units)")
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be ≥ 1 epoch, got {self.checkpoint_every}")
        if self.data.val_labelled_per_class < 0:
            raise ConfigError("data.val_labelled_per_class must be ≥ 0")
        if self.data.cache_crops < 0 or (self.data.cache_crops and not self.data.cache_prefix):
            raise ConfigError("data.cache_crops needs data.cache_prefix=true and must be ≥ 0")

    @property
    def factor(self) -> float:
        return self.data.n_shot / 10.0

    @property
    def effective_batch(self) -> int:
        return self.batch_size or max(1, int(64 * self.factor))


@dataclass
class TeacherConfig(RunConfig):
    """netgraft-teacher: a teacher trained with labels (teacher.py)."""

    out: str = "runs/netgraft-teacher"
    arch: str = "vgg_blockwise"
    blocks: list[list[int]] = field(default_factory=lambda: [list(b) for b in VGG16_TEACHER])
    num_classes: int = 10
    data: Literal["cifar10", "cifar100", "synthetic"] = "cifar10"
    synthetic_train: int = 3000
    synthetic_test: int = 1000
    image_size: int = 32
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 2  # VGG without BN can fail to start at a high lr (spec pitfall)
