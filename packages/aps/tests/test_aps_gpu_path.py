"""GPU-path pieces checked on the CPU (issue #17): no host sync inside a training batch, equal warm-up in
optimizer steps for arms with different K, precision threaded through, torch.compile switch, fp32 logits."""
from __future__ import annotations

import contextlib
import json

import pytest
import torch
from aps.config import DataConfig, EvalConfig, ModelConfig, OptimConfig, PretrainConfig, SamplingConfig
from aps.model import APSModel, build_backbone
from aps.train import pretrain_step

TINY = ModelConfig(img_size=32, patch_size=8, embed_dim=24, depth=1, num_heads=2, hidden_dim=32, out_dim=16)


def _cfg(out, mode="aps", **optim):
    o = dict(batch_size=16, epochs=4, warmup_epochs=1, schedule_unit="step")
    o.update(optim)
    return PretrainConfig(out=str(out), device="cpu", threads=1, model=TINY, sampling=SamplingConfig(mode=mode),
                          data=DataConfig(dataset="synthetic", synthetic_train=64, synthetic_test=32),
                          optim=OptimConfig(**o), eval=EvalConfig(final_knn=False), ckpt_every=0, log_every=1)


@contextlib.contextmanager
def no_host_reads():
    """Any read of a tensor's value on the host (what forces a CUDA sync) raises inside the block."""
    names = ("item", "__float__", "__int__", "__bool__", "tolist", "numpy")
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def boom(self, *a, **k):
        raise AssertionError("host read of a tensor value inside the training step")

    try:
        for n in names:
            setattr(torch.Tensor, n, boom)
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


def test_pretrain_step_reads_nothing_back_from_the_device():
    torch.manual_seed(0)
    m = APSModel(build_backbone(TINY), 32, 16)
    opt = torch.optim.SGD(m.parameters(), lr=0.01)  # SGD: the optimiser itself reads nothing on the host
    idx = torch.stack([torch.randperm(16).view(4, 4) for _ in range(8)])
    batch = ((torch.randn(8, 3, 32, 32), idx, torch.randn(8, 3, 32, 32), idx.flip(-1)), torch.zeros(8))
    with no_host_reads():
        out = pretrain_step(m, opt, batch, device=torch.device("cpu"), tau=0.1, full_tokens=False,
                            lr_of=lambda k: 0.01)
    assert torch.isfinite(out["loss"]) and out["loss"].dim() == 0


def test_nan_in_an_early_sub_step_reaches_the_batch_loss(monkeypatch):
    import aps.train as train

    real = train.aps_loss
    calls = {"n": 0}

    def poisoned(*a, **kw):
        calls["n"] += 1
        loss, sim = real(*a, **kw)
        return (loss * float("nan"), sim) if calls["n"] == 1 else (loss, sim)

    monkeypatch.setattr(train, "aps_loss", poisoned)
    m = APSModel(build_backbone(TINY), 32, 16)
    idx = torch.stack([torch.randperm(16).view(4, 4) for _ in range(8)])
    batch = ((torch.randn(8, 3, 32, 32), idx, torch.randn(8, 3, 32, 32), idx), torch.zeros(8))
    out = pretrain_step(m, torch.optim.SGD(m.parameters(), lr=0.01), batch, device=torch.device("cpu"), tau=0.1,
                        full_tokens=False)
    assert not torch.isfinite(out["loss"])  # the Trainer's once-per-batch guard sees it


