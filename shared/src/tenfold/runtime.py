"""Device choice, mixed precision, seeding and RNG state capture."""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from .errors import ConfigError

__all__ = ["select_device", "autocast", "grad_scaler", "optimizer_step", "PRECISIONS", "num_threads", "seed_everything",
           "set_deterministic", "rng_state", "set_rng_state"]


def select_device(pref: str | torch.device | None = "auto") -> torch.device:
    """'auto' picks cuda > mps > cpu; an explicit device that is not available is an error."""
    if isinstance(pref, torch.device):
        return pref
    pref = (pref or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", local % max(torch.cuda.device_count(), 1))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(pref)
    except RuntimeError:
        raise ConfigError(f"device '{pref}' is not a device name; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{pref}' requested but CUDA is not available; use device=auto or cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device '{pref}' requested but MPS is not available; use device=auto or cpu")
    return dev


PRECISIONS = ("bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    return precision


def autocast(device: torch.device, precision: str | bool = "bf16", enabled: bool = True):
    """Autocast to `precision` (bf16 | fp16) on CUDA; a null context for fp32 and for every other device (CPU bf16
    is slower there and changes numerics). `autocast(device, cfg.amp)` (a bool second argument, the older form)
    still means bf16 when true and fp32 when false."""
    if isinstance(precision, bool):
        enabled, precision = enabled and precision, "bf16"
    _check_precision(precision)
    if enabled and precision != "fp32" and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=_DTYPES[precision])
    return contextlib.nullcontext()


def grad_scaler(device: torch.device, precision: str = "bf16") -> torch.amp.GradScaler:
    """Loss scaler for fp16 on CUDA; a disabled (pass-through) scaler otherwise, so training loops call
    scale/step/update unconditionally. bf16 has fp32's exponent range and needs no scaling."""
    on = _check_precision(precision) == "fp16" and torch.device(device).type == "cuda"
    return torch.amp.GradScaler("cuda" if on else "cpu", enabled=on)


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None,
                   before_step=None) -> None:
    """zero_grad, backward, step: the update of every training loop. With an enabled GradScaler (fp16 on CUDA)
    the backward is scaled and the gradients are unscaled before `before_step` (e.g. clipping), so a clip sees
    the true gradients and the scaler skips steps with inf/NaN; without one (None, or disabled: bf16, fp32, CPU)
    it is the plain calls, bit for bit."""
    opt.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        if before_step is not None:
            scaler.unscale_(opt)
            before_step()
        scaler.step(opt)
        scaler.update()
        return
    loss.backward()
    if before_step is not None:
        before_step()
    opt.step()


@contextlib.contextmanager
def num_threads(n: int):
    """Run the block with `n` intra-op CPU threads, restoring the previous count after. Real-data tests use one
    thread: CPU time then measures work rather than OpenMP spinning, and float reductions (hence calibrated
    accuracies) do not depend on the machine's core count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def set_deterministic(flag: bool) -> None:
    torch.backends.cudnn.deterministic = flag
    torch.backends.cudnn.benchmark = not flag
    if flag:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(flag, warn_only=True)


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
