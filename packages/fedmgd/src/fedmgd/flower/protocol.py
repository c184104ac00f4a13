"""FedMGD's wire protocol, without any Flower import: what the server computes, what a client computes, and
what crosses between them, on top of the in-process engine's own pieces (Stage1.begin / client_reply / step_g,
Stage2._train_client / server_update), so the two engines share every line of the math.

Stage 1, one GAN iteration = one exchange:
  down (server -> every client):  x_hat (B x C x H x W float32), y_hat (B), the loader batch gidx (B), the
                                  iteration t, the LR multiplier m and the client sizes (a consistency check)
  up   (client k -> server):      its realistic scores S_k (B), its per-sample routed-loss terms l_b (B) and
                                  d(sum_b l_b / B)/dx_hat (B x C x H x W), after its own C and D steps on its data
  The server routes k*(b) = argmax_k S_k(b), takes row b of client k*(b)'s gradient and steps G. D_k and C_k
  couple no samples, so this is the routed gradient of the in-process engine (one exchange instead of two;
  the uplink carries all B rows, not only the routed ones).
Stage 2, one FedAvg round: down S's weights, up the client's weights after its local steps (+ n_k and its
loss); the server aggregates in float64 in client order (as the in-process engine does) and runs the
filtered server steps with G.

A client's data never leaves it: it reads only its own partition (labels of the pool are used to draw the
partition, see data.build_federated_data) and sends only scores, gradients with respect to generated images
and model weights."""
from __future__ import annotations

import io
import time

import numpy as np
import torch
from tenfold import config as config_mod
from tenfold.errors import ConfigError
from tenfold.loop import assert_finite

from ..data import build_federated_data
from ..engine import Comm, Streams
from ..method import client_batch_indices, route
from ..nets import build_models
from ..stage1 import Stage1
from ..stage2 import Stage2, evaluate

__all__ = ["COMPAT", "fingerprint", "config_mismatch", "ServerLogic", "ClientLogic", "SUPPORTED_METHODS",
           "check_flower_config"]

COMPAT = ("seed", "data", "partition", "model", "gan", "fl", "legacy_index_folding")  # must agree on both sides
SUPPORTED_METHODS = ("fedmgd", "fedavg", "fedprox", "fedlc")


def check_flower_config(cfg) -> None:
    if cfg.fl.method not in SUPPORTED_METHODS:
        raise ConfigError(f"engine=flower runs fl.method {', '.join(SUPPORTED_METHODS)}; '{cfg.fl.method}' needs "
                          f"server state on the clients (use engine=local)")
    if cfg.fl.fraction < 1:
        raise ConfigError("engine=flower takes every connected client each round (fl.fraction=1); "
                          "use flower.min_clients for drop-outs")
    if cfg.fl.stage1_from:
        raise ConfigError("engine=flower trains its own Stage 1 (fl.stage1_from is for engine=local)")


def fingerprint(cfg) -> dict:
    """The flattened settings both sides must share (dotted key -> repr of the value)."""
    d = config_mod.to_dict(cfg)
    out = {}

    def walk(prefix, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else k, x)
        else:
            out[prefix] = repr(v)
    for sec in COMPAT:
        walk(sec, d.get(sec))
    out.pop("data.path", None)  # where the data lives may differ per machine; what it holds is checked by n_k
    return out


def config_mismatch(server: dict, client: dict) -> str | None:
    for key in sorted(set(server) | set(client)):
        if server.get(key) != client.get(key):
            return f"{key}: server {server.get(key, '<unset>')}, client {client.get(key, '<unset>')}"
    return None


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy()


class _NoComm(Comm):
    """A Comm for one side of the wire: hosts `local` clients, no collective reductions."""

    def __init__(self, num_clients: int, local: list[int], device):
        self.device = torch.device(device)
        self.rank, self.world, self.num_clients, self.local = 0, 1, num_clients, list(local)


def _models(cfg, fed, device, streams):
    make_g, make_d, make_c = build_models(cfg.model, fed.num_classes, fed.channels, cfg.data.img_size)
    with streams.use("init_S"):
        S = make_c().to(device)
    return make_g, make_d, make_c, S


