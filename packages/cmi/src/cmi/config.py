"""Typed configs (defaults = the spec's scratch-CMI CIFAR-10 wrn40_2 -> wrn16_1 script, §2.8) and
per-method presets for the baselines (§2.9), applied before the YAML file and the overrides."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

from tenfold.config import RunConfig, nonnegative, positive, probability
from tenfold.errors import ConfigError

METHODS = ("cmi", "deepinversion", "dafl", "zskt", "dfq", "dfad", "vanilla", "noise")
GAN_METHODS = ("dafl", "zskt", "dfq", "dfad")


@dataclass
class TeacherConfig:
    path: str = "../shared/models/cifar10_wrn40_2.pt"  # plain state_dict with a .json beside it (arch, classes)
    arch: str | None = None  # override the .json's arch
    num_classes: int | None = None


@dataclass
class StudentConfig:
    arch: str = "wrn16_1"


@dataclass
class DataConfig:
    # the real test set (evaluation only; the training set only for vanilla KD / teacher training)
    dataset: Literal["cifar10", "cifar100", "toy", "synthetic_shapes"] = "cifar10"
    image_size: int = 32
    mean: list[float] = field(default_factory=lambda: [0.4914, 0.4822, 0.4465])  # the teacher's normalisation
    std: list[float] = field(default_factory=lambda: [0.2023, 0.1994, 0.2010])
    test_subset: int = 0  # evaluate on the first N test images (0 = all)
    train_subset: int = 0  # vanilla KD / teacher training on the first N train images (0 = all)
    eval_batch_size: int = positive(256)

    def validate(self):
        if len(self.mean) != len(self.std):
            raise ConfigError("data.mean and data.std must have the same length")
        if self.image_size % 4:
            raise ConfigError(f"data.image_size must be a multiple of 4 (the generator upsamples x4), "
                              f"got {self.image_size}")


@dataclass
class SynthConfig:
    batch_size: int = positive(256)  # B, images per synthesis round
    g_steps: int = nonnegative(200)  # inversion iterations per round (GAN methods: generator updates per round)
    lr_g: float = positive(1e-3)  # Adam lr of G, z and the head (DeepInv: of the pixels)
    nz: int = 256
    ngf: int = 64
    bn: float = 1.0  # BN-statistics loss weight
    oh: float = 1.0  # one-hot (class) loss weight
    adv: float = 0.5  # decision-adversarial loss weight
    cr: float = 0.8  # contrastive loss weight (0 = the no-contrast ablation)
    cr_T: float = 0.1  # InfoNCE temperature tau
    act: float = 0.0  # DAFL activation loss weight
    balance: float = 0.0  # DAFL/DFQ class-balance (entropy) loss weight
    tv: float = 0.001  # DeepInv TV prior weight
    l2: float = 0.0  # DeepInv L2 prior weight
    bank_size: int = 40960  # memory bank rows (multiple of batch_size)
    n_neg: int = 4096  # negatives drawn from the bank per step
    head_dim: int = 256
    feature_layers: list[str] = field(default_factory=list)  # module names for the instance-mean taps ([] = spec)
    reset_generator: bool = True  # re-initialise G every round (False = KamalEngine's feature_reuse)
    split_means: bool = True  # L_cr = mean(batch rows) + mean(bank rows), as the reference code
    gan_loss: Literal["kl", "l1"] = "kl"  # GAN baselines' adversarial criterion (DFAD: l1)
    bank_full_bug: bool = False  # reference: zero negatives in the round the bank is exactly full
    alias_best_bug: bool = False  # reference DeepInv: "best" silently is the final iterate
    per_sample_jitter: bool = False  # DeepInv: per-image jitter instead of the reference's batch-shared one

    def validate(self):
        if self.batch_size < 1 or self.g_steps < 1:
            raise ConfigError("synth.batch_size and synth.g_steps must be >= 1")
        if self.cr > 0 and self.bank_size % self.batch_size:
            raise ConfigError(f"synth.bank_size ({self.bank_size}) must be a multiple of synth.batch_size "
                              f"({self.batch_size})")
        if self.cr_T <= 0 or self.lr_g <= 0:
            raise ConfigError("synth.cr_T and synth.lr_g must be positive")


@dataclass
class KDConfig:
    epochs: int = nonnegative(200)
    ep_steps: int = nonnegative(400)  # student steps per epoch; rounds per epoch = ep_steps / kd_steps
    kd_steps: int = nonnegative(400)  # student steps after each synthesis round
    batch_size: int = positive(128)
    lr: float = positive(0.1)
    momentum: float = probability(0.9)
    weight_decay: float = 1e-4
    T: float = 20.0  # KD temperature (GAN baselines: 1, as the reference code effectively uses)
    loss: Literal["kl", "l1"] = "kl"  # DFAD: l1 on logits
    quantize_pool: bool = True  # keep the pool as uint8 (the reference's PNG round trip)
    init_pool: str | None = None  # pre-inverted warm start: .npz from cmi-synthesize or an image folder
    noise_pool: int = 256  # 'noise' method: number of U[0,1] images in its fixed pool

    def validate(self):
        if self.kd_steps < 1 or self.ep_steps < self.kd_steps or self.ep_steps % self.kd_steps:
            raise ConfigError(f"kd.ep_steps ({self.ep_steps}) must be a positive multiple of kd.kd_steps "
                              f"({self.kd_steps})")
        if self.epochs < 1 or self.T <= 0:
            raise ConfigError("kd.epochs must be >= 1 and kd.T > 0")


@dataclass
class DistillConfig(RunConfig):
    method: Literal["cmi", "deepinversion", "dafl", "zskt", "dfq", "dfad", "vanilla", "noise"] = "cmi"
    out: str = "runs/cmi"
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    ckpt_every_rounds: int = nonnegative(0)  # 0 = once per epoch
    export_pool: bool = False  # write <out>/pool.npz at the end
    eval_teacher: bool = True  # report the teacher's test accuracy in summary.json


@dataclass
class SynthesizeConfig(RunConfig):
    """cmi-synthesize: synthesis rounds only (no student), pool exported to <out>/pool.npz."""
    method: Literal["cmi", "deepinversion"] = "cmi"
    out: str = "runs/cmi-synth"
    rounds: int = positive(10)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=lambda: SynthConfig(adv=0.0))
    png: bool = False  # also write one PNG per image into <out>/images/


@dataclass
class TeacherTrainConfig(RunConfig):
    """cmi-teacher: train a classifier on real data (the reference train_scratch.py)."""
    out: str = "runs/cmi-teacher"
    arch: str = "wrn40_2"
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = nonnegative(200)
    batch_size: int = positive(256)
    lr: float = positive(0.1)
    momentum: float = probability(0.9)
    weight_decay: float = 1e-4
    milestones: list[int] = field(default_factory=lambda: [120, 150, 180])
    gamma: float = 0.1
    num_classes: int = 10


# §2.9 baseline settings from the reference scripts; CMI's are the dataclass defaults.
PRESETS: dict[str, dict] = {
    "cmi": {},
    "deepinversion": {"synth": {"g_steps": 1000, "lr_g": 0.1, "adv": 1.0, "bn": 10.0, "oh": 1.0, "cr": 0.0},
                      "kd": {"batch_size": 256}},
    "dafl": {"synth": {"nz": 512, "adv": 0.0, "bn": 0.0, "oh": 1.0, "act": 0.001, "balance": 20.0, "cr": 0.0,
                       "g_steps": 1}, "kd": {"kd_steps": 5, "T": 1.0, "batch_size": 256}},
    "zskt": {"synth": {"adv": 1.0, "bn": 0.0, "oh": 0.0, "cr": 0.0, "g_steps": 1}, "kd": {"kd_steps": 5, "T": 1.0}},
    "dfad": {"synth": {"adv": 1.0, "bn": 0.0, "oh": 0.0, "cr": 0.0, "g_steps": 1, "gan_loss": "l1"},
             "kd": {"kd_steps": 5, "T": 1.0, "loss": "l1"}},
    "dfq": {"synth": {"adv": 1.0, "bn": 1.0, "oh": 1.0, "balance": 20.0, "cr": 0.0, "g_steps": 1},
            "kd": {"kd_steps": 10, "T": 1.0}},
    "vanilla": {"synth": {"cr": 0.0}},
    "noise": {"synth": {"cr": 0.0}},
}


def preset(method: str) -> dict:
    if method not in PRESETS:
        raise ConfigError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    return copy.deepcopy(PRESETS[method])
