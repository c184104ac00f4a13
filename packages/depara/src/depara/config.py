"""Configuration: defaults are the spec's (7.2 zoo, 2.6 graph options, 2.4 lambdas)."""
from __future__ import annotations

from dataclasses import dataclass, field

from tenfold.config import RunConfig, nonnegative, positive
from tenfold.errors import ConfigError

# No torch here (the CLIs' --help loads this module): graph options and the method's choices live here, and
# depara.graph / depara.method import them.
__all__ = ["DataConfig", "ZooConfig", "TransferConfig", "ScoreConfig", "SelectConfig", "DeparaConfig",
           "GraphOptions", "ATTRIBUTIONS", "CHANNEL_REDUCE"]

ATTRIBUTIONS = ("grad_input", "saliency", "elrp")
CHANNEL_REDUCE = ("abs_mean", "mean", "none")


@dataclass
class GraphOptions:
    attribution: str = "grad_input"  # grad_input (DEPARA) | saliency | elrp (ablations)
    channel_reduce: str = "abs_mean"  # abs_mean (layer-selection code, default) | mean (Taskonomy, signed)
    center_features: bool = True  # centre edge features over the probes (model selection); False for layers
    objective: str = "sum"  # sum of all units (DeepExplain) | mean (PyTorch code); no cosine depends on it
    # unless reference_accumulation=True (the mean weights each accumulated layer by its own 1/(B*K_l))
    batch_size: int = 50
    node_dtype: str = "float32"  # float16 halves the memory of n x H x W maps
    node_pool: int = 1  # >1: average-pool attribution maps by this factor (memory; a documented deviation)
    elrp_eps: float = 1e-4
    reference_accumulation: bool = False  # True: the official vgg_extract.py bug, layer k's map = sum of layers 1..k

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"graph.batch_size must be >= 1, got {self.batch_size}")
        if self.node_pool < 1:
            raise ConfigError(f"graph.node_pool must be >= 1, got {self.node_pool}")
        if self.node_dtype not in ("float32", "float16"):
            raise ConfigError(f"graph.node_dtype must be float32 or float16, got {self.node_dtype!r}")


@dataclass
class DataConfig:
    kind: str = "synth"  # synth (spec 7.2, offline) | real (CIFAR-10 + MNIST, spec 7.4)
    image_size: int = 24  # synthetic images and probe_folder images (centre crop + resize); CIFAR/MNIST are 32
    n_train: int = 3000  # per zoo model
    n_transfer: int = 1000  # linear-probe training images per pool (a target keeps its own classes of them)
    n_test: int = 1000  # linear-probe test images per pool
    n_probe: int = nonnegative(100)  # DEPARA probe images, shared and ordered
    probe_pool: str = "auto"  # auto (synth for synth, cifar test images for real) | synth | cifar | mnist
    probe_folder: str = ""  # optional: your own probe images (a folder of image files, sorted by name)
    resize: int = 0  # probe_folder: 0 = centre square crop, then resize to image_size; R > 0 = shorter side to R,
    #                  then a centre crop of image_size (the paper's Resize 256 -> CenterCrop 224)
    mean: list[float] = field(default_factory=list)  # probe normalisation; empty: CIFAR-10 statistics (the zoo's)
    std: list[float] = field(default_factory=list)  # a model whose checkpoint meta names mean/std uses its own

    def validate(self):
        if self.kind not in ("synth", "real"):
            raise ConfigError(f"data.kind must be synth or real, got {self.kind!r}")
        if self.probe_pool not in ("auto", "synth", "cifar", "mnist"):
            raise ConfigError(f"data.probe_pool must be auto, synth, cifar or mnist, got {self.probe_pool!r}")
        if len(self.mean) not in (0, 3) or len(self.std) != len(self.mean) or any(v <= 0 for v in self.std):
            raise ConfigError(f"data.mean / data.std must both be empty or 3 values (std > 0), got {self.mean} / "
                              f"{self.std}")
        if self.resize and self.resize < self.image_size:
            raise ConfigError(f"data.resize={self.resize} is smaller than the crop data.image_size={self.image_size}")
        for k in ("n_train", "n_transfer", "n_test", "n_probe"):
            if getattr(self, k) < 3:
                raise ConfigError(f"data.{k} must be >= 3, got {getattr(self, k)}")


