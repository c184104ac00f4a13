"""tenfold: the common spine of the tenfold packages.

config · runtime · distributed · checkpoint · meters · loop · data · nets · eval · bench
"""
from . import bench, checkpoint, cli, config, data, distributed, eval, loop, meters, nets, runtime
from .errors import CheckpointError, ConfigError, DataError, NonFiniteLossError, TenfoldError

__version__ = "0.1.0"
__all__ = ["bench", "checkpoint", "cli", "config", "data", "distributed", "eval", "loop", "meters", "nets",
           "runtime", "CheckpointError", "ConfigError", "DataError", "NonFiniteLossError", "TenfoldError"]
