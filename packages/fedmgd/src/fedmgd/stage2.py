"""Stage 2, federated enhancement (§2.5), and the baselines in the same round loop: FedAvg, FedProx,
SCAFFOLD, FedLC, Local. One working classifier serves every hosted client in turn, so memory grows with
the model, not with clients x model (persistent client Adam states and SCAFFOLD controls excepted)."""
from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from tenfold.loop import assert_finite
from tenfold.runtime import autocast, grad_scaler, optimizer_step

from . import engine
from .engine import Comm, Streams, stream_seed
from .faults import ClientFailure, Guard, call_with_deadline, parse_events
from .method import (
    client_batch_indices,
    fedlc_logits,
    fedprox_term,
    scaffold_control_update,
    scaffold_correct,
    server_enhance_step,
)
from .stage1 import epoch_order

__all__ = ["Stage2", "ClientFailure", "evaluate"]


@torch.no_grad()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, batch: int = 128, prep=None) -> float:
    """Top-1 on the full set: no shuffle, no drop_last (fixes reference quirk 4). `prep` converts a
    stored (uint8) chunk to the model's input."""
    if len(y) == 0:
        return float("nan")
    return int(correct_count(model, x, y, batch, prep)) / len(y)


@torch.no_grad()
def correct_count(model, x: torch.Tensor, y: torch.Tensor, batch: int = 128, prep=None) -> torch.Tensor:
    """Number of top-1 hits as a device tensor (the caller reads it once, not once per batch)."""
    was = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=y.device)
    for i in range(0, len(y), batch):
        xb = x[i:i + batch]
        correct += (model(prep(xb) if prep is not None else xb).argmax(1) == y[i:i + batch]).sum()
    model.train(was)
    return correct
    return correct / len(y)


def _params(m):
    return [p for p in m.parameters()]


