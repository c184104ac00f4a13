import os

import pytest
import torch
from tenfold import checkpoint
from tenfold.errors import CheckpointError


def test_roundtrip_and_kind(tmp_path):
    p = checkpoint.save(tmp_path / "last.pt", {"x": torch.arange(3)}, kind="demo")
    st = checkpoint.load(p, kind="demo")
    assert torch.equal(st["x"], torch.arange(3))
    assert checkpoint.load(tmp_path)["kind"] == "demo"  # a run directory resolves to last.pt
    with pytest.raises(CheckpointError, match="written by 'demo', not 'other'"):
        checkpoint.load(p, kind="other")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = checkpoint.save(tmp_path / "last.pt", {"v": 1})

    class Boom:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        checkpoint.save(p, {"v": Boom()})
    assert checkpoint.load(p)["v"] == 1
    assert [f.name for f in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_truncated_and_garbage_files(tmp_path):
    p = checkpoint.save(tmp_path / "last.pt", {"w": torch.randn(1000)})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        checkpoint.load(p)
    p.write_bytes(os.urandom(100))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        checkpoint.load(p)
    torch.save({"weight": torch.zeros(1)}, p)
    with pytest.raises(CheckpointError, match="not a tenfold checkpoint"):
        checkpoint.load(p)
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "missing.pt")


def test_module_mismatch_is_one_line():
    m = torch.nn.Linear(3, 2)
    with pytest.raises(CheckpointError, match="shape mismatch for 'weight'"):
        checkpoint.load_module_state(m, {"weight": torch.zeros(4, 3), "bias": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="1 missing"):
        checkpoint.load_module_state(m, {"weight": torch.zeros(2, 3)})
