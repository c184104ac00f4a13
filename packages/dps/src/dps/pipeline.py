"""Data preparation, stage artifacts (α table, GAS top-K table) and the link-prediction loops.

Artifacts live in `<out>/artifacts/<stage>-<hash>.pt`, where the hash covers every config field the stage
depends on, so a stale cache is never reused after a config change (the official code silently reuses
`gumbel_cache/*.pyc`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tenfold import checkpoint, runtime
from tenfold.config import to_dict
from tenfold.data import data_root
from tenfold.errors import ConfigError, DataError

from .alpha import fit_alpha
from .data import Stream, load_stream
from .gas import build_gas_model, gas_sampler, gumbel_finetune, precompute_topk, pretrain_gas
from .metrics import link_metrics
from .model import LinkModel
from .samplers import RecentSampler, TimeDecaySampler, UniformSampler
from .split import eval_negatives, new_node_split, quantile_split, transductive_filter, unique_timestamp_split
from .tcsr import TemporalCSR

__all__ = ["Prepared", "prepare", "train_step", "run_epoch", "score_batch", "evaluate", "build_samplers",
           "stage_alpha", "stage_gas_model", "stage_gas_table", "artifacts_cpu", "config_hash"]


@dataclasses.dataclass
class Prepared:
    stream: Stream
    csr: TemporalCSR  # evaluation neighbour index over the graph events (full stream after filtering), on device
    train_csr: TemporalCSR  # training events only (for α)
    train: tuple  # (src, dst, t) on device
    val: tuple  # (src, dst, neg, t)
    test: tuple
    train_dst: torch.Tensor  # unique training destinations (fresh training negatives)
    tds_t_min: float
    tds_scale: float
    counts: dict
    inductive: dict | None = None  # {"val": ..., "test": ...} for the new-node setting
    train_index: TemporalCSR | None = None  # training neighbour index (inductive: without held-out nodes)
    held_out: torch.Tensor | None = None  # inductive: held-out node ids

    def __post_init__(self):
        if self.train_index is None:
            self.train_index = self.csr

    @property
    def edge_feat(self):
        return getattr(self.stream.data, "msg", None)


def config_hash(*parts) -> str:
    blob = json.dumps([to_dict(p) if dataclasses.is_dataclass(p) else p for p in parts], sort_keys=True,
                      default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def load_configured_stream(cfg) -> Stream:
    dc = cfg.data
    stream = load_stream(dc.name, data_root(cfg.data_root), dc.format, dc.path, dc.use_rating,
                         dataclasses.asdict(dc.synthetic))
    if dc.max_events is not None and dc.max_events < stream.num_events:
        stream = stream.head(dc.max_events)
    return stream


def prepare(cfg, device: torch.device, stream: Stream | None = None) -> Prepared:
    dc = cfg.data
    stream = stream or load_configured_stream(cfg)
    d = stream.data
    src, dst, t = d.src.long(), d.dst.long(), d.t.double()
    if dc.split == "unique_timestamp":
        split = unique_timestamp_split(t, dc.train_frac, dc.val_frac)
    else:
        split = quantile_split(t, dc.val_frac, 1 - dc.train_frac - dc.val_frac)
    inductive = None
    if dc.setting == "transductive":
        split = transductive_filter(src, dst, split, stream.num_nodes)
    elif dc.setting == "inductive":
        split, ind = new_node_split(src, dst, split, stream.num_nodes, dc.new_node_frac, cfg.seed)
        inductive = ind
    counts = split.counts()
    for k in ("train", "val", "test"):
        if counts[k] == 0:
            raise DataError(f"{stream.name}: the {k} split is empty ({counts}); the graph has too few distinct "
                            f"timestamps — use more events (data.max_events) or another split")
    g = torch.nonzero(split.graph).squeeze(1)
    csr = TemporalCSR(src[g], dst[g], t[g], stream.num_nodes, eid=g + 1, device=device)
    train_index = None
    if split.train_graph is not None and not torch.equal(split.train_graph, split.graph):
        gt = torch.nonzero(split.train_graph).squeeze(1)
        train_index = TemporalCSR(src[gt], dst[gt], t[gt], stream.num_nodes, eid=gt + 1, device=device)
    tr = torch.nonzero(split.train).squeeze(1)
    train_csr = TemporalCSR(src[tr], dst[tr], t[tr], stream.num_nodes, eid=tr + 1)
    if stream.items is not None:
        cand = stream.items
    else:
        cand = torch.unique(torch.cat([src[split.train], dst[split.train]]))

    def labelled(mask):
        neg = eval_negatives(src, dst, mask, cand, dc.negatives, dc.negatives_seed, split.train)
        return tuple(x.to(device) for x in (src[mask], dst[mask], neg, t[mask]))

    if dc.setting == "inductive":
        ind = {"val": labelled(inductive.val), "test": labelled(inductive.test)}
    else:
        ind = None
    if cfg.tds.time_norm == "train":
        t_min, scale = float(t[split.train].min()), float(t[split.train].max() - t[split.train].min())
    else:  # official quirk: α fitted on train-normalised time, applied on full-normalised time
        t_min, scale = float(t[g].min()), float(t[g].max() - t[g].min())
    train = tuple(x.to(device) for x in (src[split.train], dst[split.train], t[split.train]))
    return Prepared(stream, csr, train_csr, train, labelled(split.val), labelled(split.test),
                    torch.unique(dst[split.train]).to(device), t_min, scale if scale > 0 else 1.0, counts, ind,
                    train_index, split.held_out)


def bce_loss(pos_l, neg_l):
    return (F.binary_cross_entropy_with_logits(pos_l, torch.ones_like(pos_l))
            + F.binary_cross_entropy_with_logits(neg_l, torch.zeros_like(neg_l)))


def train_step(model, samplers, opt, batch, train_dst, device, precision: str = "fp32") -> torch.Tensor:
    """One optimiser step on a chronological batch (src, dst, t) with fresh uniform negatives from the training
    destinations; returns the loss on the device (no host sync)."""
    model.train()
    src, dst, t = batch
    neg = train_dst[torch.randint(train_dst.numel(), (src.numel(),), device=train_dst.device)]
    with runtime.autocast(device, precision):
        pos_l, neg_l = model(src, dst, neg, t, samplers)
    loss = bce_loss(pos_l.float(), neg_l.float())
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.detach()


def run_epoch(model, samplers, opt, events, batch_size, train_dst, device, precision: str = "fp32") -> float:
    """One chronological, unshuffled epoch (pitfall 9); the mean loss is read once at the end."""
    src, dst, t = events
    total, n = torch.zeros((), device=src.device), 0
    for s in range(0, src.numel(), batch_size):
        b = slice(s, s + batch_size)
        total, n = total + train_step(model, samplers, opt, (src[b], dst[b], t[b]), train_dst, device, precision), n + 1
    return float(total) / max(n, 1)


@torch.no_grad()
def score_batch(model, samplers, batch, device, precision: str = "fp32", generator=None):
    """Probabilities (positive, negative) of a labelled batch (src, dst, neg, t), on the device."""
    src, dst, neg, t = batch
    with runtime.autocast(device, precision):
        p, q = model(src, dst, neg, t, samplers, generator=generator)
    return torch.sigmoid(p.float()), torch.sigmoid(q.float())


@torch.no_grad()
def evaluate(model, samplers, events, batch_size=200, seed=0, ap_on_labels=False, device=None,
             precision: str = "fp32") -> dict:
    """Scores the fixed labelled set (each positive with its fixed negative). Sampler randomness comes from
    a dedicated generator, so evaluation never perturbs the training RNG stream (exact resume)."""
    model.eval()
    src, dst, neg, t = events
    gen = torch.Generator(device=src.device).manual_seed(seed)
    pos_s, neg_s = [], []
    start = time.perf_counter()
    for s in range(0, src.numel(), batch_size):
        b = slice(s, s + batch_size)
        p, q = score_batch(model, samplers, (src[b], dst[b], neg[b], t[b]), device or src.device, precision, gen)
        pos_s.append(p)
        neg_s.append(q)
    prob = torch.cat(pos_s + neg_s).cpu().numpy()  # one device-to-host copy per evaluation
    dt = time.perf_counter() - start
    y = np.r_[np.ones(src.numel()), np.zeros(src.numel())]
    out = link_metrics(y, prob, ap_on_labels)
    out["events_per_s"] = src.numel() / dt if dt > 0 else 0.0
    return out


def _artifact(out: Path, stage: str, h: str) -> Path:
    return Path(out) / "artifacts" / f"{stage}-{h}.pt"


def stage_alpha(cfg, prep: Prepared, log=print) -> torch.Tensor:
    tc = cfg.tds
    h = config_hash(cfg.data, tc, cfg.seed, "alpha")
    path = _artifact(cfg.out, "alpha", h)
    if path.is_file():
        return checkpoint.load(path, kind="dps-alpha")["alpha"]
    t0 = time.perf_counter()
    # fit on the training graph, normalised with the training time range (the official fit's scale)
    tr_t = prep.train[2].cpu()
    scale = float(tr_t.max() - tr_t.min()) or 1.0
    alpha, stats = fit_alpha(prep.train_csr, float(tr_t.min()), scale, tc.max_terms, (tc.alpha_min, tc.alpha_max),
                             tc.alpha_fallback, tc.xatol, seed=cfg.seed)
    stats["seconds"] = time.perf_counter() - t0
    log(f"TDS: fitted α for {stats['nodes_fitted']} nodes ({stats['nodes_fallback']} use the fallback "
        f"{tc.alpha_fallback}) in {stats['seconds']:.1f}s")
    checkpoint.save(path, {"alpha": alpha, "stats": stats}, kind="dps-alpha")
    return alpha


def _gas_model_hash(cfg) -> str:
    gc = dataclasses.asdict(cfg.gas)
    for k in ("mode", "max_history", "precompute_budget", "allow_over_budget"):  # selection only, not training
        gc.pop(k)
    return config_hash(cfg.data, gc, cfg.model.node_dim, cfg.model.freeze_node_feat, cfg.seed, "gas-model")


def stage_gas_model(cfg, prep: Prepared, device, log=print, state: dict | None = None) -> LinkModel:
    """GAS phases 1-2 on the training index (pretrain, optional Gumbel fine-tune); the frozen model G."""
    gc = cfg.gas
    model = build_gas_model(prep.stream.num_nodes, cfg.model.node_dim, prep.stream.num_events, prep.edge_feat,
                            gc.dropout, cfg.model.freeze_node_feat).to(device)
    path = _artifact(cfg.out, "gas-model", _gas_model_hash(cfg))
    if state is None and path.is_file():
        state = checkpoint.load(path, kind="dps-gas-model")["model"]
    if state is not None:
        checkpoint.load_module_state(model, state, what="GAS model")
        return model.eval()
    t0 = time.perf_counter()
    index = prep.train_index
    ev = lambda m, s, e: evaluate(m, s, e, gc.batch_size, cfg.seed, device=device, precision=cfg.precision)
    ep = lambda m, s, o, e, bs: run_epoch(m, s, o, e, bs, prep.train_dst, device, cfg.precision)
    info = pretrain_gas(model, index, prep.train, prep.val, gc, ep, ev, log)
    if gc.finetune:
        info.update(gumbel_finetune(model, index, prep.train, prep.train_dst, gc, log))
        val = ev(model, [UniformSampler(index, gc.n_degree)], prep.val)
        info["val_auc_after_finetune"] = val["auc"]
    info["train_seconds"] = time.perf_counter() - t0
    log(f"GAS: pretrained {info['epochs']} epochs (best val AUC {info['best_val_auc']:.4f}) in "
        f"{info['train_seconds']:.1f}s")
    checkpoint.save(path, {"model": model.state_dict(), "info": info}, kind="dps-gas-model")
    return model.eval()


def stage_gas_table(cfg, prep: Prepared, model: LinkModel, csr: TemporalCSR, k: int, log=print) -> torch.Tensor:
    """Official mode: the (u, r) top-K table at t* = next interaction, for one neighbour index."""
    gc = cfg.gas
    which = "train" if (csr is prep.train_index and csr is not prep.csr) else "eval"
    h = config_hash(_gas_model_hash(cfg), gc.max_history, k, which, "gas-table")
    path = _artifact(cfg.out, "gas", h)
    if path.is_file():
        return checkpoint.load(path, kind="dps-gas")["table"]
    stats: dict = {}
    table = precompute_topk(model, csr, k, gc.max_history, budget=gc.precompute_budget,
                            allow_over_budget=gc.allow_over_budget, log=log, stats=stats)
    log(f"GAS (official t*): top-{k} table for {csr.num_slots} (node, prefix) keys in {stats.get('seconds', 0):.1f}s")
    checkpoint.save(path, {"table": table.cpu(), "stats": stats}, kind="dps-gas")
    return table


def build_samplers(cfg, prep: Prepared, device, log=print, artifacts: dict | None = None, index: str = "eval"):
    """[GAS, TDS] for DPS (official order, pitfall 14); one sampler for TGAT and the ablations, over the
    evaluation index (`index="eval"`) or the training index ("train"; differs only in the inductive setting).
    Returns (samplers, artifacts) with artifacts ⊂ {"alpha", "gas_model", "gas_table"}; given ones are reused."""
    m, gc = cfg.model, cfg.gas
    arts = dict(artifacts or {})
    k_half = m.n_degree // 2
    csr = prep.train_index if index == "train" else prep.csr
    if gc.max_history is not None and gc.max_history < (m.n_degree if m.name == "gas" else k_half):
        raise ConfigError(f"gas.max_history={gc.max_history} must be ≥ the GAS neighbour count")

    def tds(k):
        if arts.get("alpha") is None:
            arts["alpha"] = stage_alpha(cfg, prep, log)
        return TimeDecaySampler(csr, k, arts["alpha"], prep.tds_t_min, prep.tds_scale, cfg.tds.cache_mode)

    def gas(k):
        model = stage_gas_model(cfg, prep, device, log, arts.get("gas_model"))
        arts["gas_model"] = {n: v.detach().cpu() for n, v in model.state_dict().items()}
        if gc.mode == "lazy":
            return gas_sampler(model, csr, k, "lazy", gc.max_history)
        key = "gas_table" if index == "eval" else "gas_table_train"
        if arts.get(key) is None:
            arts[key] = stage_gas_table(cfg, prep, model, csr, k, log)
        return gas_sampler(model, csr, k, "official", table=arts[key])

    if m.name == "tgat":
        samplers = [(UniformSampler if m.tgat_sampler == "uniform" else RecentSampler)(csr, m.n_degree)]
    elif m.name == "tds":
        samplers = [tds(m.n_degree)]
    elif m.name == "gas":
        samplers = [gas(m.n_degree)]
    else:
        samplers = [gas(k_half), tds(m.n_degree - k_half)]
    return samplers, arts


def artifacts_cpu(arts: dict) -> dict:
    return {k: ({n: t.cpu() for n, t in v.items()} if isinstance(v, dict) else v.cpu()) for k, v in arts.items()}


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))
