"""DPS / TGAT link-prediction training (spec §2.9) on the tenfold Trainer: chronological batches of 200,
fresh training negatives, validation AUC after every epoch with early stopping (patience 3, rel. tol 1e-3),
restore the best epoch, test metrics. Exact resume covers the model, Adam, RNG, data position, the early-
stopping state, the best weights and the TDS frozen cache.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path

import torch
from tenfold import checkpoint, runtime
from tenfold import config as config_mod
from tenfold.errors import ConfigError
from tenfold.loop import Trainer
from tenfold.meters import MetricLogger

from .metrics import EarlyStopMonitor, mean_std
from .model import LinkModel, TemporalEncoder
from .pipeline import artifacts_cpu, build_samplers, evaluate, prepare, steps_per_epoch, train_step

__all__ = ["build_model", "train_link", "train_seeds", "MODEL_KIND"]

MODEL_KIND = "dps-model"


def build_model(cfg, prep, n_samplers: int) -> LinkModel:
    m = cfg.model
    try:
        enc = TemporalEncoder(prep.stream.num_nodes, m.node_dim, m.n_layer, m.n_head, m.dropout, n_samplers,
                              m.fusion, prep.edge_feat, prep.stream.num_events, m.freeze_node_feat)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return LinkModel(enc)


def _batches(train, batch_size, drop_last_event):
    src, dst, t = train
    n = src.numel() - (1 if drop_last_event else 0)  # official off-by-one: the last event is never trained

    def gen(epoch, start):
        for s in range(start * batch_size, n, batch_size):
            e = min(n, s + batch_size)
            yield src[s:e], dst[s:e], t[s:e]

    return gen, steps_per_epoch(n, batch_size)


def train_link(cfg, resume=None, stop_at: int | None = None, log=print, stream=None) -> dict:
    """One seed, one run directory (`cfg.out`). Returns the summary dict (also written to summary.json)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config_mod.save(cfg, out / "config.yaml")
    device = runtime.select_device(cfg.device)
    runtime.set_deterministic(cfg.deterministic)
    runtime.seed_everything(cfg.seed)
    t0 = time.perf_counter()
    prep = prepare(cfg, device, stream)
    samplers, arts = build_samplers(cfg, prep, device, log)  # evaluation index
    if prep.train_index is prep.csr:  # one index: the same samplers (and TDS frozen cache) for both, as official
        train_samplers = samplers
    else:  # inductive: training neighbourhoods come from the index without the held-out nodes
        train_samplers, arts = build_samplers(cfg, prep, device, log, arts, index="train")
    stage_s = time.perf_counter() - t0
    model = build_model(cfg, prep, len(samplers)).to(device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
    tc = cfg.train
    batches, spe = _batches(prep.train, tc.batch_size, tc.drop_last_event)
    mon = EarlyStopMonitor(tc.patience, tc.tol)
    st = {"best": copy.deepcopy(model.state_dict()), "validated": 0, "stopped": False, "val": []}

    def extra_state():
        return {"samplers": [s.state_dict() for s in samplers],
                "train_samplers": [s.state_dict() for s in train_samplers] if train_samplers is not samplers else [],
                "monitor": mon.state_dict(), **st}

    def load_extra(ex):
        for s, sd in zip(samplers, ex["samplers"]):
            s.load_state_dict(sd)
        for s, sd in zip(train_samplers if train_samplers is not samplers else [], ex.get("train_samplers", [])):
            s.load_state_dict(sd)
        mon.load_state_dict(ex["monitor"])
        st.update({k: ex[k] for k in ("best", "validated", "stopped", "val")})

    trainer = Trainer(out, kind="dps-link", config=cfg, stateful={"model": model, "opt": opt},
                      total_steps=tc.epochs * spe, batches=batches, ckpt_every=tc.ckpt_every,
                      log_every=tc.log_every, desc=f"{cfg.model.name} train", extra_state=extra_state,
                      load_extra_state=load_extra)
    trainer.maybe_resume(resume)

    def step_fn(batch, state):
        return {"loss": train_step(model, train_samplers, opt, batch, prep.train_dst, device, cfg.precision)}

    def ev(events, seed):
        return evaluate(model, samplers, events, cfg.eval.batch_size, seed, cfg.eval.ap_on_labels, device,
                        cfg.precision)

    train_time, events_done = 0.0, 0
    while True:
        done_epochs = trainer.state.step // spe
        if st["validated"] < done_epochs:  # validate the epoch that just finished (once, also after resume)
            m = ev(prep.val, cfg.seed)
            stop = mon.step(m["auc"])
            if mon.best_epoch == st["validated"]:
                st["best"] = copy.deepcopy(model.state_dict())
            st["validated"] += 1
            st["val"].append(m["auc"])
            st["stopped"] = stop
            trainer.logger.log(trainer.state.step, epoch=done_epochs - 1, val_auc=m["auc"], val_ap=m["ap"])
            log(f"epoch {done_epochs - 1}: val auc {m['auc']:.4f} ap {m['ap']:.4f}")
            trainer.save()
        if st["stopped"] or trainer.state.step >= trainer.total_steps:
            break
        target = (done_epochs + 1) * spe
        if stop_at is not None:
            target = min(target, stop_at)
            if trainer.state.step >= stop_at:
                return {"stopped_at": trainer.state.step}
        s0, t1 = trainer.state.step, time.perf_counter()
        trainer.run(step_fn, stop_at=target)
        train_time += time.perf_counter() - t1
        events_done += (trainer.state.step - s0) * tc.batch_size
        if stop_at is not None and trainer.state.step >= stop_at and trainer.state.step % spe:
            return {"stopped_at": trainer.state.step}

    model.load_state_dict(st["best"])
    sampler_state = [s.state_dict() for s in samplers]
    checkpoint.save(out / "model.pt", {"model": model.state_dict(), "samplers": sampler_state,
                                       "artifacts": artifacts_cpu(arts),
                                       "config": config_mod.to_dict(cfg)}, kind=MODEL_KIND)
    val = ev(prep.val, cfg.seed)
    test = ev(prep.test, cfg.seed + 1)
    summary = {"model": cfg.model.name, "data": prep.stream.name, "seed": cfg.seed, "counts": prep.counts,
               "epochs": mon.epoch_count, "best_epoch": mon.best_epoch, "val_auc_curve": st["val"],
               **{f"val_{k}": v for k, v in val.items()}, **{f"test_{k}": v for k, v in test.items()},
               "train_events_per_s": events_done / train_time if train_time > 0 else None,
               "stage_seconds": stage_s, "device": str(device)}
    if prep.inductive is not None:
        ind = ev(prep.inductive["test"], cfg.seed + 2)
        summary.update({f"inductive_test_{k}": v for k, v in ind.items()})
    if getattr(model.encoder, "last_beta", None) is not None:
        summary["mean_fusion_beta"] = model.encoder.last_beta.mean(0).tolist()
    MetricLogger(out).summary(**summary)
    log(f"{cfg.model.name} on {prep.stream.name} (seed {cfg.seed}): test auc {test['auc']:.4f} "
        f"ap {test['ap']:.4f} acc {test['acc']:.4f} f1 {test['f1']:.4f}")
    return summary


def train_seeds(cfg, resume=None, log=print) -> dict:
    """`train.seeds` empty: one run in cfg.out. Otherwise one run per seed in <out>/seed<k>/ (finished seeds
    are skipped on resume) and mean ± std in <out>/summary.json."""
    seeds = list(cfg.train.seeds)
    if not seeds:
        return train_link(cfg, resume, log=log)
    runs = []
    for s in seeds:
        sub = dataclasses.replace(cfg, seed=s, out=str(Path(cfg.out) / f"seed{s}"),
                                  train=dataclasses.replace(cfg.train, seeds=[]))
        done = Path(sub.out) / "summary.json"
        if resume and done.is_file():
            runs.append(json.loads(done.read_text()))
            continue
        runs.append(train_link(sub, "auto" if resume else None, log=log))
    agg = {"model": cfg.model.name, "data": runs[0]["data"], "seeds": seeds, "runs": runs}
    for k in ("test_auc", "test_ap", "test_acc", "test_f1", "val_auc", "train_events_per_s"):
        mu, sd = mean_std([r.get(k) for r in runs])
        agg[f"{k}_mean"], agg[f"{k}_std"] = mu, sd
    config_mod.save(cfg, Path(cfg.out) / "config.yaml")
    MetricLogger(cfg.out).summary(**agg)
    log(f"{cfg.model.name}: test auc {agg['test_auc_mean']:.4f} ± {agg['test_auc_std']:.4f}, "
        f"ap {agg['test_ap_mean']:.4f} ± {agg['test_ap_std']:.4f} over seeds {seeds}")
    return agg
