import os

import pytest
import torch

os.environ.setdefault("TENFOLD_QUIET", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory):
    """A random-init 5-class CNN teacher exported like ../shared/models (state_dict + JSON)."""
    from pathlib import Path

    from mosaickd.common import export_model
    from mosaickd.nets import SmallCNN

    torch.manual_seed(0)
    path = Path(tmp_path_factory.mktemp("teacher")) / "teacher.pt"
    export_model(SmallCNN(5, (8, 16, 32)), path, "cnn8", 5, norm="shapes")
    return str(path)


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TENFOLD_CACHE", str(tmp_path / "cache"))
    return tmp_path
