import os
import sys

import pytest
from fedmgd.config import FedMGDConfig
from tenfold.config import load

TINY = ["data.dataset=synthetic", "data.synthetic_n=300", "data.img_size=16", "data.test_size=40",
        "partition.num_clients=3", "partition.alpha=0.5", "partition.min_size=20", "partition.seed=0",
        "model.arch=dcgan", "model.n_z=8", "model.ngf=8", "model.ndf=8", "model.c_width1=8", "model.c_width2=8",
        "model.c_hidden=16", "gan.iters=4", "gan.batch_size=16", "gan.ckpt_every=2", "gan.log_every=1",
        "fl.rounds=3", "fl.local_steps=2", "fl.batch_size=16", "fl.lr=0.001", "fl.server_steps=2",
        "fl.gen_batch=32", "fl.ckpt_every=1", "device=cpu"]


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(*over, out="run"):
        return load(FedMGDConfig, None, TINY + [f"out={tmp_path / out}"] + list(over))
    return make


@pytest.fixture
def venv_bin():
    return os.path.dirname(sys.executable)
