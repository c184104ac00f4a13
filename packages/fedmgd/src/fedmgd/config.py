"""Typed configuration; every default is the spec's (§2.7, §3). Presets live in configs/*.yaml."""
from __future__ import annotations

from dataclasses import dataclass, field

from tenfold.config import RunConfig, nonnegative, positive, probability
from tenfold.errors import ConfigError

__all__ = ["DataConfig", "PartitionConfig", "ModelConfig", "GanConfig", "FLConfig", "FaultConfig", "FedMGDConfig",
           "METHODS", "DATASETS", "FlowerConfig", "ENGINES"]

METHODS = ("fedmgd", "fedavg", "fedprox", "scaffold", "fedlc", "local")
DATASETS = ("mnist", "cifar10", "emnist", "fmnist", "svhn", "synthetic", "blobs", "npz")


@dataclass
class DataConfig:
    dataset: str = "mnist"  # mnist | cifar10 | emnist | fmnist | svhn | npz (data.path) | offline toys:
    # blobs (position-coded blobs, the demo) | synthetic (tenfold's synthetic_shapes)
    path: str | None = None  # for dataset=npz: file with images (uint8 N,H,W[,C]), labels, optional test_*
    img_size: int = 32  # everything is resized to img_size x img_size and scaled to [-1, 1] (no augmentation)
    resize: str = "bicubic"  # bicubic (reference) | bilinear | nearest
    test_frac: float = 0.1  # first ceil(10%) of the shuffled test split is the global test set
    test_size: int = 0  # >0: use exactly this many test images as the global test set
    rest_of_test_in_pool: bool = True  # the other 90% of the test split joins the pool (reference)
    pool_size: int = 0  # >0: random subsample of the pool (CPU-scale runs)
    svhn_extra: bool = True  # SVHN: add the 'extra' split to the pool (reference)
    emnist_legacy_split: bool = False  # reference bug: EMNIST 'test' loaded from the train split (leaks)
    synthetic_n: int = 3000  # dataset=synthetic|blobs: pool images generated offline (+ n/5 test)
    num_classes: int = 0  # filled from the data set; set only for dataset=npz with absent classes


@dataclass
class PartitionConfig:
    kind: str = "dirichlet"  # dirichlet (FedGen-style, reference) | classes (k classes per client) | iid
    num_clients: int = 5  # K
    alpha: float = 0.1  # Dirichlet concentration; smaller = more skew
    classes_per_client: int = 2  # kind=classes
    sampling_ratio: float = 1.0  # r: per-class subsampling and per-client cap r*|pool|/K
    min_size: int = 10  # redraw until every client holds at least this many samples
    train_frac: float = 0.8  # local split: first ceil(80%) train, rest local test
    seed: int = 42  # partition seed (reference: 42); independent of the training seed
    max_redraws: int = 1000

    def validate(self):
        if self.num_clients < 1:
            raise ConfigError(f"partition.num_clients must be >= 1, got {self.num_clients}")
        if self.kind not in ("dirichlet", "classes", "iid"):
            raise ConfigError(f"partition.kind must be dirichlet, classes or iid, got '{self.kind}'")
        if self.kind == "dirichlet" and not self.alpha > 0:
            raise ConfigError(f"partition.alpha must be > 0 (Dirichlet concentration), got {self.alpha}")
        if not 0 < self.sampling_ratio <= 1:
            raise ConfigError(f"partition.sampling_ratio must be in (0, 1], got {self.sampling_ratio}")
        if not 0 < self.train_frac <= 1:
            raise ConfigError(f"partition.train_frac must be in (0, 1], got {self.train_frac}")


@dataclass
class ModelConfig:
    arch: str = "resnet"  # resnet (the paper's G/D) | dcgan (small CPU-scale G/D; classifier unchanged)
    n_z: int = 128
    ngf: int = 64
    ndf: int = 64
    g_nf_max: int = 256
    d_nf_max: int = 256
    c_width1: int | None = None  # None = img_size (reference quirk)
    c_width2: int = 64
    c_hidden: int = 512
    c_dropout: float = 0.2

    def validate(self):
        if self.arch not in ("resnet", "dcgan"):
            raise ConfigError(f"model.arch must be resnet or dcgan, got '{self.arch}'")


