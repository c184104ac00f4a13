"""Typed configuration; defaults = the official code's (spec §2.10)."""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Literal

from tenfold.config import RunConfig, nonnegative, positive
from tenfold.errors import ConfigError

__all__ = ["SyntheticConfig", "DataConfig", "ModelConfig", "TDSConfig", "GASConfig", "TrainConfig", "EvalConfig",
           "NodeTaskConfig", "DPSConfig"]


@dataclasses.dataclass
class SyntheticConfig:
    """`data.format: synthetic`: the preference_stream generator (spec §7)."""

    num_users: int = 100
    num_items: int = 100
    num_events: int = 4000
    p_repeat: float = 0.7
    recency_frac: float = 0.5
    communities: int = 5
    seed: int = 0


@dataclasses.dataclass
class DataConfig:
    name: str = "ia_hypertext"  # folder under the data root holding events.csv
    format: Literal["events", "edges", "jodie", "synthetic"] = "events"
    path: str | None = None  # explicit file / base path (overrides name)
    use_rating: bool = False  # bitcoin graphs: use the rating column as a 1-d edge feature
    max_events: int | None = None  # first N events only (chronological CPU slices)
    split: Literal["unique_timestamp", "quantile"] = "unique_timestamp"  # DPS rule | PyG/DyGLib rule
    train_frac: float = 0.70
    val_frac: float = 0.15
    setting: Literal["transductive", "inductive", "all"] = "transductive"  # inductive: new-node extra (non-paper);
    # all: no unseen-node filter (the node task)
    new_node_frac: float = 0.1
    negatives: Literal["random", "historical", "inductive"] = "random"  # evaluation negatives
    negatives_seed: int = 42
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def validate(self):
        if not (0 < self.train_frac < 1 and 0 < self.val_frac < 1 and self.train_frac + self.val_frac < 1):
            raise ConfigError("data.train_frac and data.val_frac must be in (0, 1) with a sum below 1")
        if self.max_events is not None and self.max_events < 10:
            raise ConfigError("data.max_events must be at least 10")


@dataclasses.dataclass
class ModelConfig:
    name: Literal["dps", "tgat", "tds", "gas"] = "dps"  # dps = GAS+TDS fusion; tds/gas = single-sampler ablations
    tgat_sampler: Literal["uniform", "recent"] = "uniform"  # the TGAT baseline's sampler
    node_dim: int = 128  # D (time dim forced = D)
    n_layer: int = 2
    n_head: int = 2
    n_degree: int = 20  # total neighbours; DPS gives n_degree // 2 to each sampler
    dropout: float = 0.1
    fusion: Literal["attention", "concat"] = "attention"  # concat = the "w/o fusion" ablation
    freeze_node_feat: bool = False  # node task: zero, frozen node table

    def validate(self):
        if self.node_dim < 2 or self.n_layer < 1 or self.n_degree < 1:
            raise ConfigError("model.node_dim ≥ 2, model.n_layer ≥ 1 and model.n_degree ≥ 1 required")
        if self.name == "dps" and self.n_degree < 2:
            raise ConfigError("model.n_degree must be ≥ 2 for dps (it is split between GAS and TDS)")


@dataclasses.dataclass
class TDSConfig:
    cache_mode: Literal["frozen", "resample"] = "frozen"  # frozen = official: one draw per (node, prefix)
    time_norm: Literal["train", "full_official"] = "train"  # one time scale for fit and sampling (fix)
    max_terms: int = 100
    alpha_min: float = 0.0
    alpha_max: float = 100.0
    alpha_fallback: float = 50.0  # nodes without repeats (official: solver-dependent, ≈ 50)
    xatol: float = 1e-4


@dataclasses.dataclass
class GASConfig:
    n_degree: int = 20  # uniform neighbours (with replacement) during pretraining
    lr: float = positive(1e-4)
    batch_size: int = positive(200)
    epochs: int = nonnegative(50)
    patience: int = 3
    tol: float = 1e-3
    finetune: bool = True  # Gumbel fine-tune (official --hard soft); false = --hard atte
    finetune_lr: float = positive(5e-7)  # official 1e-4/200: almost a no-op with Adam (pitfall 12)
    temp: float = 1.0
    anneal_rate: float = 0.003
    temp_min: float = 0.5
    first_batch_temp: float | None = 0.1  # official quirk: batch 0 runs at the module's 0.1; null = use temp
    finetune_max_history: int | None = None  # cap the full history of the fine-tune (null = exact)
    finetune_chunk: int = 1 << 18  # fine-tune queries × history entries per forward/backward chunk (memory bound)
    mode: Literal["lazy", "official"] = "lazy"  # lazy: top-K at t* = the query time (leak-free, default);
    # official: the reference's (u, r) table at t* = u's next interaction (sees the future, issue #19)
    max_history: int | None = None  # cap of the selection's history: last N events (null = exact)
    precompute_budget: float = 5e10  # official mode: refuse a top-K precompute estimated above this (element-ops)
    allow_over_budget: bool = False
    dropout: float = 0.1


@dataclasses.dataclass
class TrainConfig:
    lr: float = positive(1e-4)
    batch_size: int = positive(200)
    epochs: int = nonnegative(50)
    patience: int = 3
    tol: float = 1e-3
    drop_last_event: bool = False  # true = official off-by-one that skips the last training event
    seeds: list[int] = field(default_factory=list)  # several seeds -> <out>/seed<k>/ + mean ± std; [] = [seed]
    ckpt_every: int = 0  # also checkpoint every N steps (0: at every epoch end)
    log_every: int = 10

    def validate(self):
        if self.batch_size < 1 or self.epochs < 1 or self.lr <= 0:
            raise ConfigError("train.batch_size ≥ 1, train.epochs ≥ 1 and train.lr > 0 required")


@dataclasses.dataclass
class EvalConfig:
    batch_size: int = positive(200)
    ap_on_labels: bool = False  # true = official bug (AP on thresholded predictions); for comparison only


@dataclasses.dataclass
class NodeTaskConfig:
    """Node classification head on the frozen encoder (dps-eval --task node; spec §2.8)."""

    lr: float = positive(1e-4)
    batch_size: int = positive(200)
    epochs: int = nonnegative(50)
    patience: int = 10
    tol: float = 1e-3
    dropout: float = 0.1
    binary: bool = False  # concatenate the destination's embedding
    balance: bool = False  # add size // neg_ratio positive-label events per batch (official intent)
    neg_ratio: int = 10


@dataclasses.dataclass
class DPSConfig(RunConfig):
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    tds: TDSConfig = field(default_factory=TDSConfig)
    gas: GASConfig = field(default_factory=GASConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    node: NodeTaskConfig = field(default_factory=NodeTaskConfig)

    def validate(self):
        if (self.model.node_dim * 2 + self._edge_dim_hint()) % self.model.n_head:
            raise ConfigError(f"model.n_head={self.model.n_head} must divide d_m = 2·node_dim + edge_dim")

    def _edge_dim_hint(self) -> int:  # the edge width of the shipped formats (custom .edges may differ)
        return 1 if self.data.use_rating else (172 if self.data.format == "jodie" else self.model.node_dim)
