import dataclasses
import math

import pytest
import torch
from tenfold import config, data, loop
from tenfold.data import transforms
from tenfold.errors import NonFiniteLossError
from torch import nn


@dataclasses.dataclass
class TinyCfg(config.RunConfig):
    steps: int = 12
    lr: float = 0.05


def _build(run_dir, cfg, nan_at=None):
    torch.manual_seed(cfg.seed)
    ds = data.synthetic_shapes(96, image_size=16, num_classes=4, seed=1, transform=transforms.cifar_train(size=16))
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.3),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    trainer = loop.Trainer(run_dir, kind="tiny", config=cfg, stateful={"model": model, "opt": opt, "sched": sched},
                           total_steps=cfg.steps, ckpt_every=4, log_every=1,
                           batches=lambda e, s: data.make_loader(ds, 16, seed=cfg.seed, epoch=e, start_batch=s))

    def step(batch, st):
        x, y = batch
        loss = nn.functional.cross_entropy(model(x), y) + 1e-3 * torch.rand(())  # uses the global RNG too
        if nan_at is not None and st.step + 1 >= nan_at:
            loss = loss * float("nan")
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        return {"loss": loss}

    return trainer, model, step


def test_resume_is_bitwise_equal(tmp_path):
    cfg = TinyCfg()
    t1, m1, s1 = _build(tmp_path / "a", cfg)
    t1.run(s1)  # 12 steps straight: epochs of 6 batches, so the interruption lands mid-epoch
    t2, _, s2 = _build(tmp_path / "b", cfg)
    t2.run(s2, stop_at=9)
    t3, m3, s3 = _build(tmp_path / "b", cfg)
    assert t3.maybe_resume("auto")
    assert t3.state.step == 9 and t3.state.epoch == 1 and t3.state.batch_in_epoch == 3
    t3.run(s3)
    for a, b in zip(m1.state_dict().values(), m3.state_dict().values()):
        assert torch.equal(a, b)
    logged = [r["step"] for r in t3.logger.read()]
    assert logged == list(range(1, 10)) + list(range(10, 13))


def test_nan_stops_and_keeps_last_good(tmp_path):
    cfg = TinyCfg()
    t, m, s = _build(tmp_path, cfg, nan_at=6)
    with pytest.raises(NonFiniteLossError, match="step 6.*last good checkpoint"):
        t.run(s)
    from tenfold import checkpoint

    ck = checkpoint.load(tmp_path / "last.pt", kind="tiny")
    assert ck["loop"]["step"] == 4
    assert all(torch.isfinite(v).all() for v in ck["state"]["model"].values() if v.is_floating_point())


def test_data_order_independent_of_workers_and_start():
    ds = data.synthetic_shapes(40, image_size=8, num_classes=4, seed=0, transform=transforms.cifar_train(size=8))
    full = [b for b in data.make_loader(ds, 8, seed=3, epoch=2)]
    tail = [b for b in data.make_loader(ds, 8, seed=3, epoch=2, start_batch=2, num_workers=2)]
    assert len(full) == 5 and len(tail) == 3
    for (x1, y1), (x2, y2) in zip(full[2:], tail):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    other = next(iter(data.make_loader(ds, 8, seed=3, epoch=3)))
    assert not torch.equal(other[1], full[0][1]) or not torch.equal(other[0], full[0][0])
    state = torch.get_rng_state()
    list(data.make_loader(ds, 8, seed=3, epoch=2))
    assert torch.equal(state, torch.get_rng_state())  # loading never touches the global RNG


def test_sampler_shards_ranks():
    parts = [data.ResumableSampler(10, 2, seed=0, rank=r, world=2, with_seeds=False).indices() for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 4
    assert not set(parts[0]) & set(parts[1])
    assert data.steps_per_epoch(10, 2, world=2) == 2
    assert math.isclose(data.steps_per_epoch(10, 3, drop_last=False, world=1), 4)


def test_num_threads_restores_the_previous_count():
    from tenfold import runtime

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with runtime.num_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("the count is restored on errors too")
    assert torch.get_num_threads() == before


def test_workers_persist_across_epochs_with_the_same_batches():
    ds = data.synthetic_shapes(40, image_size=8, num_classes=4, seed=0, transform=transforms.cifar_train(size=8))
    ref = {(e, s): list(data.make_loader(ds, 8, seed=3, epoch=e, start_batch=s)) for e, s in ((0, 0), (1, 2), (2, 0))}
    pids = []
    for e, s in ((0, 0), (1, 2), (2, 0)):
        loader = data.make_loader(ds, 8, seed=3, epoch=e, start_batch=s, num_workers=2)
        it = iter(loader)
        got = list(it)
        pids.append(tuple(w.pid for w in it._workers))
        assert len(got) == len(ref[(e, s)])
        for (x1, y1), (x2, y2) in zip(ref[(e, s)], got):
            assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert pids[0] == pids[1] == pids[2]  # the same worker processes served all three epochs
    other = data.make_loader(ds, 8, seed=4, num_workers=2)  # another seed: its own loader
    assert other is not data.make_loader(ds, 8, seed=3, num_workers=2)


def test_pin_memory_follows_the_target_device():
    ds = data.synthetic_shapes(8, image_size=8, num_classes=2, seed=0)
    assert data.make_loader(ds, 4, seed=0, device=torch.device("cuda")).pin_memory
    assert not data.make_loader(ds, 4, seed=0, device="cpu").pin_memory
    assert not data.make_loader(ds, 4, seed=0, device="cuda", pin_memory=False).pin_memory
    assert data.make_loader(ds, 4, seed=0).pin_memory == torch.cuda.is_available()