class Stage2:
    def __init__(self, cfg, fed, comm: Comm, streams: Streams, device, S, G=None, client_init: dict | None = None,
                 client_opt_init: dict | None = None, logger=None):
        self.cfg, self.f, self.fed, self.comm, self.streams, self.device = cfg, cfg.fl, fed, comm, streams, device
        self.method = cfg.fl.method
        self.S = S.to(device)
        self.G = G
        if self.G is not None:
            self.G.eval()  # frozen, running BN statistics (pitfall 5)
            for p in self.G.parameters():
                p.requires_grad_(False)
        self.work = engine.clone_module(self.S)
        self.opt_S = self._new_server_opt()
        # loss scaling for fp16 on CUDA (disabled, i.e. the identity, for bf16 / fp32 and on the CPU)
        self.scaler, self.server_scaler = grad_scaler(device, cfg.precision), grad_scaler(device, cfg.precision)
        self.client_w = dict(client_init or {})  # start weights for the next round (round 1 with init=stage1, Local)
        if self.method == "local":
            for k in comm.local:
                self.client_w.setdefault(k, copy.deepcopy(self.S.state_dict()))
        self.client_opt = dict(client_opt_init or {}) if self.f.optim_state == "persist" else {}
        self.sizes = fed.sizes
        self.max_n = max(self.sizes)
        self.ipe = self.max_n // self.f.batch_size
        if self.ipe < 1:
            from tenfold.errors import ConfigError
            raise ConfigError(f"the largest client has {self.max_n} samples < fl.batch_size {self.f.batch_size}")
        self.steps = self.f.local_steps if self.f.local_steps > 0 else self.f.local_epochs * self.ipe
        if self.method == "scaffold":
            self.c_global = [torch.zeros_like(p) for p in self.S.parameters()]
            self.c_local = {k: [torch.zeros_like(p) for p in self.S.parameters()] for k in comm.local}
        self.logger = logger
        self._order_cache = None
        self.injected = parse_events(cfg.faults.fail_clients, "faults.fail_clients")
        self.delays = parse_events(cfg.faults.delay_clients, "faults.delay_clients")

    # ---- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        sd = {"S": self.S.state_dict(), "opt_S": self.opt_S.state_dict(), "client_w": self.client_w,
              "client_opt": self.client_opt}
        if self.method == "scaffold":
            sd["c_global"], sd["c_local"] = self.c_global, self.c_local
        return sd

    def load_state_dict(self, sd: dict) -> None:
        from tenfold.checkpoint import load_module_state

        load_module_state(self.S, sd["S"], "global classifier")
        self.opt_S.load_state_dict(sd["opt_S"])
        self.client_w, self.client_opt = sd["client_w"], sd["client_opt"]
        if self.method == "scaffold":
            self.c_global, self.c_local = sd["c_global"], sd["c_local"]

    # ---- one client ----------------------------------------------------------------------------------
    def _order(self, epoch: int) -> torch.Tensor:
        if self._order_cache is None or self._order_cache[0] != epoch:
            self._order_cache = (epoch, epoch_order(self.cfg.seed, "stage2", epoch, self.max_n, self.device))
        return self._order_cache[1]

    def _rows(self, t: int, k: int) -> torch.Tensor:
        """Client k's rows for local step t (only k's share is computed: O(1) in the number of clients)."""
        epoch, i = divmod(t, self.ipe)
        b = self.f.batch_size
        gidx = self._order(epoch)[i * b:(i + 1) * b]
        if self.cfg.legacy_index_folding:
            return client_batch_indices(gidx, self.sizes[:k + 1], True)[k]
        return gidx % self.sizes[k]

    def _fail_now(self, rnd: int, k: int) -> bool:
        if k in self.injected.get(rnd + 1, ()):  # rounds are 1-based in logs and config
            return True
        if self.cfg.faults.fail_prob > 0:
            g = torch.Generator().manual_seed(stream_seed(self.cfg.seed, "fault", rnd, k))
            return float(torch.rand(1, generator=g)) < self.cfg.faults.fail_prob
        return False

    def _local_acc(self, model, k: int) -> float:
        return evaluate(model, self.fed.local_test_u8[k], self.fed.local_test_y[k], self.f.eval_batch,
                        self.fed.to_float)

    def local_loss(self, W, xb: torch.Tensor, yb: torch.Tensor, counts=None, anchor=None) -> torch.Tensor:
        """The client objective of the configured method on one batch (CE; FedLC calibration; FedProx term)."""
        with autocast(self.device, self.cfg.precision):
            logits = W(xb).float()
        if counts is not None:
            logits = fedlc_logits(logits, counts, self.f.fedlc_tau)
        loss = F.cross_entropy(logits, yb)
        if anchor is not None:
            loss = loss + fedprox_term(W.parameters(), anchor, self.f.fedprox_mu)
        return loss

    def _train_client(self, rnd: int, k: int, evaluate_now: bool = False, guard: Guard | None = None) -> dict:
        """Client k's local work in round rnd, on its own RNG stream; `guard` lets the server cut it off at a
        step boundary when its deadline passes (see faults.py)."""
        if k in self.delays.get(rnd + 1, ()):
            time.sleep(self.cfg.faults.delay_s)  # injected slowness, before the client touches any state
        guard = guard or Guard()
        with guard, self.streams.use(f"client{k}"):
            return self._local_work(rnd, k, evaluate_now, guard)

    def _local_work(self, rnd: int, k: int, evaluate_now: bool, guard: Guard) -> dict:
        f, W = self.f, self.work
        start = self.client_w.get(k) if (self.method == "local" or (rnd == 0 and k in self.client_w)) else None
        W.load_state_dict(start if start is not None else self.S.state_dict())
        W.train()
        opt = torch.optim.Adam(W.parameters(), lr=f.lr, betas=(f.beta1, f.beta2))
        if k in self.client_opt:
            opt.load_state_dict(copy.deepcopy(self.client_opt[k]))  # a copy: a failed client rolls back
            for pg in opt.param_groups:
                pg["lr"], pg["betas"] = f.lr, (f.beta1, f.beta2)
        anchor = [p.detach().clone() for p in self.S.parameters()] if self.method == "fedprox" else None
        w_start = [p.detach().clone() for p in W.parameters()] if self.method == "scaffold" else None
        counts = self.fed.class_counts(k).to(self.device) if self.method == "fedlc" else None
        fail = self._fail_now(rnd, k)
        loss_sum = torch.zeros((), device=self.device)
        for s in range(self.steps):
            guard.check()
            if fail and s == min(1, self.steps - 1):
                raise ClientFailure(f"injected failure of client {k} in round {rnd + 1}")
            xb, yb = self.fed.batch(k, self._rows(rnd * self.steps + s, k))
            loss = self.local_loss(W, xb, yb, counts, anchor)
            optimizer_step(loss, opt, self.scaler)  # scaled backward only for fp16 on CUDA
            if self.method == "scaffold":
                scaffold_correct(_params(W), self.c_global, self.c_local[k], f.lr)
            loss_sum += loss.detach()
        loss_sum = float(loss_sum)  # one host read per client and round
        assert_finite(loss_sum, rnd)
        out = {"loss": loss_sum / max(self.steps, 1), "opt": opt.state_dict()}
        if evaluate_now:  # this client's own updated model on its own local test split (before aggregation)
            out["acc"] = self._local_acc(W, k)
        if self.method == "scaffold":
            out["dc"] = scaffold_control_update(self.c_global, self.c_local[k], w_start, _params(W),
                                                max(self.steps, 1), f.lr)
        return out

    # ---- one round -----------------------------------------------------------------------------------
    def participants(self, rnd: int) -> list[int]:
        k = self.comm.num_clients
        if self.f.fraction >= 1:
            return list(range(k))
        m = max(1, int(round(self.f.fraction * k)))
        g = torch.Generator().manual_seed(stream_seed(self.cfg.seed, "sample", rnd))
        return sorted(torch.randperm(k, generator=g)[:m].tolist())

    def round(self, rnd: int) -> dict:
        """Local training -> weighted aggregation -> server enhancement (fedmgd) -> implicit broadcast."""
        comm, f = self.comm, self.f
        t0 = time.perf_counter()
        chosen = set(self.participants(rnd))
        acc = {n: torch.zeros_like(v, dtype=torch.float64) for n, v in self.S.state_dict().items()}
        dc_acc = None
        if self.method == "scaffold":
            dc_acc = [torch.zeros_like(p, dtype=torch.float64) for p in self.S.parameters()]
        weight, dropped, losses, client_accs = 0.0, [], [], {}
        for k in comm.local:
            if k not in chosen:
                continue
            try:
                res = call_with_deadline(
                    lambda guard, k=k: self._train_client(rnd, k, self.eval_round(rnd), guard),
                    self.cfg.faults.client_timeout_s, f"client {k} in round {rnd + 1}")
            except ClientFailure as e:
                dropped.append(k)
                self._log_drop(rnd, k, e)
                continue
            except Exception as e:  # noqa: BLE001 - a crashing client must not stop the federation
                if type(e).__name__ == "NonFiniteLossError":
                    raise
                dropped.append(k)
                self._log_drop(rnd, k, e)
                continue
            n_k = float(self.sizes[k])
            for name, v in self.work.state_dict().items():
                acc[name] += n_k * v.double()
            weight += n_k
            losses.append(res["loss"])
            if "acc" in res:
                client_accs[k] = res["acc"]
            if f.optim_state == "persist":
                self.client_opt[k] = res["opt"]
            if self.method == "scaffold":
                for a, d, ck in zip(dc_acc, res["dc"], self.c_local[k]):
                    a += (d - ck).double()
                self.c_local[k] = res["dc"]
            if self.method == "local":
                self.client_w[k] = copy.deepcopy(self.work.state_dict())
        if rnd == 0 and self.method != "local":
            self.client_w = {}  # stage-1 start weights are used once; afterwards every client starts from S
        weight = comm.sum_float(weight)
        n_ok = int(comm.sum_float(len(losses)))
        loss = comm.sum_float(sum(losses)) / max(n_ok, 1)
        dropped_all = int(comm.sum_float(len(dropped)))
        rec = {"round": rnd + 1, "clients_ok": n_ok, "clients_dropped": dropped_all, "local_loss": loss}
        if self.eval_round(rnd):
            n_acc = comm.sum_float(len(client_accs))
            rec["client_acc_mean"] = comm.sum_float(sum(client_accs.values())) / n_acc if n_acc else None
        if self.method != "local":
            if weight > 0:
                for name in acc:
                    comm.sum_(acc[name])
                new = {n: (a / weight).round().to(v.dtype) if not v.is_floating_point() else (a / weight).to(v.dtype)
                       for (n, a), v in zip(acc.items(), self.S.state_dict().values())}
                self.S.load_state_dict(new)
            if self.method == "scaffold" and n_ok > 0:
                for c, a in zip(self.c_global, dc_acc):
                    c += (comm.sum_(a) / comm.num_clients).to(c.dtype)
            if self.method == "fedmgd" and rnd >= f.warmup_rounds and f.server_steps > 0:
                rec.update(self.server_update())
        rec["round_time_s"] = time.perf_counter() - t0
        return rec

    def eval_round(self, rnd: int) -> bool:
        return (rnd + 1) % self.f.eval_every == 0 or rnd + 1 == self.f.rounds

    def _new_server_opt(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.S.parameters(), lr=self.f.server_lr, betas=(self.f.beta1, self.f.beta2))

    def server_update(self) -> dict:
        """§2.5 step 2: server_steps filtered synthetic CE steps on the aggregated S (same on every rank)."""
        if self.f.server_optim_state == "reset":  # a fresh Adam every round (the reference persists it)
            self.opt_S = self._new_server_opt()
        kept, steps, losses = 0, 0, []
        with self.streams.use("server"), autocast(self.device, self.cfg.precision):
            for _ in range(self.f.server_steps):
                out = server_enhance_step(self.S, self.opt_S, self.G, self.fed.num_classes, self.f.gen_batch,
                                          self.cfg.model.n_z, self.device, self.f.filter, self.f.filter_eval_mode,
                                          self.server_scaler)
                kept += out["kept"]
                steps += int(out["stepped"])
                if out["loss"] is not None:
                    losses.append(float(out["loss"]))
        return {"keep_rate": kept / (self.f.server_steps * self.f.gen_batch), "server_steps_taken": steps,
                "server_loss": sum(losses) / len(losses) if losses else None}

    def _log_drop(self, rnd: int, k: int, e: Exception) -> None:
        msg = f"round {rnd + 1}: client {k} dropped from the aggregate ({type(e).__name__}: {e})"
        if self.logger is not None:
            self.logger(msg)

    def evaluate(self) -> dict:
        """Federated evaluation after a round: the global model on the global test set (`test_acc`) and on
        every client's local test split (`local_acc_mean`, the mean over clients). Local: each client's own model."""
        test = (self.fed.test_u8, self.fed.test_y, self.f.eval_batch, self.fed.to_float)
        local = self.local_accuracies()
        rec = {"local_acc_mean": sum(local) / len(local)}
        if self.method != "local":
            rec["test_acc"] = evaluate(self.S, *test)
            return rec
        # Local: mean over clients of each own model's global-test accuracy
        tot = 0.0
        for k in self.comm.local:
            self.work.load_state_dict(self.client_w[k])
            tot += evaluate(self.work, *test)
        rec["test_acc"] = self.comm.sum_float(tot) / self.comm.num_clients
        return rec

    def local_accuracies(self) -> list[float]:
        """Per client: the global model (after broadcast; Local: the client's own) on the client's local test split."""
        out = torch.zeros(self.comm.num_clients, dtype=torch.float64, device=self.device)
        for k in self.comm.local:
            m = self.S
            if self.method == "local":
                self.work.load_state_dict(self.client_w[k])
                m = self.work
            out[k] = self._local_acc(m, k)
        return [float(v) for v in self.comm.sum_(out)]