def _lrs(run_dir):
    return [json.loads(ln)["lr"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines()
            if '"lr"' in ln]


def test_warmup_is_equal_in_optimizer_steps_for_both_arms(tmp_path):
    """APS (K = 4 steps per batch) and the full-token arm (1 per batch) at equal optimizer steps: with
    optim.warmup_steps both ramp over the same optimizer steps, so their lr agree at every common step."""
    from aps.train import run

    run(_cfg(tmp_path / "aps", "aps", max_steps=2, warmup_steps=12))
    run(_cfg(tmp_path / "full", "full", max_steps=8, warmup_steps=12))
    aps_lr, full_lr = _lrs(tmp_path / "aps"), _lrs(tmp_path / "full")
    # the logged lr is that of the batch's last optimizer step: APS batch b ends at step 4b+3
    assert len(aps_lr) == 2 and len(full_lr) == 8
    for b, lr in enumerate(aps_lr):
        assert lr == pytest.approx(full_lr[4 * b + 3], rel=1e-12)
    base = 1e-3 * 16 / 256
    assert full_lr[3] == pytest.approx(base * 4 / 12)  # linear warm-up (t+1)/W at optimizer step 3
    # warmup_epochs alone gives each arm its own epoch (K = 4 times longer for APS): the lr then differ
    run(_cfg(tmp_path / "aps_e", "aps", max_steps=2))
    run(_cfg(tmp_path / "full_e", "full", max_steps=8))
    assert _lrs(tmp_path / "aps_e")[0] != pytest.approx(_lrs(tmp_path / "full_e")[3])


def test_warmup_steps_needs_the_step_schedule():
    from tenfold import config as config_mod
    from tenfold.errors import ConfigError

    with pytest.raises(ConfigError, match="optim.warmup_steps"):
        config_mod.load(PretrainConfig, None, ["optim.warmup_steps=10", "optim.schedule_unit=epoch"])


def test_precision_reaches_autocast(tmp_path, monkeypatch):
    import aps.train as train

    seen = []
    real = train.runtime.autocast

    def spy(device, precision="bf16", enabled=True):
        seen.append((precision, enabled))
        return real(device, precision, enabled)

    monkeypatch.setattr(train.runtime, "autocast", spy)
    cfg = _cfg(tmp_path, max_steps=1)
    cfg.precision = "fp16"
    train.run(cfg)
    assert seen and set(seen) == {("fp16", True)}


def test_compile_switch_gives_the_eager_result(tmp_path):
    """model.compile=true (backend eager here: dynamo tracing without a C++ compiler) trains to the same
    parameters as the uncompiled run; the checkpoint keeps the plain module's keys."""
    from aps.train import run
    from tenfold import checkpoint

    run(_cfg(tmp_path / "plain", max_steps=2))
    cfg = _cfg(tmp_path / "compiled", max_steps=2)
    cfg.model = ModelConfig(**{**TINY.__dict__, "compile": True, "compile_backend": "eager"})
    run(cfg)
    a = checkpoint.load(tmp_path / "plain" / "last.pt")["state"]["model"]
    b = checkpoint.load(tmp_path / "compiled" / "last.pt")["state"]["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_contrastive_logits_stay_fp32_under_autocast():
    from aps.method import contrastive_loss

    q, k = torch.randn(6, 16), torch.randn(6, 16)
    ref, _ = contrastive_loss(q, k, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = contrastive_loss(q.bfloat16(), k.bfloat16(), 0.1)
    exact, _ = contrastive_loss(q.bfloat16().float(), k.bfloat16().float(), 0.1)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, exact, rtol=1e-6, atol=1e-6)  # bf16 inputs, fp32 arithmetic
    assert not torch.equal(ref, got)  # (the inputs did change precision)


def test_cli_takes_overrides_before_and_after_options(tmp_path):
    """bench/gpu.sh's form: overrides, then --out, then more overrides (argparse's parse_args rejects the second
    group: "unrecognized arguments")."""
    from aps.cli import train

    tiny = ["model.patch_size=8", "model.embed_dim=24", "model.depth=1", "model.num_heads=2", "model.hidden_dim=32",
            "model.out_dim=16", "data.dataset=synthetic", "data.synthetic_train=32", "data.synthetic_test=16",
            "optim.batch_size=16", "device=cpu", "threads=1", "eval.final_knn=false", "ckpt_every=0"]
    train([*tiny, "--out", str(tmp_path / "r"), "sampling.mode=full", "optim.max_steps=1"])
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["mode"] == "full" and summary["batches"] == 1
