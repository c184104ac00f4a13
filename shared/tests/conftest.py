import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared"


def _data_root():
    env = os.environ.get("TENFOLD_DATA")
    return Path(env) if env else None


@pytest.fixture
def real_data():
    root = _data_root()
    if root is None or not (root / "cifar10" / "test.npz").is_file():
        pytest.skip("real data absent: set TENFOLD_DATA to a folder with cifar10/ (e.g. ../shared/data)")
    return root


@pytest.fixture
def models_dir():
    env = os.environ.get("TENFOLD_MODELS")
    root = Path(env) if env else SHARED / "models"
    if not (root / "cifar10_wrn40_2.pt").is_file():
        pytest.skip("teacher models absent: set TENFOLD_MODELS to ../shared/models")
    return root
