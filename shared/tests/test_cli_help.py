"""Every config-driven tenfold CLI: --help lists every config key with type and default and ends with two
example commands, each of which parses as printed (run here with --print-config); the CLI modules load
without torch, so --help is fast."""
from __future__ import annotations

import shlex
import subprocess
import sys
from importlib import metadata

import pytest

# scripts that take no config (a run directory or a checkpoint instead)
NO_CONFIG = {"osgan-sample", "mgc-export", "netgraft-eval", "tenfold-plot"}
# evaluation CLIs whose config is read from a trained run given on the command line
NEEDS_A_RUN = {"dps-eval"}


def _scripts():
    eps = {ep.name: ep for d in metadata.distributions() if (d.metadata["Name"] or "").startswith("tenfold-")
           for ep in d.entry_points if ep.group == "console_scripts"}
    return [eps[k] for k in sorted(eps) if k not in NO_CONFIG]


SCRIPTS = _scripts()


def _call(ep, argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [ep.name, *argv])
    with pytest.raises(SystemExit) as e:
        ep.load()()
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.mark.parametrize("ep", SCRIPTS, ids=lambda ep: ep.name)
def test_help_lists_keys_and_examples_that_parse(ep, monkeypatch, capsys, tmp_path):
    code, out, err = _call(ep, ["--help"], monkeypatch, capsys)
    assert code == 0, err
    assert "config keys" in out and ": int = " in out and "seed: int = 0" in out
    lines = out.rstrip().splitlines()
    assert lines[-3].strip() == "examples:"
    examples = [ln.strip() for ln in lines[-2:]]
    monkeypatch.chdir(tmp_path)  # examples write nothing, but relative paths stay out of the repository
    for ex in examples:
        argv = shlex.split(ex)
        assert argv[0] == ep.name
        code, out, err = _call(ep, argv[1:] + ["--print-config"], monkeypatch, capsys)
        if ep.name in NEEDS_A_RUN:  # the options parse; the config comes from the (here absent) trained run
            assert code == 2 and "usage:" not in err and "runs/" in err, f"{ex}: {err}"
        else:
            assert code == 0 and "seed:" in out, f"{ex}: {err}"


@pytest.mark.parametrize("ep", SCRIPTS, ids=lambda ep: ep.name)
def test_cli_module_loads_without_torch(ep):
    code = (f"import sys; from importlib import import_module; import_module({ep.module!r}); "
            f"print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr[-500:]
