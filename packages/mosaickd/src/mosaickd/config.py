"""Typed configs; defaults = the spec's defaults (README command of the official repo, spec §2.5/§2.7)."""
from __future__ import annotations

from dataclasses import dataclass, field

from tenfold.config import RunConfig, nonnegative, positive, probability
from tenfold.errors import ConfigError

__all__ = ["DataConfig", "ModelConfig", "GeneratorConfig", "DiscriminatorConfig", "LossConfig", "OptimConfig",
           "ScheduleConfig", "MosaicConfig", "KDConfig", "DataFreeConfig", "TeacherConfig", "TeacherTrainConfig"]


def _positive(obj, *names):
    for n in names:
        if getattr(obj, n) <= 0:
            raise ConfigError(f"{n} must be > 0, got {getattr(obj, n)}")


@dataclass
class DataConfig:
    """Data sets by name: cifar10, cifar100, mnist, svhn, stl10, shapes, imagenet32, places365_32, folder:<dir>."""

    in_domain: str = "cifar100"  # evaluation set (its test split) and the in-domain normalisation
    in_domain_classes: list[int] = field(default_factory=list)  # keep (and remap to 0..) these classes; [] = all
    test_per_class: int = 0  # > 0: a fixed-seed evaluation subset with this many images per class
    ood: list[str] = field(default_factory=lambda: ["cifar10"])  # unlabeled OOD train sets, concatenated
    ood_classes: list[int] = field(default_factory=list)  # keep only these labels of the first OOD set
    ood_per_class: int = 0  # > 0: a fixed-seed pool of this many images per class of the first OOD set
    ood_max: int = 0  # > 0: cap on images taken from each further OOD set (fixed seed)
    ood_patch_shuffle: int = 0  # > 0: permute the k x k patches of every OOD image (spec §7b's harder variant)
    ood_subset: bool = False  # keep the highest-teacher-entropy OOD images (ImageNet/Places, spec §2.4)
    ood_subset_size: int = 0  # 0: the size of the in-domain train set (the code's N)
    in_domain_norm: str = ""  # stats name in NORMALIZE_DICT; "" = in_domain's name
    ood_norm: str = ""  # stats of the KD-step OOD stream; "" = the first OOD set's name
    kd_ood_normalization: str = "ood"  # ood (code behaviour) | in_domain (consistent with the D-real stream)
    kd_ood_augment: bool = True  # random crop (pad 4) + flip on the KD-step OOD stream
    img_size: int = 32
    channels: int = 3
    synthetic_n: int = 4000  # size of the `shapes` train split (test split: a quarter)
    cache_teacher_ood: bool = False  # without augmentation: compute the teacher's OOD logits once (speed)

    def validate(self):
        if self.kd_ood_normalization not in ("ood", "in_domain"):
            raise ConfigError(f"data.kd_ood_normalization must be ood or in_domain, got {self.kd_ood_normalization!r}")
        if not self.ood:
            raise ConfigError("data.ood: give at least one OOD data set, e.g. data.ood=[cifar10]")
        if self.cache_teacher_ood and self.kd_ood_augment:
            raise ConfigError("data.cache_teacher_ood needs data.kd_ood_augment=false (augmented logits differ)")
        if self.img_size % 4:
            raise ConfigError(f"data.img_size must be a multiple of 4, got {self.img_size}")


@dataclass
class ModelConfig:
    teacher: str = ""  # teacher weights (plain state_dict with a .json beside it, as in ../shared/models)
    teacher_arch: str = ""  # only when the teacher has no .json
    num_classes: int = 0  # only when the teacher has no .json
    student: str = "wrn16_1"  # any tenfold.nets name or cnn8/cnn16/cnn32

    def validate(self):
        if not self.student:
            raise ConfigError("model.student must name a network, e.g. wrn16_1")


@dataclass
class GeneratorConfig:
    nz: int = 100
    ngf: int = 64
    width_mult: int = 4  # 4 = MosaicKD's Generator (256-128-64 channels), 2 = CMI's narrower one


@dataclass
class DiscriminatorConfig:
    kind: str = "patch"  # patch (the method) | global (pitfall-1 ablation)
    ndf: int = 128

    def validate(self):
        if self.kind not in ("patch", "global"):
            raise ConfigError(f"discriminator.kind must be patch or global, got {self.kind!r}")


@dataclass
class LossConfig:
    """README-command weights (the paper's numbers); the argparse defaults are local 0.1, align 0.1, adv 1,
    balance 0 (configs/mosaickd_cifar100_cifar10_argparse_weights.yaml)."""

    local: float = 1.0
    align: float = 1.0
    adv: float = 1.0
    balance: float = 10.0
    T: float = 1.0  # KD temperature of the student step


