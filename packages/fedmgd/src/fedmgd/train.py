"""One FedMGD (or baseline) run: data -> partition -> Stage 1 (if needed) -> Stage 2, with atomic
checkpoints, exact resume, JSONL metrics and summary.json; plus independent multi-seed runs."""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch
from tenfold import checkpoint, distributed, signals
from tenfold import config as config_mod
from tenfold.errors import CheckpointError, ConfigError
from tenfold.meters import MetricLogger, progress, write_json
from tenfold.runtime import seed_everything, select_device, set_deterministic

from .data import build_federated_data
from .engine import Comm, Streams
from .nets import build_models
from .stage1 import Stage1
from .stage2 import Stage2

__all__ = ["run", "run_seeds", "KIND", "resolved_init"]

KIND = "fedmgd"
_COMPAT = ("data", "partition", "model")


def resolved_init(cfg) -> str:
    if cfg.fl.init != "auto":
        return cfg.fl.init
    return "stage1" if cfg.fl.method == "fedmgd" else "scratch"


def _rank_path(path: Path, rank: int) -> Path:
    return path if rank == 0 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def _check_compat(state: dict, cfg, what: str) -> None:
    saved = state.get("config") or {}
    now = config_mod.to_dict(cfg)
    for sec in _COMPAT:
        a, b = saved.get(sec), now.get(sec)
        if a is None:
            continue
        for key in b:
            if a.get(key) != b.get(key):
                raise CheckpointError(f"{what} was written with {sec}.{key}={a.get(key)!r}, this run has "
                                      f"{b.get(key)!r}; use the same config or start a new --out")
    if state.get("world", 1) != distributed.world_size():
        raise CheckpointError(f"{what} was written by {state.get('world')} processes, this run has "
                              f"{distributed.world_size()}; resume with the same number of ranks")


def _resolve_resume(resume, out: Path, rank: int) -> Path | None:
    if resume is None:
        return None
    p = out / "last.pt" if resume == "auto" else Path(resume)
    if p.is_dir():
        p = p / "last.pt"
    if resume == "auto" and not p.is_file():
        return None  # bare --resume on a fresh run directory starts from scratch
    return _rank_path(p, rank)