@dataclass
class ZooConfig:
    tasks: list[str] = field(default_factory=lambda: ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8"])
    arch: str = "tiny_cnn"  # tiny_cnn (spec 7.2) or a tenfold.nets name, e.g. resnet18 for the GPU zoo
    width: int = 16  # tiny_cnn channels of the first conv
    epochs: int = nonnegative(3)
    batch_size: int = positive(128)
    lr: float = positive(3e-3)  # Adam
    teachers: list[str] = field(default_factory=list)  # extra sources: ../shared/models/*.pt (JSON beside)
    ckpt_every: int = 0

    def validate(self):
        if not self.tasks:
            raise ConfigError("zoo.tasks is empty: name at least two tasks (see depara.data.TASKS)")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("zoo.epochs, zoo.batch_size must be >= 1 and zoo.lr > 0")


@dataclass
class TransferConfig:
    targets: list[str] = field(default_factory=list)  # default: every zoo task except random-label controls
    iters: int = nonnegative(50)  # L-BFGS iterations of the logistic-regression probe
    l2: float = 1e-3
    random_floor: bool = True  # also probe a random-init encoder (the floor)


@dataclass
class ScoreConfig:
    lam: float = 1.0  # lambda of S = S_V + lambda S_E for rankings and the heat map
    lambdas: list[float] = field(default_factory=lambda: [0.25, 1.0, 10.0])  # all reported
    spearman_ties: str = "average"  # average (scipy) | argsort (reference code: ties broken by order)
    random_draws: int = 200  # random-score control: metrics averaged over this many seeded draws
    k: int = 3  # P@K against the K best measured sources
    # score these instead of a zoo's models/: each "[NAME=]SOURCE[@WEIGHTS][#TAP]" with SOURCE a .pt file,
    # torchvision:<arch> or module:callable, TAP a module name (depara.sources)
    models: list[str] = field(default_factory=list)

    def validate(self):
        if self.spearman_ties not in ("average", "argsort"):
            raise ConfigError(f"score.spearman_ties must be average or argsort, got {self.spearman_ties!r}")


@dataclass
class SelectConfig:
    mode: str = "model"  # model (rank sources per target) | layer (rank layers of one source)
    target: str = ""  # model mode: one target task (empty: all targets)
    layer_source: str = "T2"  # layer mode: zoo task name or a model file
    layer_target: str = "T1"  # layer mode: the target task (ground truth: linear probe per layer)
    layer_reference: str = ""  # reference model (task name or file); empty: the target task's zoo model
    reference_output: str = "logits"  # logits (paper: final linear layer) | features (pooled representation)
    layers: list[str] = field(default_factory=list)  # module names; empty: every Conv2d (+ fc_layers) of the source
    fc_layers: int = 0  # with layers empty: also the first N Linear layers (the paper's VGG: 16 convs + 2 FCs)
    center_features: bool = False  # layer selection edges are not centred in the reference code
    reference_on_probe_data: bool = True  # reports which reference was used (spec pitfall: leakage)

    def validate(self):
        if self.mode not in ("model", "layer"):
            raise ConfigError(f"select.mode must be model or layer, got {self.mode!r}")
        if self.reference_output not in ("logits", "features"):
            raise ConfigError(f"select.reference_output must be logits or features, got {self.reference_output!r}")


@dataclass
class DeparaConfig(RunConfig):
    out: str = "runs/depara"
    zoo_dir: str = ""  # where depara-zoo wrote models/ and transfer.json (default: out)
    data: DataConfig = field(default_factory=DataConfig)
    zoo: ZooConfig = field(default_factory=ZooConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    graph: GraphOptions = field(default_factory=GraphOptions)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    select: SelectConfig = field(default_factory=SelectConfig)

    def validate(self):
        if self.graph.attribution not in ATTRIBUTIONS:
            raise ConfigError(f"graph.attribution must be one of {list(ATTRIBUTIONS)}, got {self.graph.attribution!r}")
        if self.graph.channel_reduce not in CHANNEL_REDUCE:
            raise ConfigError(f"graph.channel_reduce must be one of {list(CHANNEL_REDUCE)}, "
                              f"got {self.graph.channel_reduce!r}")
        self.graph.validate()