@dataclass
class GanConfig:
    """Stage 1 (generative adversarial stage, §2.4)."""
    epochs: int = nonnegative(400)  # one epoch = floor(max_k n_k / batch_size) iterations
    iters: int = nonnegative(0)  # >0: run exactly this many iterations instead of `epochs`
    batch_size: int = positive(64)
    lr_g: float = positive(2e-4)
    lr_d: float = positive(2e-4)
    lr_c: float = positive(2e-4)
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_d: float = 0.1  # weight of the adversarial D loss
    lambda_reg: float = 10.0  # weight of R1 on the sigmoid output of real samples
    niter: int = 200  # LR policy for G and D_k: constant for niter epochs, then linear decay, floored at 0.1x
    niter_decay: int = 200
    scores_in_eval_mode: bool = False  # reference: C_k in train mode (dropout on) for scores and L_G
    g_graph: str = "selected"  # selected: score every client without a graph, then rebuild the graph only
    # through the clients that were routed samples (activation memory independent of K; same gradient) |
    # all: keep every client's D/C graph until routing (the earlier implementation; memory grows with K)
    ckpt_every: int = 200  # iterations between checkpoints
    log_every: int = 20

    def validate(self):
        if self.epochs < 0 or self.iters < 0:
            raise ConfigError("gan.epochs and gan.iters must be >= 0")
        if self.g_graph not in ("selected", "all"):
            raise ConfigError(f"gan.g_graph must be selected or all, got '{self.g_graph}'")


@dataclass
class FLConfig:
    """Stage 2 (federated enhancement, §2.5) and the baselines."""
    method: str = "fedmgd"  # fedmgd | fedavg | fedprox | scaffold | fedlc | local
    preset: str = "nominal"  # label only: nominal (100 x 10, equal communication) | code-faithful (1000 x 1)
    rounds: int = positive(100)
    local_epochs: int = nonnegative(10)  # one local epoch = floor(max_k n_k / batch_size) steps for every client
    local_steps: int = nonnegative(0)  # >0: exactly this many local steps per round instead of local_epochs
    batch_size: int = positive(32)
    lr: float = positive(2e-4)
    beta1: float = 0.5
    beta2: float = 0.999
    optim_state: str = "persist"  # clients' Adam states: persist (reference: they survive rounds) | reset
    server_optim_state: str = "persist"  # the server's Adam (fedmgd server steps): persist (reference) | reset
    # (a fresh Adam at every round's server update)
    init: str = "auto"  # auto (fedmgd: stage1, baselines: scratch) | stage1 (clients start from the Stage-1
    # C_k with their Adam states: the reference's --pretrain-local-in-gan-stage) | scratch (clients start from S)
    stage1_from: str | None = None  # reuse Stage 1 (G and C_k) from <run>/stage1.pt instead of training it
    server_steps: int = nonnegative(100)  # synthetic CE steps on S after each aggregation (fedmgd)
    gen_batch: int = 2048
    server_lr: float = positive(2e-4)
    filter: bool = True  # keep only samples the current S labels as their conditioning label
    filter_eval_mode: bool = False  # reference: S stays in train mode (dropout on) while filtering
    warmup_rounds: int = nonnegative(0)  # plain FedAvg rounds before server steps start (pitfall 15)
    fedprox_mu: float = 0.01
    fedlc_tau: float = 0.1
    fraction: float = 1.0  # client sampling fraction per round (reference: 1.0)
    eval_batch: int = 128
    eval_every: int = 1  # rounds between federated evaluations (global test, local tests, client models)
    ckpt_every: int = 5  # rounds between checkpoints (and always at the end)
    log_every: int = 1

    def validate(self):
        if self.method not in METHODS:
            raise ConfigError(f"fl.method must be one of {', '.join(METHODS)}, got '{self.method}'")
        if self.optim_state not in ("persist", "reset"):
            raise ConfigError(f"fl.optim_state must be persist or reset, got '{self.optim_state}'")
        if self.server_optim_state not in ("persist", "reset"):
            raise ConfigError(f"fl.server_optim_state must be persist or reset, got '{self.server_optim_state}'")
        if self.init not in ("auto", "stage1", "scratch"):
            raise ConfigError(f"fl.init must be auto, stage1 or scratch, got '{self.init}'")
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"fl.fraction must be in (0, 1], got {self.fraction}")
        if self.rounds < 0 or self.local_epochs < 0 or self.local_steps < 0:
            raise ConfigError("fl.rounds, fl.local_epochs and fl.local_steps must be >= 0")


