"""Stage 1, the generative adversarial stage (§2.4): one global conditional G on the server, a private
D_k and C_k per client; every generated sample is routed to the client with the highest realistic score."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from tenfold.loop import assert_finite

from . import engine
from .engine import Comm, Streams, stream_seed
from .faults import ClientFailure, Guard, call_with_deadline, parse_events
from .method import (
    client_batch_indices,
    client_generator_loss,
    discriminator_loss,
    gan_lr_multiplier,
    realistic_scores,
    route,
)

__all__ = ["Stage1", "epoch_order"]


def epoch_order(seed: int, stage: str, epoch: int, max_n: int, device) -> torch.Tensor:
    """The loader order of an epoch over [0, max_k n_k): a function of (seed, stage, epoch) only."""
    g = torch.Generator().manual_seed(stream_seed(seed, stage, "order", epoch))
    return torch.randperm(max_n, generator=g).to(device)


def _adam(params, lr, cfg_like):
    return torch.optim.Adam(params, lr=lr, betas=(cfg_like.beta1, cfg_like.beta2))


class Stage1:
    """Holds G, opt_G and the local clients' D_k, C_k and their optimizers; `iteration(t)` runs one step."""

    def __init__(self, cfg, fed, comm: Comm, streams: Streams, device, make_g, make_d, make_c, S_init, logger=None):
        self.cfg, self.g, self.fed, self.comm, self.streams, self.device = cfg, cfg.gan, fed, comm, streams, device
        self.nc, self.n_z = fed.num_classes, cfg.model.n_z
        with streams.use("init_G"):
            self.G = make_g().to(device)
        self.D, self.C, self.opt_D, self.opt_C = {}, {}, {}, {}
        for k in comm.local:
            with streams.use(f"init_D{k}"):
                self.D[k] = make_d().to(device)
            self.C[k] = engine.clone_module(S_init).to(device)  # every C_k starts identical to S (pitfall 13)
            self.opt_D[k] = _adam(self.D[k].parameters(), self.g.lr_d, self.g)
            self.opt_C[k] = _adam(self.C[k].parameters(), self.g.lr_c, self.g)
        self.opt_G = _adam(self.G.parameters(), self.g.lr_g, self.g)
        self.sizes = fed.sizes
        self.max_n = max(self.sizes)
        self.batch = self.g.batch_size
        self.iters_per_epoch = self.max_n // self.batch
        if self.iters_per_epoch < 1:
            from tenfold.errors import ConfigError
            raise ConfigError(f"the largest client has {self.max_n} samples < gan.batch_size {self.batch}; "
                              f"lower gan.batch_size")
        self.total_iters = self.g.iters if self.g.iters > 0 else self.g.epochs * self.iters_per_epoch
        self.route_counts = torch.zeros(comm.num_clients, self.nc, dtype=torch.long)
        self._order_cache: tuple[int, torch.Tensor] | None = None
        self.logger = logger
        self.fails = parse_events(cfg.faults.stage1_fail_clients, "faults.stage1_fail_clients")
        self.delays = parse_events(cfg.faults.stage1_delay_clients, "faults.stage1_delay_clients")

    def _order(self, epoch: int) -> torch.Tensor:
        if self._order_cache is None or self._order_cache[0] != epoch:
            self._order_cache = (epoch, epoch_order(self.cfg.seed, "stage1", epoch, self.max_n, self.device))
        return self._order_cache[1]

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "opt_G": self.opt_G.state_dict(),
                "D": {k: m.state_dict() for k, m in self.D.items()},
                "C": {k: m.state_dict() for k, m in self.C.items()},
                "opt_D": {k: o.state_dict() for k, o in self.opt_D.items()},
                "opt_C": {k: o.state_dict() for k, o in self.opt_C.items()}, "route_counts": self.route_counts}

    def load_state_dict(self, sd: dict) -> None:
        from tenfold.checkpoint import load_module_state

        load_module_state(self.G, sd["G"], "generator")
        self.opt_G.load_state_dict(sd["opt_G"])
        for k in self.comm.local:
            load_module_state(self.D[k], sd["D"][k], f"discriminator {k}")
            load_module_state(self.C[k], sd["C"][k], f"classifier {k}")
            self.opt_D[k].load_state_dict(sd["opt_D"][k])
            self.opt_C[k].load_state_dict(sd["opt_C"][k])
        self.route_counts = sd["route_counts"].clone()

    def sample_fake(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(n, self.n_z, device=self.device)
        y = torch.randint(0, self.nc, (n,), device=self.device)
        return self.G(z, F.one_hot(y, self.nc).float()), y

    def _client_step(self, guard, k: int, rows_k, fake, y_fake, m: float, t: int, keep_graph: bool = False) -> dict:
        """Client k's share of iteration t: C step, D step, then the realistic scores of the shared fake batch.
        With g_graph=selected the scores come from a forward without a graph (the RNG position before it is
        kept, so the routed re-forward reproduces its dropout mask); with g_graph=all (or keep_graph, the Flower
        client's one-exchange reply) the graph is kept."""
        g = self.g
        if k in self.delays.get(t + 1, ()):
            time.sleep(self.cfg.faults.delay_s)  # injected slowness, before the client touches any state
        with guard, self.streams.use(f"client{k}"):
            if k in self.fails.get(t + 1, ()):
                raise ClientFailure(f"injected failure of client {k} in iteration {t + 1}")
            D, C = self.D[k], self.C[k]
            for pg in self.opt_D[k].param_groups:
                pg["lr"] = g.lr_d * m
            xr, yr = self.fed.batch(k, rows_k)
            C.train()
            loss_c = F.cross_entropy(C(xr), yr)
            self.opt_C[k].zero_grad(set_to_none=True)
            loss_c.backward()
            self.opt_C[k].step()
            guard.check()
            loss_d, _ = discriminator_loss(D, xr, fake, g.lambda_d, g.lambda_reg)
            self.opt_D[k].zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_D[k].step()
            guard.check()
            snap = self.streams.snapshot()
            if g.scores_in_eval_mode:
                C.eval()
            if g.g_graph == "all" or keep_graph:  # one forward gives both the score and this client's share of L_G
                x_in = fake.clone().requires_grad_(True)
                d_k, c_k = D(x_in), C(x_in)
                graph = (x_in, d_k, c_k)
            else:
                with torch.no_grad():
                    d_k, c_k = D(fake), C(fake)
                graph = None
            C.train()
            return {"score": realistic_scores(d_k, c_k, y_fake), "graph": graph, "snap": snap,
                    "lc": loss_c.detach(), "ld": loss_d.detach()}  # device tensors: one host read per iteration

    def _client_grad(self, guard, k: int, res: dict, fake, y_fake, mask) -> tuple[torch.Tensor, float]:
        """dL_G-share/dx_hat from client k, for the samples routed to it (normalised by the full batch)."""
        with guard, self.streams.use(f"client{k}"):
            if res["graph"] is not None:
                x_in, d_k, c_k = res["graph"]
                share = client_generator_loss(d_k, c_k, y_fake, mask, self.batch)
                (gx,) = torch.autograd.grad(share, x_in)  # only x_hat's gradient leaves the client
                return gx, share.detach()
            D, C = self.D[k], self.C[k]
            after = self.streams.snapshot()
            self.streams.restore(res["snap"])  # the score pass's dropout mask, drawn again
            if self.g.scores_in_eval_mode:
                C.eval()
            x_c = fake.clone().requires_grad_(True)  # C on the whole batch: the mask is drawn per batch
            c_k = C(x_c)
            C.train()
            self.streams.restore(after)
            idx = mask.nonzero().squeeze(1)
            x_d = fake[idx].clone().requires_grad_(True)  # D couples no samples: only the routed rows
            d_k = D(x_d).reshape(-1)
            share = (F.binary_cross_entropy(d_k, torch.ones_like(d_k), reduction="sum")
                     + F.cross_entropy(c_k[idx], y_fake[idx], reduction="sum")) / self.batch
            gc, gd = torch.autograd.grad(share, (x_c, x_d))
            gc[idx] += gd
            return gc, share.detach()

    def _dropped(self, t: int, k: int, e: Exception) -> None:
        if type(e).__name__ == "NonFiniteLossError":
            raise e
        if self.logger is not None:
            self.logger(f"stage 1 iteration {t + 1}: client {k} left out ({type(e).__name__}: {e})")

    def begin(self, t: int):
        """The server's start of iteration t: LR schedule, the loader order's batch, and one fake batch from G
        (train mode, the server's RNG stream). Returns (x_fake with graph, y_fake, lr multiplier, epoch, gidx)."""
        g = self.g
        epoch, i = divmod(t, self.iters_per_epoch)
        m = gan_lr_multiplier(epoch, g.niter, g.niter_decay)  # G and D_k only; C_k keep a constant LR
        for pg in self.opt_G.param_groups:
            pg["lr"] = g.lr_g * m
        gidx = self._order(epoch)[i * self.batch:(i + 1) * self.batch]
        with self.streams.use("server"):
            self.G.train()  # BatchNorm on batch statistics in Stage 1 (pitfall 5)
            x_fake, y_fake = self.sample_fake(self.batch)
        return x_fake, y_fake, m, epoch, gidx

    def step_g(self, x_fake: torch.Tensor, grad_x: torch.Tensor) -> None:
        """The server's G step from the summed routed image gradient dL_G/dx_hat."""
        self.opt_G.zero_grad(set_to_none=True)
        x_fake.backward(grad_x)
        self.opt_G.step()

    def count_routes(self, k_star: torch.Tensor, y_fake: torch.Tensor) -> None:
        k_cpu = k_star.cpu()
        self.route_counts.index_put_((k_cpu, y_fake.cpu()), torch.ones_like(k_cpu), accumulate=True)

    def client_reply(self, k: int, rows_k, fake, y_fake, m: float, t: int) -> dict:
        """Client k's whole share of iteration t in one exchange (the Flower path): its C and D steps on its
        private batch, then, from one forward of the shared fake batch, its realistic scores (B), the per-sample
        routed-loss terms l_b = BCE(D_k(x_b), 1) + CE(C_k(x_b), y_b) (B) and d(sum_b l_b / B)/dx_hat (B x image).
        D_k and C_k couple no samples (no BatchNorm; dropout per element), so row b of that gradient is exactly
        what client k would return for sample b if b were routed to it: the server takes, for every b, the row
        of the client it routes b to. The RNG stream moves as in `_client_step` + `_client_grad` (one C forward)."""
        res = self._client_step(Guard(), k, rows_k, fake, y_fake, m, t, keep_graph=True)
        with self.streams.use(f"client{k}"):
            x_in, d_k, c_k = res["graph"]
            d_k = d_k.reshape(-1)
            per = (F.binary_cross_entropy(d_k, torch.ones_like(d_k), reduction="none")
                   + F.cross_entropy(c_k, y_fake, reduction="none"))
            (gx,) = torch.autograd.grad(per.sum() / self.batch, x_in)
        return {"score": res["score"], "loss_g": per.detach(), "grad": gx, "lc": res["lc"], "ld": res["ld"]}

    def iteration(self, t: int) -> dict:
        """Generate once, then per client: C step, D step, scores; then the routed G step (§2.4 order).
        A client that fails or misses the deadline is left out of this iteration's routing."""
        comm = self.comm
        timeout = self.cfg.faults.stage1_timeout_s
        x_fake, y_fake, m, epoch, gidx = self.begin(t)
        rows = client_batch_indices(gidx, self.sizes, self.cfg.legacy_index_folding)
        fake = x_fake.detach()
        res: dict[int, dict] = {}
        for k in comm.local:
            try:
                res[k] = call_with_deadline(
                    lambda guard, k=k: self._client_step(guard, k, rows[k], fake, y_fake, m, t), timeout, f"client {k}")
            except Exception as e:  # noqa: BLE001 - a failing client must not stop the federation
                self._dropped(t, k, e)
        one = torch.ones((), device=self.device)
        present = comm.stack({k: one for k in res}, one) > 0
        n_present = int(present.sum())
        all_scores = comm.stack({k: r["score"] for k, r in res.items()}, torch.zeros(self.batch, device=self.device))
        all_scores = all_scores.masked_fill(~present.unsqueeze(1), float("-inf"))
        zero = torch.zeros((), device=self.device)
        lc = comm.sum_float(float(sum((r["lc"] for r in res.values()), zero)))
        ld = comm.sum_float(float(sum((r["ld"] for r in res.values()), zero)))
        assert_finite(lc + ld, t)  # a NaN D/C would otherwise surface only as unroutable scores
        out = {"loss_G": None, "loss_C": lc / n_present if n_present else None,
               "loss_D": ld / n_present if n_present else None, "lr_mult": m,
               "epoch": epoch, "clients_absent": comm.num_clients - n_present}
        if n_present == 0:
            return out  # nobody answered: no generator step this iteration
        k_star = route(all_scores)
        grads, lg = {}, zero
        for k, r in res.items():
            mask = k_star == k
            if not bool(mask.any()):
                continue  # no routed sample: a zero gradient, nothing to compute
            try:
                grads[k], share = call_with_deadline(
                    lambda guard, k=k, r=r, mask=mask: self._client_grad(guard, k, r, fake, y_fake, mask),
                    timeout, f"client {k}")
                lg += share
            except Exception as e:  # noqa: BLE001
                self._dropped(t, k, e)  # its routed samples give no gradient this iteration
        res.clear()  # frees the kept graphs (g_graph=all) before G's backward
        grad_x = comm.stack(grads, fake).sum(0)
        self.step_g(x_fake, grad_x)
        lg = comm.sum_float(float(lg))
        assert_finite(lg, t)
        self.count_routes(k_star, y_fake)
        out["loss_G"] = lg
        return out

    @torch.no_grad()
    def label_fidelity(self, judge, n: int = 1000) -> float:
        """Fraction of G(z, y) (eval mode) that an independent classifier labels y."""
        self.G.eval()
        x, y = self.sample_fake(n)
        judge.eval()
        acc = float((judge(x).argmax(1) == y).float().mean())
        return acc

    def routing_owner_agreement(self) -> float:
        """Fraction of classes whose most-selected client is the client owning most of that class."""
        owners = torch.stack([self.fed.class_counts(k) for k in range(self.comm.num_clients)]).argmax(0)
        picked = self.route_counts.argmax(0)
        return float((owners == picked).float().mean())


def total_stage1_iters(g, sizes) -> int:
    ipe = max(sizes) // g.batch_size
    return g.iters if g.iters > 0 else g.epochs * ipe

