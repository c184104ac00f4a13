"""A readable step loop shared by the step-based methods (SSL, KD, GAN).

    trainer = Trainer(run_dir, kind="mgc", config=cfg, stateful={"model": m, "opt": opt, "sched": s},
                      total_steps=1000, batches=lambda epoch, start: make_loader(ds, 64, seed=cfg.seed,
                      epoch=epoch, start_batch=start))
    trainer.maybe_resume(cfg_resume)      # path, run dir, "auto" or None
    trainer.run(step_fn)                  # step_fn(batch, loop_state) -> {"loss": ..., ...}

It owns epochs, progress, JSONL logging, atomic checkpoints (`<run_dir>/last.pt`), exact resume
(model/optimizer/scheduler states, RNG states, data position) and the non-finite-loss guard (stop,
leave the last good checkpoint untouched). Methods with unusual control flow (federated rounds,
synthesis rounds, grafting stages) use the same pieces directly.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoint, distributed, runtime, signals
from . import config as config_mod
from .errors import CheckpointError, NonFiniteLossError
from .meters import MetricLogger, PlainProgress, Throughput, progress

__all__ = ["LoopState", "Trainer", "assert_finite"]


@dataclasses.dataclass
class LoopState:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already consumed
    elapsed_s: float = 0.0  # wall time of the loop over all runs of this run directory (cumulative on resume)


def assert_finite(loss: torch.Tensor | float, step: int, last_good: str | os.PathLike | None = None) -> None:
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(value):
        where = f"; last good checkpoint: {last_good}" if last_good else ""
        raise NonFiniteLossError(f"loss became {value} at step {step}; stopped without saving{where}. "
                                 f"Lower the learning rate or check the inputs")


class Trainer:
    def __init__(self, run_dir: str | os.PathLike, *, kind: str, config: Any, stateful: dict[str, Any],
                 total_steps: int, batches: Callable[[int, int], Iterable], ckpt_every: int = 0,
                 log_every: int = 10, desc: str = "", batch_size_of: Callable[[Any], int] | None = None,
                 extra_state: Callable[[], dict] | None = None,
                 load_extra_state: Callable[[dict], None] | None = None):
        self.run_dir = Path(run_dir)
        self.kind = kind
        self.config = config
        self.stateful = stateful
        self.total_steps = int(total_steps)
        self.batches = batches
        self.ckpt_every = int(ckpt_every)
        self.log_every = max(int(log_every), 1)
        self.desc = desc or kind
        self.batch_size_of = batch_size_of or _batch_size
        self.extra_state = extra_state
        self.load_extra_state = load_extra_state
        self.state = LoopState()
        self.logger = MetricLogger(self.run_dir)
        self.ckpt_path = self.run_dir / "last.pt"

    # ---- checkpoints -------------------------------------------------------------------------
    @property
    def elapsed_s(self) -> float:
        """Loop wall time, cumulative over interruptions and resumes."""
        t0 = getattr(self, "_t0", None)
        return self.state.elapsed_s + (time.perf_counter() - t0 if t0 is not None else 0.0)

    def state_dict(self) -> dict:
        out = {
            "loop": {**dataclasses.asdict(self.state), "elapsed_s": self.elapsed_s},
            "rng": runtime.rng_state(),
            "config": config_mod.to_dict(self.config) if dataclasses.is_dataclass(self.config) else self.config,
            "state": {k: distributed.unwrap(v).state_dict() if isinstance(v, nn.Module) else v.state_dict()
                      for k, v in self.stateful.items()},
        }
        if self.extra_state is not None:
            out["extra"] = self.extra_state()
        return out

    def save(self, path: str | os.PathLike | None = None) -> Path | None:
        if not distributed.is_main():
            return None
        return checkpoint.save(path or self.ckpt_path, self.state_dict(), kind=self.kind)

    def load(self, path: str | os.PathLike) -> None:
        ck = checkpoint.load(path, kind=self.kind)
        missing = [k for k in self.stateful if k not in ck.get("state", {})]
        if missing:
            raise CheckpointError(f"{path}: no state for {missing} (written by a different configuration?)")
        changed = _config_changed(ck.get("config"), self.config)
        for k, obj in self.stateful.items():
            sd = ck["state"][k]
            try:
                if isinstance(obj, nn.Module):
                    checkpoint.load_module_state(distributed.unwrap(obj), sd, what=k)
                elif changed:
                    # the CLI accepted a config change (tenfold.rundir): hyperparameters built from the new
                    # config (lr, weight decay, betas, ...) must win over the checkpoint's, with the optimizer's
                    # moments and the schedule position restored
                    checkpoint.load_keeping_hparams(obj, sd)
                else:
                    obj.load_state_dict(sd)
            except CheckpointError:
                raise
            except (RuntimeError, ValueError, KeyError) as e:
                raise CheckpointError(f"{path}: cannot restore '{k}': {str(e).splitlines()[0]}") from None
        if self.load_extra_state is not None and "extra" in ck:
            self.load_extra_state(ck["extra"])
        self.state = LoopState(**ck["loop"])
        runtime.set_rng_state(ck["rng"])
        # the records logged after this checkpoint belong to the interrupted attempt: drop them
        self.logger.truncate_after(self.state.step)

    def maybe_resume(self, resume: str | os.PathLike | None) -> bool:
        """`resume`: a checkpoint path, a run directory, 'auto' (this run's last.pt if present) or None."""
        if not resume:
            return False
        if str(resume) == "auto":
            if not self.ckpt_path.is_file():
                return False
            resume = self.ckpt_path
        self.load(resume)
        return True

    # ---- the loop ----------------------------------------------------------------------------
    def run(self, step_fn: Callable[[Any, LoopState], dict], stop_at: int | None = None,
            on_step_end: Callable[[LoopState, dict], None] | None = None) -> LoopState:
        """Run until total_steps (or `stop_at`, which simulates an interruption and checkpoints)."""
        end = self.total_steps if stop_at is None else min(stop_at, self.total_steps)
        bar = progress(total=self.total_steps, initial=self.state.step, desc=self.desc)
        speed = Throughput()
        last = {}
        self._t0 = time.perf_counter()
        with signals.polling():
            self._loop(step_fn, end, bar, speed, last, on_step_end)
        self.save()
        self.state.elapsed_s = self.elapsed_s
        self._t0 = None
        bar.close()
        self.samples_per_s = speed.rate
        return self.state

    def _loop(self, step_fn, end, bar, speed, last, on_step_end) -> None:
        self.last_metrics = last
        while self.state.step < end:
            produced = False
            for batch in self.batches(self.state.epoch, self.state.batch_in_epoch):
                produced = True
                metrics = step_fn(batch, self.state) or {}
                if "loss" in metrics:
                    assert_finite(metrics["loss"], self.state.step + 1,
                                  self.ckpt_path if self.ckpt_path.is_file() else None)
                self.state.step += 1
                self.state.batch_in_epoch += 1
                speed.update(self.batch_size_of(batch))
                bar.update(1)
                last = {k: (float(v.detach()) if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}
                self.last_metrics = last
                if self.state.step % self.log_every == 0 or self.state.step == end:
                    rec = self.logger.log(self.state.step, epoch=self.state.epoch, samples_per_s=speed.rate, **last)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in rec.items()
                                     if isinstance(v, float) and k not in ("time",)}, refresh=False)
                if on_step_end is not None:
                    logged = self.logger.count
                    on_step_end(self.state, last)
                    if self.logger.count != logged and isinstance(bar, PlainProgress):
                        # the callback logged an evaluation: show it in a progress line at once
                        bar.set_postfix({**bar.postfix, **{k: v for k, v in self.logger.last.items()
                                                          if k not in ("time", "step")}})
                        bar.line("evaluation")
                if self.ckpt_every and self.state.step % self.ckpt_every == 0:
                    self.save()
                signals.check(self.save, f"step {self.state.step}/{self.total_steps}")
                if self.state.step >= end:
                    break
            else:
                if not produced and self.state.batch_in_epoch == 0:
                    raise ValueError("the data loader produced no batch: data set smaller than one batch?")
                self.state.epoch += 1
                self.state.batch_in_epoch = 0


def _config_changed(old, new) -> bool:
    if not isinstance(old, dict) or not dataclasses.is_dataclass(new):
        return False
    from .rundir import config_changes

    safe, unsafe = config_changes(old, config_mod.to_dict(new), getattr(type(new), "RESUME_SAFE", ()))
    return bool(unsafe)


def _batch_size(batch) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_size(batch[0])
    if isinstance(batch, dict) and batch:
        return _batch_size(next(iter(batch.values())))
    return 1
