"""Flower ServerApp and ClientApp for both FedMGD stages (Flower's Message API, flwr >= 1.42).

Run configuration (``[tool.flwr.app.config]`` of the shipped app, ``flwr run --run-config``): ``config`` (a YAML
path or a shipped config name; both sides read it), ``overrides`` (dotted ``key=value`` pairs separated by spaces)
and ``out`` (the server's run directory). Node configuration (``flower-supernode --node-config``):
``partition-id`` (which client this SuperNode is), optionally ``num-partitions`` (checked against the config) and
``overrides`` (e.g. ``data_root=/local/data device=cuda``; the settings both sides must share are checked).

Message types: ``query.hello`` (partition id, n_k, consistency checks), ``train.stage1`` (one GAN iteration)
and ``train`` (one Stage-2 round, sent by the FedMGD ``Strategy``)."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common import serde
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from tenfold import config as config_mod
from tenfold.errors import ConfigError, TenfoldError
from tenfold.meters import write_json

from ..config import FedMGDConfig
from .protocol import ClientLogic, ServerLogic, config_mismatch, fingerprint

__all__ = ["server_app", "client_app", "run_server", "load_run_config", "to_record", "from_record",
           "record_bytes", "FedMGDStrategy"]

STATE_KEY = "fedmgd"


# ---- payloads <-> Flower records ----------------------------------------------------------------------------
def to_record(d: dict) -> RecordDict:
    """ndarrays -> ArrayRecord "arrays"; dicts of ndarrays (weights) -> ArrayRecord "w.<name>"; scalars and lists
    -> ConfigRecord "config"."""
    arrays, conf, rd = {}, {}, {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            arrays[k] = Array(np.ascontiguousarray(v))
        elif isinstance(v, dict):
            rd[f"w.{k}"] = ArrayRecord({n: Array(np.ascontiguousarray(x)) for n, x in v.items()})
        elif isinstance(v, (list, tuple)):
            conf[k] = [int(x) if isinstance(x, (int, np.integer)) else x for x in v]
        elif isinstance(v, np.integer):
            conf[k] = int(v)
        elif isinstance(v, np.floating):
            conf[k] = float(v)
        else:
            conf[k] = v
    if arrays:
        rd["arrays"] = ArrayRecord(arrays)
    rd["config"] = ConfigRecord(conf)
    return RecordDict(rd)


def from_record(rd: RecordDict) -> dict:
    out = dict(rd["config"]) if "config" in rd else {}
    if "arrays" in rd:
        out.update({k: a.numpy() for k, a in rd["arrays"].items()})
    for key in rd:
        if key.startswith("w."):
            out[key[2:]] = {n: a.numpy() for n, a in rd[key].items()}
    return out


def record_bytes(rd: RecordDict) -> int:
    """Serialized size of a message's content (Flower's protobuf RecordDict): what the payload costs on the wire."""
    return int(serde.recorddict_to_proto(rd).ByteSize())


# ---- configuration -------------------------------------------------------------------------------------------
def load_run_config(run_config: dict, node_config: dict | None = None) -> FedMGDConfig:
    from tenfold import configs

    name = str(run_config.get("config", "") or "") or None
    path = configs.resolve("fedmgd", name) if name else None
    overrides = str(run_config.get("overrides", "") or "").split()
    if node_config:
        overrides += str(node_config.get("overrides", "") or "").split()
    out = str(run_config.get("out", "") or "")
    if out:
        overrides.append(f"out={out}")
    cfg = config_mod.load(FedMGDConfig, path, overrides)
    return cfg


def _reason(msg: Message) -> str:
    r = msg.error.reason
    m = re.match(r"^<class '([\w.]+)'>:<'(.*)'>$", r, re.S)
    return f"{m.group(1).rsplit('.', 1)[-1]}: {m.group(2)}" if m else r


def _fatal(reason: str) -> bool:
    return any(x in reason for x in ("ConfigError", "DataError", "CheckpointError", "NonFiniteLossError"))


# ---- the ClientApp --------------------------------------------------------------------------------------------
client_app = ClientApp()


def _client(context: Context) -> ClientLogic:
    nc = context.node_config
    if "partition-id" not in nc:
        raise ConfigError("this SuperNode has no partition-id: start it with --node-config 'partition-id=K'")
    try:
        k = int(nc["partition-id"])
    except (TypeError, ValueError):
        raise ConfigError(f"partition-id must be an integer, got {nc['partition-id']!r}") from None
    cfg = load_run_config(context.run_config, nc)
    K = cfg.partition.num_clients
    if "num-partitions" in nc and int(nc["num-partitions"]) != K:
        raise ConfigError(f"server/client config mismatch: this SuperNode has num-partitions={nc['num-partitions']}, "
                          f"the config has partition.num_clients={K}")
    from tenfold.runtime import select_device

    blob = None
    if STATE_KEY in context.state:
        blob = context.state[STATE_KEY]["blob"].numpy().tobytes()
    return ClientLogic(cfg, k, blob, select_device(cfg.device))


def _save(context: Context, logic: ClientLogic) -> None:
    context.state[STATE_KEY] = ArrayRecord({"blob": Array(np.frombuffer(logic.blob(), dtype=np.uint8).copy())})


@client_app.query("hello")
def _hello(msg: Message, context: Context) -> Message:
    logic = _client(context)
    p = from_record(msg.content)
    bad = config_mismatch(json.loads(p["fingerprint"]), fingerprint(logic.cfg))
    if bad is not None:
        raise ConfigError(f"server/client config mismatch: {bad}")
    _save(context, logic)
    return Message(to_record(logic.hello()), reply_to=msg)


@client_app.train("stage1")
def _stage1(msg: Message, context: Context) -> Message:
    logic = _client(context)
    out = logic.stage1(from_record(msg.content))
    _save(context, logic)
    return Message(to_record(out), reply_to=msg)


@client_app.train()
def _stage2(msg: Message, context: Context) -> Message:
    logic = _client(context)
    out = logic.stage2(from_record(msg.content))
    _save(context, logic)
    rd = to_record({k: v for k, v in out.items() if k != "weights"})
    rd["arrays"] = ArrayRecord({n: Array(np.ascontiguousarray(x)) for n, x in out["weights"].items()})
    rd["metrics"] = MetricRecord({"num-examples": int(out["n"]), "loss": float(out["loss"])})
    return Message(rd, reply_to=msg)


# ---- the server ----------------------------------------------------------------------------------------------
class _Run:
    """Which node is which client, who is still in, and what each round cost."""

    def __init__(self, K: int, log):
        self.K, self.log = K, log
        self.part_of: dict[int, int] = {}  # node id -> client
        self.alive: dict[int, int] = {}  # client -> node id
        self.rounds: dict[str, list[dict]] = {"stage1": [], "stage2": []}

    def connected(self, grid: Grid) -> dict[int, int]:
        now = set(grid.get_node_ids())
        for k, n in list(self.alive.items()):
            if n not in now:
                self.drop(k, "its SuperNode is no longer connected")
        return dict(self.alive)

    def drop(self, k: int, why: str) -> None:
        if k in self.alive:
            del self.alive[k]
            self.log(f"client {k} left out for the rest of the run ({why})")

    def collect(self, replies, sent: dict[int, int], what: str) -> tuple[dict[int, Message], int]:
        got, up = {}, 0
        for rep in replies:
            k = self.part_of.get(rep.metadata.src_node_id)
            if k is None:
                continue
            if rep.has_error():
                reason = _reason(rep)
                if _fatal(reason):
                    raise ConfigError(f"client {k} (node {rep.metadata.src_node_id}): {reason}")
                self.drop(k, f"{what} failed: {reason}")
                continue
            got[k] = rep
            up += record_bytes(rep.content)
        for k in sent:
            if k not in got and k in self.alive:
                self.drop(k, f"no reply to {what}")
        return got, up


def _wait_nodes(grid: Grid, K: int, wait_s: float, log) -> list[int]:
    t0 = time.monotonic()
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= K or time.monotonic() - t0 > wait_s:
            break
        time.sleep(0.5)
    if len(nodes) < K:
        raise ConfigError(f"only {len(nodes)} of {K} SuperNodes connected within flower.wait_nodes_s={wait_s:g}s; "
                          f"start one flower-supernode per client (--node-config 'partition-id=k')")
    return nodes


def _hello_all(grid: Grid, logic: ServerLogic, run: _Run, nodes: list[int], timeout: float) -> None:
    content = to_record({"fingerprint": json.dumps(fingerprint(logic.cfg))})
    msgs = [Message(content, dst_node_id=n, message_type="query.hello") for n in nodes]
    replies = list(grid.send_and_receive(msgs, timeout=timeout))
    seen: dict[int, int] = {}
    for rep in replies:
        if rep.has_error():
            raise ConfigError(f"client node {rep.metadata.src_node_id}: {_reason(rep)}")
        p = from_record(rep.content)
        k = int(p["partition_id"])
        if k in seen:
            raise ConfigError(f"two SuperNodes (nodes {seen[k]} and {rep.metadata.src_node_id}) have partition-id {k}")
        if [int(x) for x in p["sizes"]] != [int(x) for x in logic.sizes]:
            raise ConfigError(f"server/client config mismatch: client {k}'s partition sizes {list(p['sizes'])} differ "
                              f"from the server's {logic.sizes}")
        seen[k] = rep.metadata.src_node_id
    missing = sorted(set(range(logic.K)) - set(seen))
    if missing:
        raise ConfigError(f"no SuperNode answered for client(s) {missing} within {timeout:g}s")
    run.part_of = {n: k for k, n in seen.items()}
    run.alive = dict(sorted(seen.items()))


def _min_clients(cfg) -> int:
    return max(1, cfg.flower.min_clients)


def _run_stage1(grid: Grid, logic: ServerLogic, run: _Run, metrics: list) -> None:
    cfg, total = logic.cfg, logic.total_iters
    per, timeout = cfg.flower.gan_iters_per_round, cfg.flower.reply_timeout_s
    t, rnd = 0, 0
    while t < total:
        rnd += 1
        t0, down, up, n_it = time.perf_counter(), 0, 0, 0
        nodes = run.connected(grid)
        for _ in range(min(per, total - t)):
            payload, keep = logic.stage1_request(t)
            content = to_record(payload)
            size = record_bytes(content)
            msgs = [Message(content, dst_node_id=n, message_type="train.stage1", group_id=f"s1-{rnd}")
                    for n in nodes.values()]
            down += size * len(msgs)
            got, u = run.collect(grid.send_and_receive(msgs, timeout=timeout), nodes, f"stage-1 iteration {t + 1}")
            up += u
            nodes = {k: n for k, n in nodes.items() if k in run.alive}
            if len(got) < _min_clients(cfg):
                raise ConfigError(f"stage-1 iteration {t + 1}: {len(got)} client(s) replied, fewer than "
                                  f"flower.min_clients={_min_clients(cfg)}")
            m = logic.stage1_finish(t, keep, {k: from_record(r.content) for k, r in got.items()})
            metrics.append({"stage": 1, "step": t + 1, **{k: v for k, v in m.items() if v is not None}})
            t += 1
            n_it += 1
        sec = time.perf_counter() - t0
        run.rounds["stage1"].append({"round": rnd, "iters": n_it, "clients": len(nodes), "bytes_down": down,
                                     "bytes_up": up, "seconds": sec})
        run.log(f"stage 1 round {rnd}: iterations {t}/{total}, {len(nodes)} clients, down {down / 1e6:.2f} MB, "
                f"up {up / 1e6:.2f} MB, {sec:.1f}s, loss_G {metrics[-1].get('loss_G')}")


class FedMGDStrategy(FedAvg):
    """Stage 2 as a Flower Strategy: FedAvg over the connected clients, aggregated in float64 in client order,
    followed (fl.method=fedmgd) by the server's filtered refinement of S with the frozen global generator."""

    def __init__(self, logic: ServerLogic, run: _Run, metrics: list):
        n = _min_clients(logic.cfg)
        super().__init__(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n, min_available_nodes=n)
        self.logic, self.run, self.metrics = logic, run, metrics
        self.sent: dict[int, int] = {}
        self.history: list[dict] = []
        self._t0 = 0.0
        self._down = 0

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid):
        self._t0 = time.perf_counter()
        self.sent = self.run.connected(grid)
        rd = to_record(self.logic.stage2_payload(server_round - 1))
        self._down = record_bytes(rd) * len(self.sent)
        return [Message(rd, dst_node_id=n, message_type="train", group_id=f"s2-{server_round}")
                for n in self.sent.values()]

    def aggregate_train(self, server_round: int, replies):
        rnd = server_round - 1
        got, up = self.run.collect(replies, self.sent, f"stage-2 round {server_round}")
        if len(got) < _min_clients(self.logic.cfg):
            raise ConfigError(f"stage-2 round {server_round}: {len(got)} client(s) replied, fewer than "
                              f"flower.min_clients={_min_clients(self.logic.cfg)}")
        parsed = {}
        for k, r in got.items():
            p = from_record(r.content)
            p["weights"] = {n: a.numpy() for n, a in r.content["arrays"].items()}
            parsed[k] = p
        rec = self.logic.stage2_aggregate(rnd, parsed)
        f = self.logic.cfg.fl
        if (rnd + 1) % f.eval_every == 0 or rnd + 1 == f.rounds:
            rec["test_acc"] = self.logic.test_accuracy()
        sec = time.perf_counter() - self._t0
        rec["round_time_s"] = sec
        self.history.append(rec)
        self.metrics.append({"stage": 2, "step": rnd + 1, **{k: v for k, v in rec.items() if v is not None}})
        self.run.rounds["stage2"].append({"round": rnd + 1, "clients": len(got), "bytes_down": self._down,
                                          "bytes_up": up, "seconds": sec})
        self.run.log(f"stage 2 round {rnd + 1}: {len(got)} clients, down {self._down / 1e6:.2f} MB, "
                     f"up {up / 1e6:.2f} MB, {sec:.1f}s, test_acc {rec.get('test_acc')}")
        metrics = MetricRecord({k: float(v) for k, v in rec.items() if isinstance(v, (int, float))})
        return ArrayRecord(self.logic.S.state_dict()), metrics


