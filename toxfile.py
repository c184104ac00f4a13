"""tox plugin: one tox env per folder in packages/ (so new packages need no tox.ini edit)."""
from pathlib import Path

from tox.plugin import impl

ROOT = Path(__file__).parent


@impl
def tox_extend_envs():
    return tuple(p.name for p in sorted((ROOT / "packages").glob("*")) if (p / "pyproject.toml").is_file())
