"""Run-directory safety and resume bookkeeping, shared by every training CLI.

- An --out that already holds a run is never overwritten: without --resume the CLI refuses; `--overwrite`
  moves the old run aside to `<out>.old-<timestamp>` (nothing is deleted).
- `--resume` with nothing to resume is an error; `--resume-if-exists` (for requeue scripts) resumes when a
  checkpoint is there and starts fresh when --out is empty or absent.
- On resume the checkpoint's config is compared with the requested one. Keys whose change takes effect on
  resume (RESUME_SAFE, extended by a config class's `RESUME_SAFE` attribute) are allowed and recorded in
  config.yaml's history; any other difference stops with `key: old -> new` unless `--accept-config-change`.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import os
import time
from pathlib import Path
from typing import Any

import yaml

from . import config as config_mod
from .errors import ConfigError

__all__ = ["holds_run", "find_checkpoint", "prepare", "move_aside", "config_changes", "RESUME_SAFE",
           "HISTORY_PREFIX", "record_history"]

# Files whose presence means "a run lives here" (besides checkpoints). config.yaml alone is not one: a start
# that failed on bad input writes it and nothing else, and re-running with the input fixed must work.
RUN_FILES = ("metrics.jsonl", "summary.json", "last.pt")

# Dotted-key patterns (fnmatch on the full key and on its last part) whose change takes effect on resume.
RESUME_SAFE = (
    "out", "device", "data_root", "precision", "deterministic",
    "steps", "max_steps", "total_steps", "epochs", "max_epochs", "iters", "max_iters", "rounds",
    "*_every", "*every_steps", "log_*", "ckpt_*", "save_*", "checkpoint_every",
    "eval", "eval.*", "eval_*", "monitor", "monitor.*", "knn_*", "final_eval", "num_workers",
)

HISTORY_PREFIX = "# history: "


def holds_run(out: str | os.PathLike) -> bool:
    d = Path(out)
    if not d.is_dir():
        return False
    if any((d / f).exists() for f in RUN_FILES):
        return True
    # not any *.pt: users keep teachers and inputs beside their runs
    return any(d.glob("last.rank*.pt")) or any(d.glob("*/last.pt")) or any(d.glob("*/summary.json"))


def find_checkpoint(out: str | os.PathLike) -> Path | None:
    """<out>/last.pt, a per-rank last.rank<k>.pt, <out>/<seed>/last.pt (multi-seed runs), or a finished model of
    a zoo (<out>/models/*.pt, depara)."""
    d = Path(out)
    for pattern in ("last.pt", "last.rank*.pt", "*/last.pt", "*/*/last.pt", "models/*.pt"):
        found = sorted(d.glob(pattern))
        if found:
            return found[0]
    return None


def move_aside(out: str | os.PathLike) -> Path:
    d = Path(out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = d.with_name(f"{d.name}.old-{stamp}")
    n = 1
    while dest.exists():
        dest = d.with_name(f"{d.name}.old-{stamp}-{n}")
        n += 1
    os.replace(d, dest)
    return dest


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _safe(key: str, patterns) -> bool:
    last = key.rsplit(".", 1)[-1]
    return any(fnmatch.fnmatchcase(key, p) or fnmatch.fnmatchcase(last, p) for p in patterns)


def config_changes(old: dict, new: dict, extra_safe=()) -> tuple[list[str], list[str]]:
    """(safe, unsafe) differences between two config mappings, each 'key: old -> new'."""
    fo, fn = _flat(old or {}), _flat(new or {})
    patterns = tuple(RESUME_SAFE) + tuple(extra_safe)
    safe, unsafe = [], []
    for k in sorted(set(fo) | set(fn)):
        a, b = fo.get(k, "<unset>"), fn.get(k, "<unset>")
        if _norm(a) == _norm(b):
            continue
        (safe if _safe(k, patterns) else unsafe).append(f"{k}: {a} -> {b}")
    return safe, unsafe


def _norm(v):
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _checkpoint_config(path: Path) -> dict | None:
    """The config a checkpoint was written with (from the checkpoint, else the run's config.yaml)."""
    cfg_yaml = path.parent / "config.yaml"
    try:
        from . import checkpoint

        ck = checkpoint.load(path)
    except Exception:  # corrupt or foreign: the package's own loader reports it in its own words
        return None
    if isinstance(ck.get("config"), dict):
        return ck["config"]
    if cfg_yaml.is_file():
        try:
            return yaml.safe_load(cfg_yaml.read_text()) or {}
        except yaml.YAMLError:
            return None
    return None


def record_history(out: str | os.PathLike, line: str) -> None:
    """Keep a comment history at the top of config.yaml (comments keep the file loadable as --config);
    tenfold.config.save preserves these lines when the run rewrites config.yaml."""
    p = Path(out) / "config.yaml"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    text = p.read_text() if p.is_file() else ""
    head = [ln for ln in text.splitlines() if ln.startswith(HISTORY_PREFIX)]
    body = [ln for ln in text.splitlines() if not ln.startswith(HISTORY_PREFIX)]
    head.append(f"{HISTORY_PREFIX}{stamp} {line}")
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("\n".join(head + body) + "\n")
    os.replace(tmp, p)


def prepare(cfg, resume: str | None, *, overwrite: bool = False, if_exists: bool = False,
            accept_change: bool = False, out: str | os.PathLike | None = None) -> str | None:
    """Check --out against the resume flags before anything is written. Returns what the package's
    `resume=` argument should be: None (fresh run), 'auto' (<out>/last.pt) or a checkpoint path."""
    out = Path(out if out is not None else cfg.out)
    if resume and if_exists:
        raise ConfigError("--resume and --resume-if-exists exclude each other (the latter resumes only "
                          "when a checkpoint exists)")
    if overwrite and (resume or if_exists):
        raise ConfigError("--overwrite starts a new run; it cannot be combined with --resume")
    if if_exists:
        resume = "auto" if find_checkpoint(out) is not None else None
        if resume is None and not holds_run(out):
            return None
    if not resume:
        if holds_run(out):
            if overwrite:
                dest = move_aside(out)
                print(f"moved the previous run in {out} aside to {dest}", flush=True)
                return None
            raise ConfigError(f"{out} already holds a run; continue it with --resume, choose a new --out, or "
                              f"pass --overwrite to move it aside to {out.name}.old-<time>")
        return None
    if str(resume) == "auto":
        ck = find_checkpoint(out)
        if ck is None:
            raise ConfigError(f"--resume: nothing to resume in {out} (no last.pt); drop --resume to start, or use "
                              f"--resume-if-exists in requeue scripts")
    else:
        ck = Path(resume)
        if ck.is_dir():
            ck = find_checkpoint(ck) or ck / "last.pt"
        if not ck.is_file():
            raise ConfigError(f"--resume: checkpoint not found: {ck}")
    _check_config(cfg, ck, out, accept_change)
    return resume


def _check_config(cfg, ck: Path, out: Path, accept_change: bool) -> None:
    if not dataclasses.is_dataclass(cfg):
        return
    old = _checkpoint_config(ck)
    if old is None:
        record_history(out, f"resumed from {ck}")
        return
    new = config_mod.to_dict(cfg)
    extra = tuple(getattr(type(cfg), "RESUME_SAFE", ()))
    safe, unsafe = config_changes(old, new, extra)
    if unsafe and not accept_change:
        raise ConfigError(f"resume with a changed config ({'; '.join(unsafe)}); pass --accept-config-change to "
                          f"apply it, or start a new run with a new --out")
    if unsafe:
        from . import checkpoint

        checkpoint.keep_hparams_on_load(True)  # the new hyperparameters win when optimizers are restored
    changes = safe + unsafe
    if changes:
        print(f"resuming with config changes: {'; '.join(changes)}", flush=True)
    record_history(out, f"resumed from {ck} with " + ("; ".join(changes) if changes else "no config change"))
