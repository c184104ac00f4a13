"""Every import a package makes is declared by that package; pyprojects carry licence, readme, Python version,
classifiers, a compatible tenfold-shared range, and ship their configs."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = [ROOT / "shared"] + sorted(p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())
# import name -> distribution name, where they differ
DIST = {"yaml": "pyyaml", "PIL": "pillow", "tenfold": "tenfold-shared", "torch_geometric": "torch-geometric",
        "sklearn": "scikit-learn"}


def _project(d: Path) -> dict:
    return tomllib.loads((d / "pyproject.toml").read_text())["project"]


def _deps(d: Path, extras: bool = False) -> dict[str, str]:
    """Required dependencies; with `extras`, also those of the optional extras (not `test`): an import that only
    an optional subpackage makes (fedmgd.flower -> flwr) is declared by its extra."""
    proj = _project(d)
    specs = list(proj.get("dependencies", []))
    if extras:
        specs += [s for k, v in proj.get("optional-dependencies", {}).items() if k != "test" for s in v]
    out = {}
    for spec in specs:
        name = re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower()
        out[name] = spec
    return out


def _imports(d: Path) -> set[str]:
    own = {p.name for p in (d / "src").iterdir() if p.is_dir()}
    names = set()
    for f in (d / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in own and n != "__future__"}


@pytest.mark.parametrize("d", PROJECTS, ids=lambda d: d.name)
def test_every_import_is_declared(d):
    deps = _deps(d, extras=True)
    missing = sorted(DIST.get(n, n).lower() for n in _imports(d) if DIST.get(n, n).lower() not in deps)
    assert not missing, f"{d.name} imports {missing} without declaring them in pyproject.toml"


@pytest.mark.parametrize("d", PROJECTS, ids=lambda d: d.name)
def test_pyproject_metadata(d):
    proj = _project(d)
    for key in ("license", "readme", "requires-python", "classifiers", "description"):
        assert proj.get(key), f"{d.name}: no {key}"
    assert (d / proj["readme"]).is_file()
    if d.name != "shared":
        assert re.fullmatch(r"tenfold-shared\s*>=\s*0\.1\s*,\s*<\s*0\.2", _deps(d)["tenfold-shared"])
        data = tomllib.loads((d / "pyproject.toml").read_text())["tool"]["setuptools"].get("data-files", {})
        assert data.get(f"share/tenfold/{d.name}/configs") == ["configs/*.yaml"], f"{d.name}: configs not shipped"
