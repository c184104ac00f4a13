"""Device placement on a fake CUDA device (tenfold.testing.fake_cuda, issue #17): the forward passes of a Stage-1
client step (uint8 batch -> float on the device, C and D losses with R1, realistic scores), routing, the generator,
a Stage-2 client step under autocast, the server's synthetic batch and filter, and evaluation all stay on the
device; a host tensor mixed in raises. Backward does not run there (skip_backward)."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fedmgd import engine
from fedmgd.config import FedMGDConfig
from fedmgd.data import FederatedData
from fedmgd.engine import Comm, Streams
from fedmgd.faults import Guard
from fedmgd.method import client_batch_indices, filter_mask, route
from fedmgd.nets import build_models
from fedmgd.stage1 import Stage1
from fedmgd.stage2 import Stage2, correct_count
from tenfold.config import load
from tenfold.testing import fake_cuda
from test_fedmgd_train import TINY
from torch import nn

K, N, B = 3, 40, 16


def _cfg(*over):
    return load(FedMGDConfig, None, TINY + ["out=unused", "device=cuda", "model.arch=resnet", "model.ngf=4",
                                            "model.ndf=4", "model.g_nf_max=8", "model.d_nf_max=8"] + list(over))


def _fed(dev, size=20):
    """Client data as it is held on a GPU: uint8 images at their native size (20 px, resized to 16 per batch)."""
    u8 = lambda n: torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, device=dev)  # noqa: E731
    lab = lambda n: torch.randint(0, 10, (n,), device=dev)  # noqa: E731
    return FederatedData([u8(N) for _ in range(K)], [lab(N) for _ in range(K)], [u8(8) for _ in range(K)],
                         [lab(8) for _ in range(K)], u8(24), lab(24), 10, 1, [np.arange(N)] * K,
                         np.zeros(K * N, np.int64), 16, "bicubic")


@pytest.fixture(autouse=True)
def _clone_inside_fake_mode(monkeypatch):
    """copy.deepcopy of a fake module opens a second fake mode; copy parameters and buffers inside the current one."""
    def clone(m):
        new = copy.copy(m)
        new.__dict__ = dict(m.__dict__)
        new._parameters = {k: None if p is None else nn.Parameter(p.detach().clone(), p.requires_grad)
                           for k, p in m._parameters.items()}
        new._buffers = {k: None if b is None else b.clone() for k, b in m._buffers.items()}
        new._modules = {k: None if c is None else clone(c) for k, c in m._modules.items()}
        return new
    monkeypatch.setattr(engine, "clone_module", clone)


def _on_cuda(*ts):
    return all(t.device.type == "cuda" for t in ts)


@pytest.mark.parametrize("mode", ["selected", "all"])
def test_stage1_client_step_scores_and_routing_on_device(mode):
    cfg = _cfg(f"gan.g_graph={mode}")
    with fake_cuda(skip_backward=True):
        dev = torch.device("cuda")
        fed = _fed(dev)
        mg, md, mc = build_models(cfg.model, 10, 1, 16)
        # CPU streams: the RNG swap is host bookkeeping (torch.cuda RNG calls cannot run without a GPU)
        st = Stage1(cfg, fed, Comm(K, dev), Streams(0, torch.device("cpu")), dev, mg, md, mc, mc().to(dev))
        x_fake, y_fake = st.sample_fake(B)
        gidx = torch.arange(B, device=dev)
        rows = client_batch_indices(gidx, fed.sizes)
        scores = {}
        for k in range(K):
            res = st._client_step(Guard(), k, rows[k], x_fake.detach(), y_fake, 1.0, 0)
            scores[k] = res["score"]
            assert _on_cuda(res["score"], res["lc"], res["ld"])
        all_scores = st.comm.stack(scores, torch.zeros(B, device=dev))
        assert _on_cuda(x_fake, all_scores, route(all_scores))
        xb, yb = fed.batch(0, rows[0])
        assert xb.dtype == torch.float32 and xb.shape[-1] == 16 and _on_cuda(xb, yb)
        with pytest.raises(RuntimeError, match="device"):  # a host batch fed to the device model is caught
            st.C[0](torch.zeros(2, 1, 16, 16, device="cpu"))


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_stage2_client_loss_server_batch_and_evaluation_on_device(precision):
    cfg = _cfg(f"precision={precision}", "fl.method=fedprox")
    with fake_cuda(skip_backward=True):
        dev = torch.device("cuda")
        fed = _fed(dev)
        mg, _, mc = build_models(cfg.model, 10, 1, 16)
        G = mg().to(dev)
        st = Stage2(cfg, fed, Comm(K, dev), Streams(0, torch.device("cpu")), dev, mc().to(dev), G)
        xb, yb = fed.batch(1, torch.arange(B, device=dev) % N)
        anchor = [p.detach().clone() for p in st.S.parameters()]
        loss = st.local_loss(st.work, xb, yb, None, anchor)
        assert _on_cuda(loss)
        # the server's synthetic batch and self-consistency filter (server_enhance_step's forward passes)
        z = torch.randn(B, cfg.model.n_z, device=dev)
        y = torch.randint(0, 10, (B,), device=dev)
        with torch.no_grad():
            x = G(z, F.one_hot(y, 10).float())
            keep = filter_mask(st.S(x), y)
        assert _on_cuda(x, keep, F.cross_entropy(st.S(x).float(), y))
        hits = correct_count(st.S, fed.test_u8, fed.test_y, 8, fed.to_float)
        assert _on_cuda(hits)
