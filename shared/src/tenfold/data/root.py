"""Where data lives: --data-root > $TENFOLD_DATA > a per-user cache directory."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root", "cache_dir"]


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tenfold"


def data_root(cli_value: str | os.PathLike | None = None) -> Path:
    if cli_value:
        return Path(cli_value).expanduser()
    env = os.environ.get("TENFOLD_DATA")
    if env:
        return Path(env).expanduser()
    return _user_cache() / "data"


def cache_dir() -> Path:
    """Decoded-image caches ($TENFOLD_CACHE or ~/.cache/tenfold/decoded)."""
    p = Path(os.environ.get("TENFOLD_CACHE") or (_user_cache() / "decoded"))
    p.mkdir(parents=True, exist_ok=True)
    return p