def _mean(rows: list[dict], key: str) -> float | None:
    return sum(r[key] for r in rows) / len(rows) if rows else None


def run_server(grid: Grid, cfg, log=print) -> dict:
    """The whole server side (hello, Stage 1, Stage 2); writes summary.json, metrics.jsonl and flower_final.pt to
    cfg.out and returns the summary."""
    from tenfold.runtime import seed_everything, select_device

    seed_everything(cfg.seed)
    t_start = time.perf_counter()
    logic = ServerLogic(cfg, select_device(cfg.device), log)
    run = _Run(logic.K, log)
    nodes = _wait_nodes(grid, logic.K, cfg.flower.wait_nodes_s, log)
    _hello_all(grid, logic, run, nodes, cfg.flower.reply_timeout_s)
    log(f"fedmgd on Flower: {logic.K} clients connected (sizes {logic.sizes}), method {cfg.fl.method}")
    metrics: list[dict] = []
    if logic.st1 is not None:
        _run_stage1(grid, logic, run, metrics)
    logic.start_stage2()
    strategy = FedMGDStrategy(logic, run, metrics)
    strategy.start(grid, ArrayRecord(logic.S.state_dict()), num_rounds=cfg.fl.rounds,
                   timeout=cfg.flower.reply_timeout_s)
    accs = [h["test_acc"] for h in strategy.history if "test_acc" in h]
    comms = {}
    for st, rows in run.rounds.items():
        comms[st] = {"rounds": len(rows), "bytes_down_per_round": _mean(rows, "bytes_down"),
                     "bytes_up_per_round": _mean(rows, "bytes_up"), "seconds_per_round": _mean(rows, "seconds")}
        if st == "stage1" and rows:
            comms[st]["iters_per_round"] = cfg.flower.gan_iters_per_round
    summary = {"engine": "flower", "method": cfg.fl.method, "seed": cfg.seed, "client_sizes": logic.sizes,
               "final_test_acc": accs[-1] if accs else None, "test_acc_curve": accs,
               "clients_at_end": sorted(run.alive), "communication": comms, "rounds_detail": run.rounds,
               "total_time_s": time.perf_counter() - t_start}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    with open(out / "metrics.jsonl", "w") as fh:
        for m in metrics:
            fh.write(json.dumps(m) + "\n")
    torch.save({"S": logic.S.state_dict(), "G": logic.st1.G.state_dict() if logic.st1 is not None else None},
               out / "flower_final.pt")
    log(f"fedmgd on Flower: final global test accuracy {summary['final_test_acc']} after {cfg.fl.rounds} rounds; "
        f"wrote {out / 'summary.json'}")
    return summary


server_app = ServerApp()


@server_app.main()
def _server_main(grid: Grid, context: Context) -> None:
    try:
        cfg = load_run_config(context.run_config)
        run_server(grid, cfg, log=lambda s: print(f"[fedmgd] {s}", flush=True))
    except TenfoldError as e:  # one clear line in the ServerApp's log, and a failed run
        print(f"[fedmgd] error: {e}", flush=True)
        out = str(context.run_config.get("out", "") or "")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "error.txt").write_text(f"{e}\n")
        raise