def run(cfg, *, resume=None, stop_at: tuple[str, int] | None = None, fed=None, log=print) -> dict:
    """Train; `stop_at=("stage1", n)` / `("stage2", r)` simulates an interruption after n iterations /
    r rounds (a checkpoint is written there). Returns the summary dict."""
    device = select_device(cfg.device)
    distributed.init(device)
    rank = distributed.rank()
    set_deterministic(cfg.deterministic)
    seed_everything(cfg.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32
    out = Path(cfg.out)
    main = distributed.is_main()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        config_mod.save(cfg, out / "config.yaml")
    say = log if main else (lambda *_: None)
    t_start = time.perf_counter()
    comm = Comm(cfg.partition.num_clients, device)
    # under torchrun a rank keeps only the images of the clients it hosts (labels of all: the partition needs them)
    fed = fed if fed is not None else build_federated_data(cfg, device, clients=comm.local)
    streams = Streams(cfg.seed, device)
    make_g, make_d, make_c = build_models(cfg.model, fed.num_classes, fed.channels, cfg.data.img_size)
    with streams.use("init_S"):
        S = make_c().to(device)
    method, init = cfg.fl.method, resolved_init(cfg)
    need_stage1 = method == "fedmgd" or init == "stage1"
    metrics = MetricLogger(out)
    ck_path = _resolve_resume(resume, out, rank)
    ck = checkpoint.load(ck_path, KIND) if ck_path is not None else None
    if ck is not None:
        _check_compat(ck, cfg, str(ck_path))
        if ck.get("method") != method:
            raise CheckpointError(f"{ck_path} is a '{ck.get('method')}' run, not '{method}'; use another --out")
        say(f"resuming from {ck_path} (stage {ck['stage']}, step {ck['step']})")
        metrics.truncate_after(ck["step"], stage=ck["stage"])  # records after the checkpoint are logged again
        t_start -= ck.get("elapsed_s", 0.0)  # wall time stays cumulative over resumes

    def save(stage: int, step: int, state: dict) -> Path:
        payload = {"stage": stage, "step": step, "state": state, "streams": streams.state_dict(), "method": method,
                   "config": config_mod.to_dict(cfg), "world": distributed.world_size(),
                   "elapsed_s": time.perf_counter() - t_start, "summary": carried}
        return checkpoint.save(_rank_path(out / "last.pt", rank), payload, KIND)

    summary: dict = {"method": method, "init": init, "preset": cfg.fl.preset, "seed": cfg.seed,
                     "client_sizes": fed.sizes, "device": str(device), "world_size": distributed.world_size()}
    carried: dict = dict(ck.get("summary", {})) if ck is not None else {}  # Stage 1 results, kept over resumes
    summary.update(carried)
    G, client_init, client_opt_init = None, None, None
    s1_file = _rank_path(out / "stage1.pt", rank)
    if need_stage1 and cfg.fl.stage1_from:
        s1 = checkpoint.load(_rank_path(Path(cfg.fl.stage1_from), rank), KIND + "-stage1")
        _check_compat(s1, cfg, cfg.fl.stage1_from)
        G = make_g().to(device)
        checkpoint.load_module_state(G, s1["G"], "generator")
        client_init = {k: s1["C"][k] for k in comm.local}
        client_opt_init = {k: s1["opt_C"][k] for k in comm.local}
        summary["stage1_from"] = str(cfg.fl.stage1_from)
    elif need_stage1 and not (ck is not None and ck["stage"] == 2):
        st1 = Stage1(cfg, fed, comm, streams, device, make_g, make_d, make_c, S, logger=say)
        start = 0
        if ck is not None and ck["stage"] == 1:
            st1.load_state_dict(ck["state"])
            streams.load_state_dict(ck["streams"])
            start = ck["step"]
        total = st1.total_iters
        t1 = time.perf_counter()
        bar = progress(total=total, initial=start, desc="stage 1 (GAN)")
        for t in signals.steps(range(start, total), lambda i: save(1, i + 1, st1.state_dict()),
                               lambda i: f"stage 1 iteration {i + 1}/{total}"):
            m = st1.iteration(t)
            bar.update(1)
            if (t + 1) % cfg.gan.log_every == 0 or t + 1 == total:
                bar.set_postfix(metrics.log(step=t + 1, stage=1, **m), refresh=False)
            if stop_at == ("stage1", t + 1):
                save(1, t + 1, st1.state_dict())
                bar.close()
                return {"stopped_at": stop_at}
            if (t + 1) % cfg.gan.ckpt_every == 0 and t + 1 < total:
                save(1, t + 1, st1.state_dict())
        bar.close()
        summary["stage1_iters"] = total
        summary["stage1_time_s"] = time.perf_counter() - t1 + carried.get("stage1_time_s", 0.0)
        summary["stage1_it_per_s"] = (total - start) / max(summary["stage1_time_s"], 1e-9)
        summary["routing_owner_agreement"] = st1.routing_owner_agreement()
        carried.update({k: summary[k] for k in ("stage1_iters", "stage1_time_s", "stage1_it_per_s",
                                                "routing_owner_agreement")})
        G = st1.G
        client_init, client_opt_init = st1.state_dict()["C"], st1.state_dict()["opt_C"]
        checkpoint.save(s1_file, {"G": G.state_dict(), "C": client_init, "opt_C": client_opt_init,
                                  "route_counts": st1.route_counts, "config": config_mod.to_dict(cfg),
                                  "world": distributed.world_size()}, KIND + "-stage1")
        say(f"stage 1 done: {total} iterations in {summary['stage1_time_s']:.1f}s")
        if main:
            _class_grid(G, out / "stage1_samples.png", device)
    elif need_stage1:
        G = make_g().to(device)  # resumed in stage 2: G comes from the checkpoint below
    if init != "stage1":
        client_init, client_opt_init = None, None
    st2 = Stage2(cfg, fed, comm, streams, device, S, G if method == "fedmgd" else None,
                 copy.deepcopy(client_init) if client_init else None,
                 copy.deepcopy(client_opt_init) if client_opt_init else None, logger=say)
    start_round = 0
    history: list[dict] = []
    if ck is not None and ck["stage"] == 2:
        st2.load_state_dict(ck["state"]["stage2"])
        if G is not None and "G" in ck["state"]:
            checkpoint.load_module_state(G, ck["state"]["G"], "generator")
        streams.load_state_dict(ck["streams"])
        start_round, history = ck["step"], ck["state"]["history"]

    def stage2_state() -> dict:
        st = {"stage2": st2.state_dict(), "history": history}
        if G is not None and method == "fedmgd":
            st["G"] = G.state_dict()
        return st

    rounds = cfg.fl.rounds
    t2 = time.perf_counter()
    bar = progress(total=rounds, initial=start_round, desc=f"stage 2 ({method})")
    for r in signals.steps(range(start_round, rounds), lambda i: save(2, i + 1, stage2_state()),
                           lambda i: f"stage 2 round {i + 1}/{rounds}"):
        rec = st2.round(r)
        if st2.eval_round(r):  # federated evaluation: global test, clients' local tests, client models
            rec.update(st2.evaluate())
            bar.set_postfix(rec, refresh=False)
            if hasattr(bar, "line"):
                bar.line("evaluation")  # a plain progress line at every evaluation (logs that are not a terminal)
        history.append(rec)
        bar.update(1)
        if (r + 1) % cfg.fl.log_every == 0 or r + 1 == rounds:
            metrics.log(step=r + 1, stage=2, **rec)
        if stop_at == ("stage2", r + 1):
            save(2, r + 1, stage2_state())
            bar.close()
            return {"stopped_at": stop_at, "S": st2.S.state_dict()}
        if (r + 1) % cfg.fl.ckpt_every == 0 or r + 1 == rounds:
            save(2, r + 1, stage2_state())
    bar.close()
    accs = [h["test_acc"] for h in history if "test_acc" in h]
    keeps = [h["keep_rate"] for h in history if "keep_rate" in h]
    summary.update({
        "rounds": rounds, "local_steps_per_round": st2.steps, "final_test_acc": accs[-1] if accs else None,
        "best_test_acc": max(accs) if accs else None, "test_acc_curve": accs,
        "keep_rate_first": keeps[0] if keeps else None, "keep_rate_last": keeps[-1] if keeps else None,
        "clients_dropped_total": sum(h["clients_dropped"] for h in history),
        "local_test_acc": st2.local_accuracies(),
        "stage2_time_s": time.perf_counter() - t2,
        "round_time_s": sum(h["round_time_s"] for h in history) / max(len(history), 1),
        "total_time_s": time.perf_counter() - t_start})
    summary["S"] = None
    metrics.summary(**{k: v for k, v in summary.items() if k != "S"})
    summary["S"] = st2.S.state_dict()
    say(f"{method}: final global test accuracy {summary['final_test_acc']:.4f} after {rounds} rounds")
    return summary


@torch.no_grad()
def _class_grid(G, path: Path, device, per_class: int = 8) -> None:
    """One row per class of what the Stage-1 generator makes (a copy in eval mode and its own noise, so neither
    the generator's BN statistics nor the training RNG streams change)."""
    from tenfold import plot

    g = copy.deepcopy(G).eval()
    n = g.n_classes
    y = torch.arange(n, device=device).repeat_interleave(per_class)
    z = torch.randn(len(y), g.n_z, generator=torch.Generator().manual_seed(0)).to(device)
    plot.save_grid(g(z, torch.nn.functional.one_hot(y, n).float()), path, nrow=per_class)


def mean_std(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, sd


def run_seeds(cfg, seeds: list[int], *, resume=None, log=print) -> dict:
    """Independent runs (fresh models, own Stage 1) in <out>/seed<s>; summary.json holds mean +- std."""
    if not seeds:
        raise ConfigError("--seeds needs at least one seed")
    base = Path(cfg.out)
    finals, per = [], {}
    for s in seeds:
        c = copy.deepcopy(cfg)
        c.seed, c.out = s, str(base / f"seed{s}")
        res = run(c, resume=resume if resume is None else "auto", log=log)
        finals.append(res["final_test_acc"])
        per[str(s)] = res["final_test_acc"]
    m, sd = mean_std(finals)
    agg = {"method": cfg.fl.method, "seeds": seeds, "final_test_acc": per, "mean": m, "std": sd}
    if distributed.is_main():
        write_json(base / "summary.json", agg)
        log(f"{cfg.fl.method}: {100 * m:.2f} +- {100 * sd:.2f} over seeds {seeds}")
    return agg
