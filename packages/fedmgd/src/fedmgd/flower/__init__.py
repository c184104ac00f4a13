"""FedMGD on Flower (the `flower` extra: ``pip install 'tenfold-fedmgd[flower]'``).

- ``fedmgd.flower.protocol``: what the server and a client compute and exchange (no Flower import).
- ``fedmgd.flower.apps``: the Flower ``ServerApp`` (``server_app``) and ``ClientApp`` (``client_app``) for both
  stages, Stage 2 as the ``FedMGDStrategy``.
- ``fedmgd.flower.deploy``: a loopback deployment (SuperLink + one SuperNode per client + ``flwr run``), used by
  ``fedmgd-train engine=flower`` and the slow test.
- ``fedmgd.flower.inmemory``: the same apps with messages handed over in one process (tests).

Nothing else in fedmgd imports this package, so fedmgd runs without flwr."""
from __future__ import annotations

from tenfold.errors import ConfigError

__all__ = ["require_flwr", "APP_DIR"]

from pathlib import Path

APP_DIR = Path(__file__).parent / "app"  # the Flower app project (pyproject.toml) that `flwr run` ships


def require_flwr() -> None:
    try:
        import flwr  # noqa: F401
    except ImportError:
        raise ConfigError("engine=flower needs Flower: pip install 'tenfold-fedmgd[flower]' "
                          "(or pip install -c constraints.txt 'packages/fedmgd[flower]')") from None