@dataclass
class OptimConfig:
    lr: float = positive(0.1)  # student SGD
    momentum: float = probability(0.9)
    weight_decay: float = 1e-4
    lr_g: float = positive(1e-3)  # generator and discriminator Adam (one flag in the code)
    betas: tuple[float, float] = (0.5, 0.999)


@dataclass
class ScheduleConfig:
    epochs: int = nonnegative(200)  # one epoch = one pass of the D-real OOD stream
    batch_size: int = positive(256)
    kd_steps: int = nonnegative(5)  # student steps per G/D step
    iters: int = nonnegative(0)  # > 0: total outer iterations instead of epochs * iterations per epoch
    eval_every: int = 0  # outer iterations between evaluations; 0 = once per epoch
    ckpt_every: int = 0  # outer iterations between checkpoints; 0 = at evaluations
    kd_use_ood: bool = True  # concat(synthetic, OOD) in the student step (pitfall 5); false = synthetic only
    amp: bool = True  # autocast on CUDA at the run's `precision` (bf16 by default); false = fp32; no-op on CPU
    log_every: int = 10
    eval_teacher: bool = True  # also report the teacher's accuracy on the in-domain test set

    def validate(self):
        _positive(self, "epochs", "batch_size", "kd_steps")


@dataclass
class MosaicConfig(RunConfig):
    out: str = "runs/mosaickd"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: ScheduleConfig = field(default_factory=ScheduleConfig)


@dataclass
class DataFreeConfig:
    """DFQ-style data-free KD of the repo's kd_datafree.py (README: oh 1, ie 20, bn 1, adv 1).
    DFAD = oh 0, ie 0, bn 0 (pure adversarial)."""

    adv: float = 1.0
    oh: float = 1.0
    ie: float = 20.0
    bn: float = 1.0
    g_steps_per_epoch: int = nonnegative(200)
    lr_g: float = positive(1e-3)
    kd_steps: int = nonnegative(5)


@dataclass
class KDConfig(RunConfig):
    """Baselines: vanilla (blind KD on OOD data), balanced (OOD resampled to balance teacher pseudo-labels),
    datafree (generator-based, no OOD data)."""

    out: str = "runs/kd"
    method: str = "vanilla"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    datafree: DataFreeConfig = field(default_factory=DataFreeConfig)
    T: float = 5.0  # kd_vanilla.py default (pitfall 12); data-free uses 1
    augment: str = "in_domain"  # in_domain: crop+flip+in-domain norm (kd_vanilla.py) | ood | none
    optimizer: str = "sgd"  # sgd (vanilla/balanced) | adam (data-free, lr 1e-3)
    lr: float = positive(0.1)
    momentum: float = probability(0.9)
    weight_decay: float = 1e-4
    epochs: int = nonnegative(200)
    batch_size: int = positive(128)
    steps: int = nonnegative(0)  # > 0: total student steps instead of epochs
    eval_every: int = 0
    ckpt_every: int = 0
    amp: bool = True
    log_every: int = 10
    eval_teacher: bool = True

    def validate(self):
        if self.method not in ("vanilla", "balanced", "datafree"):
            raise ConfigError(f"method must be vanilla, balanced or datafree, got {self.method!r}")
        if self.augment not in ("in_domain", "ood", "none"):
            raise ConfigError(f"augment must be in_domain, ood or none, got {self.augment!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"optimizer must be sgd or adam, got {self.optimizer!r}")
        _positive(self, "epochs", "batch_size", "T", "lr")


@dataclass
class TeacherTrainConfig:
    dataset: str = "cifar10"
    classes: list[int] = field(default_factory=list)  # train on this class subset (remapped to 0..)
    per_class: int = 0  # > 0: a fixed-seed train pool of this many images per class
    test_per_class: int = 0  # > 0: a fixed-seed test subset
    arch: str = "wrn40_2"
    epochs: int = nonnegative(200)
    batch_size: int = positive(256)
    lr: float = positive(0.1)
    momentum: float = probability(0.9)
    weight_decay: float = 1e-4
    steps: int = nonnegative(0)  # > 0: total steps instead of epochs
    augment: bool = True
    norm: str = ""  # stats name; "" = the data set's name
    img_size: int = 32
    channels: int = 3
    synthetic_n: int = 4000
    amp: bool = True


@dataclass
class TeacherConfig(RunConfig):
    out: str = "runs/teacher"
    teacher: TeacherTrainConfig = field(default_factory=TeacherTrainConfig)
    log_every: int = 20
    ckpt_every: int = 0
