"""tenfold: the common spine of the tenfold packages.

config · runtime · distributed · checkpoint · meters · loop · data · nets · eval · bench · benchrows · rundir · signals
· plot

Submodules load on first use (PEP 562), so a CLI's argument parser (tenfold.cli, tenfold.config) starts without
importing torch: `--help` stays fast.
"""
import importlib

from .errors import CheckpointError, ConfigError, DataError, NonFiniteLossError, TenfoldError

__version__ = "0.1.0"
_SUBMODULES = ("bench", "benchrows", "checkpoint", "cli", "clitest", "config", "configs", "data", "distributed",
               "eval", "loop", "meters", "gpubench", "gpupack", "nets", "plot", "rundir", "runtime", "signals",
               "testing")
__all__ = [*_SUBMODULES, "CheckpointError", "ConfigError", "DataError", "NonFiniteLossError", "TenfoldError"]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'tenfold' has no attribute {name!r}")
