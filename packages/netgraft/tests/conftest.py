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
def _one_cpu_thread():
    """Every test on one intra-op thread, as the calibrations were made: these tiny models gain nothing from more,
    and on a shared 2-core machine OpenMP's spinning threads made them up to 45x slower (3 toy CMI rounds: 20 s
    on 2 threads under load vs 0.44 s on one)."""
    from tenfold import runtime

    with runtime.num_threads(1):
        yield