class ServerLogic:
    """The server side: G and its optimiser (Stage 1), S, its optimiser and the frozen G (Stage 2), the server's RNG
    stream, and the global test set (the only data the server reads)."""

    def __init__(self, cfg, device="cpu", log=print):
        check_flower_config(cfg)
        self.cfg, self.device, self.log = cfg, torch.device(device), log
        self.fed = build_federated_data(cfg, self.device, clients=[], global_test=True)  # no client image is read
        self.K = cfg.partition.num_clients
        self.comm = _NoComm(self.K, [], self.device)
        self.streams = Streams(cfg.seed, self.device)
        self.make_g, self.make_d, self.make_c, self.S = _models(cfg, self.fed, self.device, self.streams)
        self.need_stage1 = cfg.fl.method == "fedmgd" or _resolved_init(cfg) == "stage1"
        self.st1 = (Stage1(cfg, self.fed, self.comm, self.streams, self.device, self.make_g, self.make_d, self.make_c,
                           self.S) if self.need_stage1 else None)
        self.st2: Stage2 | None = None
        self.sizes = self.fed.sizes

    # ---- stage 1 ---------------------------------------------------------------------------------------
    @property
    def total_iters(self) -> int:
        return self.st1.total_iters if self.st1 is not None else 0

    def stage1_request(self, t: int):
        """(payload for every client, what the server keeps for `stage1_finish`)."""
        x_fake, y_fake, m, epoch, gidx = self.st1.begin(t)
        payload = {"fake": _np(x_fake), "y": _np(y_fake), "gidx": _np(gidx),
                   "sizes": np.asarray(self.sizes, np.int64), "t": t, "m": float(m)}
        return payload, (x_fake, y_fake, m, epoch)

    def stage1_finish(self, t: int, keep, replies: dict[int, dict]) -> dict:
        """Route on the present clients' scores, assemble the routed gradient row by row, step G."""
        x_fake, y_fake, m, epoch = keep
        B = self.st1.batch
        out = {"loss_G": None, "loss_C": None, "loss_D": None, "lr_mult": m, "epoch": epoch,
               "clients_absent": self.K - len(replies)}
        if not replies:
            return out  # nobody answered: no generator step (as in the in-process engine)
        scores = torch.full((self.K, B), float("-inf"), device=self.device)
        for k, r in replies.items():
            scores[k] = torch.as_tensor(r["score"], device=self.device)
        lc = sum(float(r["lc"]) for r in replies.values())
        ld = sum(float(r["ld"]) for r in replies.values())
        assert_finite(lc + ld, t)
        k_star = route(scores)
        grad_x = torch.zeros_like(x_fake)
        lg = torch.zeros((), dtype=torch.float32, device=self.device)
        for k, r in replies.items():
            mask = k_star == k
            if bool(mask.any()):
                g = torch.as_tensor(r["grad"], device=self.device)
                grad_x[mask] = g[mask]
                lg = lg + torch.as_tensor(r["loss_g"], device=self.device)[mask].sum() / B
        self.st1.step_g(x_fake, grad_x)
        assert_finite(float(lg), t)
        self.st1.count_routes(k_star, y_fake)
        out.update(loss_G=float(lg), loss_C=lc / len(replies), loss_D=ld / len(replies))
        return out

    # ---- stage 2 ---------------------------------------------------------------------------------------
    def start_stage2(self) -> None:
        G = self.st1.G if (self.st1 is not None and self.cfg.fl.method == "fedmgd") else None
        self.st2 = Stage2(self.cfg, self.fed, self.comm, self.streams, self.device, self.S, G)

    def stage2_payload(self, rnd: int) -> dict:
        return {"S": {n: _np(v) for n, v in self.S.state_dict().items()}, "round": rnd,
                "sizes": np.asarray(self.sizes, np.int64)}

    def stage2_aggregate(self, rnd: int, replies: dict[int, dict]) -> dict:
        """Weighted FedAvg in float64, clients in index order (the in-process engine's sum), then the server's
        filtered refinement with G (fedmgd, after the warm-up rounds)."""
        f = self.cfg.fl
        rec = {"round": rnd + 1, "clients_ok": len(replies), "clients_dropped": self.K - len(replies),
               "local_loss": (sum(r["loss"] for r in replies.values()) / len(replies)) if replies else 0.0}
        if replies:
            ref = self.S.state_dict()
            acc = {n: torch.zeros_like(v, dtype=torch.float64) for n, v in ref.items()}
            weight = 0.0
            for k in sorted(replies):
                n_k = float(self.sizes[k])
                for name, v in replies[k]["weights"].items():
                    acc[name] += n_k * torch.as_tensor(v, device=self.device).double()
                weight += n_k
            new = {n: (a / weight).round().to(v.dtype) if not v.is_floating_point() else (a / weight).to(v.dtype)
                   for (n, a), v in zip(acc.items(), ref.values())}
            self.S.load_state_dict(new)
        if f.method == "fedmgd" and rnd >= f.warmup_rounds and f.server_steps > 0:
            rec.update(self.st2.server_update())
        return rec

    def test_accuracy(self) -> float:
        return evaluate(self.S, self.fed.test_u8, self.fed.test_y, self.cfg.fl.eval_batch, self.fed.to_float)


