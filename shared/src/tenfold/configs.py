"""Configs shipped with a package, found by name: `--config demo` or `--config cifar10_vit_tiny`.

Each package's YAML files live in packages/<p>/configs/ in the repository and are installed by its wheel as
data files under <prefix>/share/tenfold/<p>/configs/ (pyproject: [tool.setuptools.data-files]). Lookup never
imports the package (find_spec only), so it stays cheap for --help.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .errors import ConfigError

__all__ = ["config_dirs", "shipped", "resolve", "describe"]


def config_dirs(package: str) -> list[Path]:
    dirs = []
    spec = importlib.util.find_spec(package) if package else None
    if spec is not None and spec.origin:
        repo = Path(spec.origin).resolve().parents[2] / "configs"  # packages/<p>/src/<p>/__init__.py
        if repo.is_dir():
            dirs.append(repo)
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        d = Path(prefix) / "share" / "tenfold" / package / "configs"
        if d.is_dir():
            dirs.append(d)
    return dirs


def shipped(package: str) -> dict[str, Path]:
    """name -> path of every shipped config (first directory wins)."""
    out: dict[str, Path] = {}
    for d in config_dirs(package):
        for p in sorted(d.glob("*.yaml")):
            out.setdefault(p.stem, p)
    return out


def resolve(package: str, name_or_path: str | None) -> str | None:
    """A path that exists is used as given; otherwise a bare name (with or without .yaml) is looked up among
    the package's shipped configs."""
    if name_or_path is None or Path(name_or_path).exists():
        return name_or_path
    name = Path(name_or_path).name.removesuffix(".yaml").removesuffix(".yml")
    found = shipped(package).get(name) if package and "/" not in str(name_or_path) else None
    if found is None:
        known = ", ".join(shipped(package)) if package else ""
        hint = f"; shipped configs: {known} (see --list-configs)" if known else ""
        raise ConfigError(f"config file not found: {name_or_path}{hint}")
    return str(found)


def describe(path: Path) -> str:
    """The first comment line of a config file (its one-line description), else its top-level keys."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ""
    for ln in lines:
        s = ln.strip()
        if s.startswith("#") and not s.startswith("# history:"):
            return s.lstrip("#").strip()
        if s:
            break
    keys = [ln.split(":", 1)[0] for ln in lines if ln and not ln[0].isspace() and ":" in ln and ln[0] != "#"]
    return "keys: " + ", ".join(keys[:8])
