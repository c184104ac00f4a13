"""The data-free KD loop (spec §2.7): synthesis rounds, KD on the growing pool (or on fresh generator
samples for the GAN baselines), evaluation per epoch, exact resume at round boundaries."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tenfold import checkpoint, plot, runtime, signals
from tenfold import config as config_mod
from tenfold.errors import CheckpointError, NonFiniteLossError
from tenfold.meters import MetricLogger, progress, write_json

from .augment import Normalizer
from .config import GAN_METHODS, DistillConfig
from .data import dataset, evaluate, load_teacher_cfg
from .method import kldiv
from .models import build
from .pool import ImagePool
from .synthesis import CMISynthesizer, DeepInvSynthesizer, GenerativeSynthesizer

__all__ = ["make_synthesizer", "distill", "KIND"]

KIND = "cmi-distill"


def make_synthesizer(method: str, teacher, student, num_classes, cfg_synth, normalizer, device, img_size, arch,
                     precision: str = "bf16"):
    cls = {"cmi": CMISynthesizer, "deepinversion": DeepInvSynthesizer}.get(method)
    if cls is None and method in GAN_METHODS:
        cls = GenerativeSynthesizer
    if cls is None:
        return None
    return cls(teacher, student, num_classes, cfg_synth, normalizer, device, img_size=img_size, arch=arch,
               precision=precision)


def _finite(value: float, what: str, step: int, ckpt: Path):
    if not math.isfinite(value):
        where = f"; last good checkpoint: {ckpt}" if ckpt.is_file() else ""
        raise NonFiniteLossError(f"{what} became {value} at round {step}; stopped without saving{where}. "
                                 f"Lower the learning rate (kd.lr / synth.lr_g) or check the teacher")


class Distiller:
    def __init__(self, cfg: DistillConfig, quiet: bool = False):
        self.cfg = cfg
        self.device = runtime.select_device(cfg.device)
        runtime.set_deterministic(cfg.deterministic)
        runtime.seed_everything(cfg.seed)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        config_mod.save(cfg, self.out / "config.yaml")
        self.norm = Normalizer(cfg.data.mean, cfg.data.std)
        self.teacher, self.arch, self.num_classes = load_teacher_cfg(cfg.teacher, cfg.data_root, self.device)
        test = dataset(cfg.data, cfg.data_root, train=False, num_classes=self.num_classes)
        self.test_x, self.test_y = test.tensors()
        self.student = build(cfg.student.arch, self.num_classes).to(self.device)
        self.synth = make_synthesizer(cfg.method, self.teacher, self.student, self.num_classes, cfg.synth, self.norm,
                                      self.device, cfg.data.image_size, self.arch, cfg.precision)
        self.pool = ImagePool(cfg.kd.quantize_pool)
        if cfg.kd.init_pool:
            self.pool.load_init(cfg.kd.init_pool)
        if cfg.method == "noise":  # noise-KD reference: a fixed pool of U[0,1] images
            s = cfg.data.image_size
            g = torch.Generator().manual_seed(cfg.seed + 12345)
            self.pool.add(torch.rand(cfg.kd.noise_pool, len(cfg.data.mean), s, s, generator=g))
        if cfg.method == "vanilla":  # upper bound: KD with the real training images
            self.pool.add(dataset(cfg.data, cfg.data_root, train=True, num_classes=self.num_classes).tensors()[0])
        k = cfg.kd
        self.opt = torch.optim.SGD(self.student.parameters(), lr=k.lr, momentum=k.momentum, weight_decay=k.weight_decay)
        # cosine over epochs, whatever lr_decay_milestones says in the reference (pitfall 9)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=k.epochs)
        self.rounds_per_epoch = k.ep_steps // k.kd_steps
        self.total_rounds = k.epochs * self.rounds_per_epoch
        self.round = 0
        self.best, self.last, self.history = {"top1": 0.0}, {}, []
        self.timing = {"synth_s": 0.0, "kd_s": 0.0, "synth_images": 0, "kd_images": 0}
        self.ckpt_path = self.out / "last.pt"
        self.logger = MetricLogger(self.out)
        self.quiet = quiet

    # ---- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"round": self.round, "student": self.student.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "synth": self.synth.state_dict() if self.synth else {},
                "pool": self.pool.state_dict(), "rng": runtime.rng_state(), "best": self.best, "last": self.last,
                "history": self.history, "timing": self.timing, "config": config_mod.to_dict(self.cfg)}

    def save(self) -> Path:
        return checkpoint.save(self.ckpt_path, self.state_dict(), kind=KIND)

    def resume(self, path) -> bool:
        if not path:
            return False
        if str(path) == "auto":
            if not self.ckpt_path.is_file():
                return False
            path = self.ckpt_path
        ck = checkpoint.load(path, kind=KIND)
        if ck.get("config", {}).get("method") != self.cfg.method:
            raise CheckpointError(f"{path} is a '{ck.get('config', {}).get('method')}' run, not '{self.cfg.method}'")
        checkpoint.load_module_state(self.student, ck["student"], what="student")
        try:
            self.opt.load_state_dict(ck["opt"])
            self.sched.load_state_dict(ck["sched"])
            if self.synth is not None:
                self.synth.load_state_dict(ck["synth"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: cannot restore the run ({str(e).splitlines()[0]}); "
                                  f"was it written with another configuration?") from None
        self.pool.load_state_dict(ck["pool"])
        self.round, self.best, self.last = ck["round"], ck["best"], ck["last"]
        self.history, self.timing = ck["history"], ck["timing"]
        runtime.set_rng_state(ck["rng"])
        # records logged after this checkpoint (a run killed before its next save) are about to be logged again
        self.logger.truncate_after(self.round)
        return True

    # ---- one round -----------------------------------------------------------------------------
    def _kd_batches(self):
        k = self.cfg.kd
        if self.cfg.method in GAN_METHODS:
            return (self.synth.sample(k.batch_size) for _ in range(k.kd_steps))
        return self.pool.batches(k.kd_steps, k.batch_size, self.norm, self.device)

    def _kd_loss(self, s, t):
        if self.cfg.kd.loss == "l1":
            return F.l1_loss(s, t)
        return kldiv(s, t, self.cfg.kd.T)

    def run_round(self) -> dict:
        rec = {}
        if self.synth is not None:
            t0 = time.perf_counter()
            res = self.synth.synthesize()
            self.timing["synth_s"] += time.perf_counter() - t0
            if "syn_loss" in res:
                _finite(res["syn_loss"], "synthesis loss", self.round + 1, self.ckpt_path)
            if res.get("images") is not None:
                self.pool.add(res["images"])
                self.timing["synth_images"] += res["images"].shape[0]
                self.last_images = res["images"]
            elif res.get("n_images"):  # GAN baselines: generator samples seen during its updates
                self.timing["synth_images"] += res["n_images"]
            rec.update({k: v for k, v in res.items() if k.startswith("syn_")})
        t0 = time.perf_counter()
        self.student.train()
        total = 0.0
        n = 0
        for x in self._kd_batches():
            with torch.no_grad(), runtime.autocast(self.device, self.cfg.precision):
                t = self.teacher(x)
            with runtime.autocast(self.device, self.cfg.precision):
                s = self.student(x)
            loss = self._kd_loss(s.float(), t.float())
            _finite(float(loss.detach()), "KD loss", self.round + 1, self.ckpt_path)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += float(loss.detach())
            n += 1
            self.timing["kd_images"] += x.shape[0]
        self.timing["kd_s"] += time.perf_counter() - t0
        rec["kd_loss"] = total / max(n, 1)
        return rec

    def run(self, stop_after_round: int | None = None) -> dict:
        end = self.total_rounds if stop_after_round is None else min(stop_after_round, self.total_rounds)
        every = self.cfg.ckpt_every_rounds or self.rounds_per_epoch
        bar = progress(total=self.total_rounds, initial=self.round, desc=f"cmi-distill[{self.cfg.method}]",
                       disable=True if self.quiet else None)
        # SIGTERM/SIGUSR1 (tenfold.signals): checkpoint at the next round boundary, the unit of exact resume
        with signals.polling():
            while self.round < end:
                self._round(bar)
                periodic = self.round % every == 0 or self.round == end
                if periodic:
                    self.save()
                signals.check((lambda: self.ckpt_path) if periodic else self.save,
                              f"round {self.round}/{self.total_rounds}")
        bar.close()
        return self.finish() if self.round >= self.total_rounds else {"round": self.round}

    def _round(self, bar) -> None:
        """One synthesis + KD round, its evaluation at an epoch end, its metrics record."""
        rec = self.run_round()
        self.round += 1
        bar.update(1)
        if self.round % self.rounds_per_epoch == 0:
            epoch = self.round // self.rounds_per_epoch
            acc = evaluate(self.student, self.test_x, self.test_y, self.norm, self.device,
                           self.cfg.data.eval_batch_size)
            self.sched.step()
            self.last = {"epoch": epoch, **acc}
            if acc["top1"] > self.best["top1"]:
                self.best = {"epoch": epoch, **acc}
                torch.save(self.student.state_dict(), self.out / "student_best.pt")
            self.history.append(self.last)
            rec.update(epoch=epoch, top1=acc["top1"], top5=acc["top5"], best_top1=self.best["top1"],
                       lr=self.opt.param_groups[0]["lr"], pool=len(self.pool))
            bar.set_postfix({"top1": f"{acc['top1']:.2f}", "best": f"{self.best['top1']:.2f}"}, refresh=False)
            # named by the round, which metrics.jsonl logs as its step (as onestage_gan's samples/step_<N>.png)
            self._grid(self.out / "samples" / f"step_{self.round:07d}.png")
        self.logger.log(self.round, **rec)

    def _grid(self, path: Path) -> None:
        """The latest synthetic batch as a picture: the round's inverted images (CMI, DeepInversion), else the
        generator on fixed noise (GAN baselines); methods without a synthesizer have none."""
        imgs = getattr(self, "last_images", None)
        if imgs is None and isinstance(self.synth, GenerativeSynthesizer):
            imgs = self.synth.preview(64)
        if imgs is None and self.synth is not None and len(self.pool):
            imgs = self.pool.tensor()[-64:]  # resumed with no round left to run: the pool's newest images
        if imgs is not None:
            plot.save_grid(imgs[:64], path, nrow=8)

    def finish(self) -> dict:
        torch.save(self.student.state_dict(), self.out / "student_last.pt")
        self._grid(self.out / "synthetic_grid.png")
        if self.cfg.export_pool and len(self.pool):
            self.pool.export(self.out / "pool.npz")
        t = self.timing
        summary = {"method": self.cfg.method, "best_top1": self.best["top1"], "best_epoch": self.best.get("epoch"),
                   "last_top1": self.last.get("top1"), "last_top5": self.last.get("top5"),
                   "rounds": self.round, "pool_size": len(self.pool), "synth_seconds": t["synth_s"],
                   "kd_seconds": t["kd_s"],
                   "synth_images_per_s": t["synth_images"] / t["synth_s"] if t["synth_s"] else None,
                   "kd_images_per_s": t["kd_images"] / t["kd_s"] if t["kd_s"] else None,
                   "student": self.cfg.student.arch, "teacher": self.arch}
        if self.cfg.eval_teacher:
            summary["teacher_top1"] = evaluate(self.teacher, self.test_x, self.test_y, self.norm, self.device,
                                               self.cfg.data.eval_batch_size)["top1"]
        write_json(self.out / "summary.json", summary)
        if not self.quiet:
            print(f"Best: {summary['best_top1']:.2f}  Last: {summary['last_top1']:.2f}  ({self.cfg.method}, "
                  f"{self.round} rounds, pool {len(self.pool)})")
        return summary


def distill(cfg: DistillConfig, resume=None, stop_after_round: int | None = None, quiet: bool = False) -> dict:
    d = Distiller(cfg, quiet=quiet)
    d.resume(resume)
    return d.run(stop_after_round)