class ClientLogic:
    """Client `k` for one message: rebuilt from the config, its own partition and its persisted state blob (a
    Flower ClientApp process serves one message; the SuperNode keeps the blob in the run's Context.state)."""

    def __init__(self, cfg, k: int, blob: bytes | None, device="cpu", fed=None):
        check_flower_config(cfg)
        K = cfg.partition.num_clients
        if not 0 <= k < K:
            raise ConfigError(f"partition-id {k} is out of range: the config has {K} clients (0..{K - 1})")
        self.cfg, self.k, self.device = cfg, k, torch.device(device)
        self.fed = fed if fed is not None else build_federated_data(cfg, self.device, clients=[k], global_test=False)
        if len(self.fed.client_y[k]) == 0:
            raise ConfigError(f"client {k} has no data")
        self.comm = _NoComm(K, [k], self.device)
        self.streams = Streams(cfg.seed, self.device)
        self.make_g, self.make_d, self.make_c, self.S = _models(cfg, self.fed, self.device, self.streams)
        self.st1 = Stage1(cfg, self.fed, self.comm, self.streams, self.device, self.make_g, self.make_d, self.make_c,
                          self.S)
        self.client_opt = None  # Stage 2: persistent Adam state (fl.optim_state=persist)
        self.stage2_started = False
        if blob:
            sd = torch.load(io.BytesIO(blob), map_location=self.device, weights_only=False)
            self.st1.D[k].load_state_dict(sd["D"])
            self.st1.C[k].load_state_dict(sd["C"])
            self.st1.opt_D[k].load_state_dict(sd["opt_D"])
            self.st1.opt_C[k].load_state_dict(sd["opt_C"])
            self.streams.load_state_dict(sd["streams"])
            self.client_opt, self.stage2_started = sd["client_opt"], sd["stage2_started"]

    def blob(self) -> bytes:
        k = self.k
        buf = io.BytesIO()
        torch.save({"D": self.st1.D[k].state_dict(), "C": self.st1.C[k].state_dict(),
                    "opt_D": self.st1.opt_D[k].state_dict(), "opt_C": self.st1.opt_C[k].state_dict(),
                    "streams": self.streams.state_dict(), "client_opt": self.client_opt,
                    "stage2_started": self.stage2_started}, buf)
        return buf.getvalue()

    def _check_sizes(self, sizes) -> None:
        mine = [int(x) for x in self.fed.sizes]
        theirs = [int(x) for x in np.asarray(sizes).reshape(-1)]
        if mine != theirs:
            raise ConfigError(f"server/client config mismatch: the server's client sizes {theirs} differ from this "
                              f"client's partition {mine} (data or partition settings differ)")

    def hello(self) -> dict:
        return {"partition_id": self.k, "n": int(self.fed.sizes[self.k]), "sizes": self.fed.sizes}

    def stage1(self, p: dict) -> dict:
        self._check_sizes(p["sizes"])
        t = int(p["t"])
        gidx = torch.as_tensor(p["gidx"], device=self.device)
        rows = client_batch_indices(gidx, self.fed.sizes, self.cfg.legacy_index_folding)[self.k]
        fake = torch.as_tensor(p["fake"], device=self.device)
        y = torch.as_tensor(p["y"], device=self.device)
        r = self.st1.client_reply(self.k, rows, fake, y, float(p["m"]), t)
        lc, ld = float(r["lc"]), float(r["ld"])
        assert_finite(lc + ld, t)
        return {"score": _np(r["score"]), "loss_g": _np(r["loss_g"]), "grad": _np(r["grad"]), "lc": lc, "ld": ld}

    def stage2(self, p: dict) -> dict:
        """One round of local training from the server's S (round 0 with fl.init=stage1: from this client's
        Stage-1 C_k and its Adam state, as in the in-process engine)."""
        self._check_sizes(p["sizes"])
        k, rnd, f = self.k, int(p["round"]), self.cfg.fl
        S = self.make_c().to(self.device)
        S.load_state_dict({n: torch.as_tensor(v) for n, v in p["S"].items()})
        init = _resolved_init(self.cfg)
        client_init = client_opt_init = None
        if rnd == 0 and not self.stage2_started and init == "stage1":
            client_init = {k: self.st1.C[k].state_dict()}
            client_opt_init = {k: self.st1.opt_C[k].state_dict()}
        elif self.client_opt is not None:
            client_opt_init = {k: self.client_opt}
        st2 = Stage2(self.cfg, self.fed, self.comm, self.streams, self.device, S, None, client_init, client_opt_init)
        t0 = time.perf_counter()
        res = st2._train_client(rnd, k)
        if f.optim_state == "persist":
            self.client_opt = res["opt"]
        self.stage2_started = True
        return {"weights": {n: _np(v) for n, v in st2.work.state_dict().items()}, "loss": float(res["loss"]),
                "n": int(self.fed.sizes[k]), "time_s": time.perf_counter() - t0}


def _resolved_init(cfg) -> str:
    from ..train import resolved_init

    return resolved_init(cfg)
