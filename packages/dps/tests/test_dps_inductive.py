"""The inductive setting is inductive (issue #19): every event touching a held-out node leaves the training
graph and the training neighbour index, so no held-out node occurs in any training neighbourhood (DPS model and
GAS pretraining alike) or receives a gradient; evaluation still sees their history."""
import torch
from dps import gas as gas_mod
from dps import train as train_mod
from dps.config import DPSConfig
from dps.pipeline import prepare
from tenfold import config as config_mod

CFG = ["data.format=synthetic", "data.synthetic.num_events=900", "data.synthetic.num_users=30",
       "data.synthetic.num_items=30", "data.setting=inductive", "data.new_node_frac=0.3", "model.node_dim=8",
       "model.n_layer=2", "model.n_degree=4", "train.epochs=1", "train.batch_size=100", "train.lr=1e-3",
       "gas.epochs=1", "gas.finetune=true", "gas.batch_size=100", "seed=1", "device=cpu"]


class Spy:
    """Wraps a sampler and records every neighbour id it returns."""

    def __init__(self, inner, seen):
        self.inner, self.seen = inner, seen

    def __call__(self, nodes, t, generator=None):
        out = self.inner(nodes, t, generator)
        self.seen.append(out[0].reshape(-1).cpu())
        return out

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_held_out_nodes_never_reach_training(tmp_path, monkeypatch):
    cfg = config_mod.load(DPSConfig, None, CFG + [f"out={tmp_path}"])
    prep = prepare(cfg, torch.device("cpu"))
    held = prep.held_out
    assert held is not None and held.numel() > 0
    d = prep.stream.data
    cut = float(prep.train[2].max())
    pre = ((d.t <= cut) & (torch.isin(d.src, held) | torch.isin(d.dst, held))).sum()
    assert pre > 0  # they do have pre-cut events (the leak the old code let into training neighbourhoods)
    assert int(prep.train_index.degree[held].sum()) == 0 and not torch.isin(prep.train_index.nbr, held).any()
    assert int(prep.csr.degree[held].sum()) > 0  # evaluation sees their history

    seen = {"train": [], "eval": [], "gas": []}
    real_build = train_mod.build_samplers

    def spy_build(cfg_, prep_, device, log=print, artifacts=None, index="eval"):
        samplers, arts = real_build(cfg_, prep_, device, log, artifacts, index)
        return [Spy(s, seen[index]) for s in samplers], arts

    monkeypatch.setattr(train_mod, "build_samplers", spy_build)
    real_uniform = gas_mod.UniformSampler
    monkeypatch.setattr(gas_mod, "UniformSampler", lambda csr, k: Spy(real_uniform(csr, k), seen["gas"]))
    grads = []
    real_model, real_gas = train_mod.build_model, gas_mod.build_gas_model

    def hooked(m):
        m.encoder.node_emb.weight.register_hook(lambda g: grads.append(float(g[held].abs().max())))
        return m

    monkeypatch.setattr(train_mod, "build_model", lambda *a, **k: hooked(real_model(*a, **k)))
    monkeypatch.setattr(gas_mod, "build_gas_model", lambda *a, **k: hooked(real_gas(*a, **k)))
    import dps.pipeline as pipe
    monkeypatch.setattr(pipe, "build_gas_model", gas_mod.build_gas_model)
    summary = train_mod.train_link(cfg, log=lambda *a: None)
    assert "inductive_test_auc" in summary
    for key in ("train", "gas"):
        ids = torch.cat(seen[key])
        assert ids.numel() > 0 and not torch.isin(ids, held).any(), key
    assert torch.isin(torch.cat(seen["eval"]), held).any()  # evaluation neighbourhoods do contain them
    assert not torch.isin(prep.train[0], held).any() and not torch.isin(prep.train[1], held).any()
    assert not torch.isin(prep.train_dst, held).any()  # nor are they training negatives
    assert len(grads) > 0 and max(grads) == 0.0
