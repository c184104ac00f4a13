import os
from pathlib import Path

import pytest
import torch
from netgraft.models import build_teacher

MINI_T = [[8, 8], [16, 16], [32, 32], [32, 32]]
MINI_S = [[8, 8], [16, 16], [16, 16], [16, 16]]


@pytest.fixture
def mini_teacher_path(tmp_path):
    torch.manual_seed(0)
    t = build_teacher("vgg_blockwise", 10, MINI_T)
    p = tmp_path / "teacher.pt"
    torch.save(t.state_dict(), p)
    return p


@pytest.fixture
def real_data():
    root = os.environ.get("TENFOLD_DATA")
    if not root or not (Path(root) / "cifar10" / "train.npz").is_file():
        pytest.skip("real data absent: set TENFOLD_DATA to a folder with cifar10/ (e.g. ../shared/data)")
    return Path(root)


@pytest.fixture
def vgg_teacher():
    root = os.environ.get("TENFOLD_MODELS") or str(Path(__file__).resolve().parents[4] / "shared" / "models")
    p = Path(root) / "cifar10_vgg16_blockwise.pt"
    if not p.is_file():
        pytest.skip("teacher absent: set TENFOLD_MODELS to ../shared/models")
    return p


@pytest.fixture(scope="session", autouse=True)
def _one_cpu_thread():  # as the calibrations were made, and no OpenMP spinning (see cmi's conftest)
    from tenfold import runtime

    with runtime.num_threads(1):
        yield
