"""Configuration (defaults = the reference's DCGAN symmetric one-stage MNIST setting, spec §2.7)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tenfold.config import RunConfig, nonnegative, positive, probability
from tenfold.errors import ConfigError


@dataclass
class ModelConfig:
    arch: Literal["dcgan", "mlp"] = "dcgan"
    zdim: int = 100
    g_width: int = 128  # DCGAN d of the generator
    d_width: int = 128  # DCGAN d of the discriminator
    size: int = 64
    g_norm: Literal["bn", "gn", "ln", "none"] = "bn"
    d_norm: Literal["bn", "gn", "ln", "none"] = "bn"  # asymmetric one-stage needs gn / ln / none


@dataclass
class OptimConfig:
    lr_g: float = positive(2e-4)
    lr_d: float = positive(1.35e-5)  # one-stage runs use a smaller D lr than two-stage (reference configs)
    betas: tuple[float, float] = (0.5, 0.999)
    milestones: list[int] = field(default_factory=list)  # epochs at which both lrs are multiplied by lr_gamma
    lr_gamma: float = positive(0.1)
    # R1 penalty weight: D's loss gets r1/2 · E‖∇_x D(x_real)‖² (Mescheder et al. 2018). 0 = off = the reference.
    # Not in the paper; with it the saturating minimax loss learns at CPU scale (README, "minimax").
    r1: float = nonnegative(0.0)


@dataclass
class DataConfig:
    name: Literal["mnist", "cifar10", "folder", "shapes", "ring"] = "mnist"
    path: str | None = None  # ImageFolder root for name=folder (CelebA, LSUN Churches, FFHQ)
    num_samples: int = 5000  # shapes / ring
    num_workers: int = 0


@dataclass
class KDConfig:
    """Data-free KD (DFAD-style) in one or two stages (spec §2.9)."""

    teacher: str | None = None  # plain state_dict with a JSON beside it; None: $TENFOLD_MODELS/cifar10_wrn40_2.pt
    student: str = "wrn16_1"
    lr_s: float = positive(0.1)
    lr_g: float = positive(1e-3)
    momentum: float = probability(0.9)
    weight_decay: float = 5e-4
    zdim: int = 256
    g_width: int = 64
    iters_per_epoch: int = nonnegative(50)
    # two-stage: student steps per generator step (DFAD uses 5; 1 keeps budgets equal)
    student_steps: int = nonnegative(1)
    eval_limit: int = 0  # size of a fixed random test subset for the final accuracy (0 = all)


@dataclass
class OSGANConfig(RunConfig):
    out: str = "runs/osgan"
    task: Literal["gan", "kd"] = "gan"
    mode: Literal["one", "two"] = "one"
    loss: str = "minimax"  # minimax | wgan | nonsaturating | lsgan | hinge
    form: Literal["simple", "packed"] = "simple"  # packed = the paper's presentation (same gradients)
    d_forward: Literal["separate", "concat"] = "separate"  # concat = the reference's WGAN script
    bn_policy: Literal["refuse", "warn", "ignore"] = "refuse"  # asymmetric one-stage with BatchNorm in D
    clip: float = 0.0  # WGAN weight clipping of all D parameters (0.01 in the reference); 0 = off
    gamma_max: float = 1e4
    batch_size: int = positive(128)
    epochs: int = nonnegative(20)
    max_steps: int = nonnegative(0)  # > 0: stop after this many iterations (overrides epochs)
    ckpt_every: int = 500
    log_every: int = 50
    eval_samples: int = 2000  # generated samples for the quality proxy at the end (0 = skip)
    # iterations between progress pictures <out>/samples/step_<N>.png (fixed noise, so they compare over time;
    # the 2-D ring: real vs generated scatter); 0 = once per epoch. Written between steps, never inside one.
    sample_every: int = nonnegative(0)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    kd: KDConfig = field(default_factory=KDConfig)

    def validate(self):
        from .losses import LOSSES  # here, not at the top: --help must not import torch

        if self.loss not in LOSSES:
            raise ConfigError(f"loss: unknown '{self.loss}'; choose one of {', '.join(LOSSES)}")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be ≥ 1")
        if self.optim.r1 > 0 and self.mode == "one" and self.d_forward == "concat":
            raise ConfigError("optim.r1 > 0 in one stage needs d_forward=separate (with concat the penalty's "
                              "gradient would reach G through D's batch statistics)")
        if self.data.name == "ring" and self.model.arch != "mlp":
            raise ConfigError("data.name=ring needs model.arch=mlp")