@dataclass
class FaultConfig:
    """Deadlines are real (the server stops waiting, see faults.py); the rest injects faults for testing."""
    client_timeout_s: float = 0.0  # >0: Stage-2 round deadline per client; a client that has not reported by
    # then is left out of that round's aggregation
    stage1_timeout_s: float = 0.0  # >0: the same per Stage-1 iteration (a late client is left out of routing)
    fail_prob: float = probability(0.0)  # inject client failures with this probability per client and round (testing)
    fail_clients: list[str] = field(default_factory=list)  # injected Stage-2 failures "round:client", 1-based
    delay_clients: list[str] = field(default_factory=list)  # injected Stage-2 delays "round:client" (sleep delay_s)
    stage1_fail_clients: list[str] = field(default_factory=list)  # injected Stage-1 failures "iteration:client"
    stage1_delay_clients: list[str] = field(default_factory=list)  # injected Stage-1 delays "iteration:client"
    delay_s: float = 2.0  # how long an injected delay sleeps (before the client touches its model)

    def validate(self):
        from .faults import parse_events

        for name in ("fail_clients", "delay_clients", "stage1_fail_clients", "stage1_delay_clients"):
            parse_events(getattr(self, name), f"faults.{name}")
        if self.client_timeout_s < 0 or self.stage1_timeout_s < 0 or self.delay_s < 0:
            raise ConfigError("faults.client_timeout_s, faults.stage1_timeout_s and faults.delay_s must be >= 0")


@dataclass
class FlowerConfig:
    """engine=flower (fedmgd.flower, the `flower` extra): a Flower ServerApp holds G and S, one ClientApp per
    SuperNode holds client `partition-id`'s D_k, C_k and data. See the README's "Federated deployment"."""
    gan_iters_per_round: int = positive(10)  # Stage-1 GAN iterations carried by one Flower round. One iteration is
    # one message exchange (G moves between iterations); the round fixes the participating nodes, its deadline and
    # the per-round log line
    min_clients: int = nonnegative(0)  # fewest replies a Stage-1 iteration / Stage-2 round goes on with (0: 1);
    # fewer stops the run with one line (Flower's min_train_nodes)
    wait_nodes_s: float = positive(120.0)  # how long the ServerApp waits for all K SuperNodes to connect
    reply_timeout_s: float = positive(120.0)  # how long a message round waits for replies; a node that has not
    # replied by then (a SuperNode killed mid-run) is left out of that round and of the rest of the run
    superlink: str = "127.0.0.1"  # engine=flower from fedmgd-train: the loopback deployment it starts
    port_base: int = 19090  # its SuperLink listens on port_base (Fleet) and port_base + 3 (Control); SuperNode k
    # on port_base + 10 + k (ClientAppIo)
    max_run_s: float = positive(3600.0)  # engine=flower from fedmgd-train: stop everything after this long

    def validate(self):
        if self.port_base < 1024 or self.port_base > 65000:
            raise ConfigError(f"flower.port_base must be in 1024..65000, got {self.port_base}")


ENGINES = ("local", "torchrun", "flower")


@dataclass
class FedMGDConfig(RunConfig):
    data: DataConfig = field(default_factory=DataConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    fl: FLConfig = field(default_factory=FLConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    engine: str = "local"  # local (clients simulated in this process; spread over the ranks when launched with
    # torchrun) | torchrun (the same, but refuse to start outside torchrun) | flower (a Flower ServerApp and one
    # ClientApp per client: `fedmgd-train engine=flower` starts a loopback SuperLink + K SuperNodes; needs the
    # `flower` extra)
    flower: FlowerConfig = field(default_factory=FlowerConfig)
    legacy_index_folding: bool = False  # reference loader bug (§5 quirk 0); default reads i mod n_k
    tf32: bool = True  # CUDA matmul/conv in TF32
    # `precision` (RunConfig: bf16 | fp16 | fp32) is the autocast of Stage 2 on CUDA (client steps and server steps;
    # fp16 with loss scaling). Stage 1 always runs fp32/TF32: R1's double backward and BCE on probabilities.

    def validate(self):
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got '{self.engine}'")
        if self.data.dataset not in DATASETS:
            raise ConfigError(f"data.dataset must be one of {', '.join(DATASETS)}, got '{self.data.dataset}'")
