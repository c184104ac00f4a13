"""Few-shot sampler, training loop resume, selection policy and bad input."""

import numpy as np
import pytest
import torch
from netgraft.config import NetGraftConfig
from netgraft.fewshot import PrefixCache, Unlabeled, crop_views, official_few_shot, split_val, validation_shots
from netgraft.train import build, phase_model, phases, run
from tenfold import checkpoint, config, data
from tenfold.meters import MetricLogger

MINI_T = [[8, 8], [16, 16], [32, 32], [32, 32]]
MINI_S = [[8, 8], [16, 16], [16, 16], [16, 16]]


def tiny_overrides(teacher_path, out):
    return [f"model.teacher_ckpt={teacher_path}", f"out={out}", "model.teacher_blocks=" + str(MINI_T),
            "model.student_blocks=" + str(MINI_S), "model.student_head_hidden=16", "model.positions=[2,3,4]",
            "data.name=synthetic", "data.image_size=16", "data.synthetic_train=200", "data.synthetic_test=60",
            "data.n_shot=4", "stage1.epochs=[2,1,1]", "stage2.epochs=[1,2]", "batch_size=16", "device=cpu"]


def test_few_shot_sampler():
    labels = np.repeat(np.arange(10), 50)
    rng = np.random.default_rng(0)
    rng.shuffle(labels)
    a = official_few_shot(labels, 7, seed=6, pool_per_class=50)
    assert np.bincount(labels[a]).tolist() == [7] * 10
    assert np.array_equal(a, official_few_shot(labels, 7, seed=6, pool_per_class=50))
    assert not np.array_equal(a, official_few_shot(labels, 7, seed=10, pool_per_class=50))
    # one RNG stream runs on across classes: class 1's pick differs from a fresh shuffle for class 1
    tr, val = split_val(a, labels, 2)
    assert np.bincount(labels[tr]).tolist() == [5] * 10 and np.bincount(labels[val]).tolist() == [2] * 10
    ds = Unlabeled(data.synthetic_shapes(20, 8))
    assert isinstance(ds[0], torch.Tensor)  # images only, no labels


def test_crop_views_are_seeded_padded_crops():
    x = torch.rand(5, 3, 8, 8)
    v = crop_views(x, 3, seed=0)
    assert len(v) == 4 and v[0] is x and all(u.shape == x.shape for u in v)
    assert all(torch.equal(a, b) for a, b in zip(v, crop_views(x, 3, seed=0)))
    assert not all(torch.equal(a, b) for a, b in zip(v[1:], crop_views(x, 3, seed=1)[1:]))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for u in v[1:]:  # every crop is an 8x8 window of the zero-padded image
        for i in range(5):
            assert any(torch.equal(u[i], padded[i, :, a:a + 8, b:b + 8]) for a in range(9) for b in range(9))
    cache = PrefixCache(v, lambda t: t * 2, lambda h: h.sum((1, 2, 3))[:, None], flip=True)
    assert len(cache) == 5 and len(cache.h) == 8  # 4 views and their mirrors
    torch.manual_seed(0)
    seen = set()
    for _ in range(200):
        item = cache[2][0]
        seen.add(next(k for k, h in enumerate(cache.h) if torch.equal(h[2], item)))
    assert seen == set(range(8))
    with pytest.raises(config.ConfigError, match="cache_crops"):
        config.load(NetGraftConfig, None, ["data.cache_crops=2", "data.augment=flip"])  # cache_prefix off


def test_crop_views_all_offsets_match_random_crop():
    x = torch.rand(2, 3, 8, 8)
    v = crop_views(x, 81, seed=0)  # n ≥ 9·9: every offset exactly once, the image itself in the centre
    assert len(v) == 81 and torch.equal(v[40], x)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    assert all(torch.equal(v[9 * a + b], padded[:, :, a:a + 8, b:b + 8]) for a in range(9) for b in range(9))
    assert len(crop_views(x, 500, seed=3)) == 81
    assert len(crop_views(x, 80, seed=0)) == 81  # below the threshold: the image + 80 random crops


@pytest.mark.parametrize("n,batch,scale", [(1, 6, 0.1), (5, 32, 0.5), (10, 64, 1.0), (50, 320, 5.0)])
def test_scaling_rule(n, batch, scale, mini_teacher_path, tmp_path):
    cfg = config.load(NetGraftConfig, None, [f"data.n_shot={n}"])
    assert cfg.effective_batch == batch and cfg.factor == pytest.approx(scale)
    assert cfg.stage2.lr == 1e-4  # never scaled by shots


def test_stage_optimizers(mini_teacher_path, tmp_path):
    cfg = config.load(NetGraftConfig, None, tiny_overrides(mini_teacher_path, tmp_path) + ["data.n_shot=2"])
    s = build(cfg)
    plan = phases(cfg)
    _, opt0 = phase_model(cfg, s, plan[0])
    assert [g["lr"] for g in opt0.param_groups] == pytest.approx([2.5e-4 * 0.2, 2.5e-3 * 0.2])  # no t2s in U0
    _, opt1 = phase_model(cfg, s, plan[1])
    assert len(opt1.param_groups) == 3
    _, opt_net = phase_model(cfg, s, plan[3])
    assert opt_net.param_groups[0]["lr"] == 1e-4
    ids = {id(p) for p in opt_net.param_groups[0]["params"]}
    assert ids == {id(p) for u in s.units[:2] for p in u.parameters()}


def test_no_drop_last_at_one_shot(mini_teacher_path, tmp_path):
    ov = tiny_overrides(mini_teacher_path, tmp_path) + ["data.n_shot=1", "batch_size=0"]
    cfg = config.load(NetGraftConfig, None, ov)
    s = build(cfg)
    loader = data.make_loader(s.train_set, cfg.effective_batch, seed=0, drop_last=False)
    assert [len(b) for b in loader] == [6, 4]


def test_resume_is_exact(mini_teacher_path, tmp_path):
    ov = tiny_overrides(mini_teacher_path, tmp_path / "a")
    full = run(config.load(NetGraftConfig, None, ov))
    ov_b = tiny_overrides(mini_teacher_path, tmp_path / "b")
    cfg_b = config.load(NetGraftConfig, None, ov_b)
    assert run(cfg_b, stop_after_epochs=3) == {"interrupted": True}  # stops inside stage 1, unit 1
    resumed = run(cfg_b, resume="auto")
    assert resumed["test_acc"] == full["test_acc"] and resumed["last_loss"] == full["last_loss"]
    # the grafted accuracy of every stage-1 unit survives the interruption (it lives in the checkpointed history)
    assert resumed["stage1_grafted_acc"] == full["stage1_grafted_acc"]
    assert sorted(full["stage1_grafted_acc"]) == [f"block{i}" for i in range(len(cfg_b.model.positions))]
    a = checkpoint.load(tmp_path / "a" / "student.pt")["student"]
    b = checkpoint.load(tmp_path / "b" / "student.pt")["student"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stage2_starts_from_stage1_weights(mini_teacher_path, tmp_path):
    cfg = config.load(NetGraftConfig, None, tiny_overrides(mini_teacher_path, tmp_path) + ["stage2.epochs=[1,1]"])
    run(cfg, stop_after_epochs=4)  # all of stage 1
    ck = checkpoint.load(tmp_path / "last.pt")
    assert ck["phase"] == 3 and ck["epoch"] == 0
    s = build(cfg)
    _, opt = phase_model(cfg, s, phases(cfg)[3])
    init = {k: v.clone() for k, v in s.units.state_dict().items()}
    s.units.load_state_dict(ck["units"])
    # the stage-1 adapters are not re-initialised when the chain is formed
    assert any(not torch.equal(init[k], v) for k, v in s.units.state_dict().items() if "s2t" in k)


def test_selection_policies(mini_teacher_path, tmp_path):
    ov = tiny_overrides(mini_teacher_path, tmp_path)
    with pytest.raises(Exception, match="val_per_class"):
        config.load(NetGraftConfig, None, ov + ["stage2.select=best_on_val"])
    cfg = config.load(NetGraftConfig, None, ov + ["stage2.select=best_on_val", "data.val_per_class=1"])
    s = run(cfg)
    assert s["select"] == "best_on_val" and s["selected_epoch"] in (0, 1)


class _Result:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr


def _cli(*args):
    """netgraft-train in-process (argv as the shell passes it); SystemExit carries the exit code."""
    import contextlib
    import io

    from netgraft.cli import train

    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            train(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return _Result(code, err.getvalue())


def test_cli_bad_input(mini_teacher_path, tmp_path):
    r = _cli("stage2.lrr=0.1")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "unknown config key 'stage2.lrr' (did you mean 'stage2.lr'?)" in r.stderr
    r = _cli("stage1.epochs=[1,2]")
    assert r.returncode == 2 and "one value per grafting unit" in r.stderr
    r = _cli("data.name=synthetic", f"model.teacher_ckpt={tmp_path / 'none.pt'}", f"--out={tmp_path / 'o'}")
    assert r.returncode == 2 and "teacher weights not found" in r.stderr
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = _cli(*tiny_overrides(mini_teacher_path, tmp_path / "r"), "--resume", str(bad))
    assert r.returncode == 2 and "corrupt or truncated" in r.stderr
    r = _cli("--data-root", str(tmp_path / "empty"), f"model.teacher_ckpt={mini_teacher_path}",
             "model.teacher_blocks=[[8,8],[16,16],[32,32],[32,32]]", "model.positions=[2,3,4]",
             "model.student_blocks=[[8,8],[16,16],[16,16],[16,16]]", f"--out={tmp_path / 'd'}")
    assert r.returncode == 2 and "CIFAR-10 not found" in r.stderr


def test_eval_cli_merges(mini_teacher_path, tmp_path, capsys):
    from netgraft.cli import evaluate

    run(config.load(NetGraftConfig, None, tiny_overrides(mini_teacher_path, tmp_path)))
    evaluate([str(tmp_path), "--device", "cpu"])
    import json

    res = json.loads(capsys.readouterr().out)
    assert res["test_acc"] == pytest.approx(res["test_acc_merged"]) and res["params_merged"] < res["params"]


def test_student_init_prune_is_wired_into_build(mini_teacher_path, tmp_path):
    ov = tiny_overrides(mini_teacher_path, tmp_path)
    rand = build(config.load(NetGraftConfig, None, ov))
    pruned = build(config.load(NetGraftConfig, None, ov + ["model.student_init=prune"]))
    t_conv = next(m for m in pruned.tpart.blocks[2].modules() if isinstance(m, torch.nn.Conv2d))
    s_conv = next(m for m in pruned.units[0].body.modules() if isinstance(m, torch.nn.Conv2d))
    r_conv = next(m for m in rand.units[0].body.modules() if isinstance(m, torch.nn.Conv2d))
    idx = t_conv.weight.abs().sum((1, 2, 3)).topk(s_conv.out_channels).indices.sort().values
    assert torch.equal(s_conv.weight, t_conv.weight[idx]) and not torch.equal(r_conv.weight, s_conv.weight)
    res = run(config.load(NetGraftConfig, None, ov + ["model.student_init=prune", "method=kd"]))
    assert res["steps"] > 0 and 0.0 <= res["test_acc"] <= 100.0


def test_train_help_lists_every_config_key(capsys):
    from netgraft.cli import train as train_cli

    with pytest.raises(SystemExit) as e:
        train_cli(["--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    # the spine lists 'key: type = default' (tenfold.config.typed_defaults)
    for key in ("model.student_init: Literal['random', 'prune'] = random", "data.cache_crops: int = 0",
                "stage2.lr: float = 0.0001", "stage2.select: Literal['last', 'best_on_val', 'best_on_test'] = last"):
        assert key in out, key


def test_checkpoint_interval_keeps_exact_resume(mini_teacher_path, tmp_path, monkeypatch):
    """#17: no checkpoint (with Adam state) every epoch — every `checkpoint_every` epochs and at phase ends — and
    a run interrupted between two checkpoints resumes from the earlier one to exactly the same result."""
    ov = ["method=kd", "baseline.epochs=7", "checkpoint_every=3"]
    full = run(config.load(NetGraftConfig, None, tiny_overrides(mini_teacher_path, tmp_path / "a") + ov))
    saves = []
    real_save = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda path, *a, **k: (saves.append(str(path)), real_save(path, *a, **k)))
    cfg_b = config.load(NetGraftConfig, None, tiny_overrides(mini_teacher_path, tmp_path / "b") + ov)
    assert run(cfg_b, stop_after_epochs=5) == {"interrupted": True}
    assert [p.endswith("last.pt") for p in saves] == [True]  # after epoch 3 only, not after 1, 2, 4, 5
    assert checkpoint.load(tmp_path / "b" / "last.pt")["epoch"] == 3
    resumed = run(cfg_b, resume="auto")  # replays epochs 4 and 5
    assert resumed["test_acc"] == full["test_acc"] and resumed["last_loss"] == full["last_loss"]
    # the records of the replayed epochs logged by the interrupted attempt were dropped on resume
    assert [r["step"] for r in MetricLogger(tmp_path / "b").read()] == list(range(1, 8))
    assert sum(p.endswith("last.pt") for p in saves) == 3  # epochs 3, 6 and the phase end (7)
    with pytest.raises(config.ConfigError, match="checkpoint_every"):
        config.load(NetGraftConfig, None, ["checkpoint_every=0"])


def test_validation_shots_are_labelled_held_out_training_images():
    labels = np.repeat(np.arange(10), 60)
    np.random.default_rng(1).shuffle(labels)
    shots = official_few_shot(labels, 5, seed=6, pool_per_class=60)
    val = validation_shots(labels, 5, 7, seed=6, pool_per_class=60)
    assert np.bincount(labels[val]).tolist() == [7] * 10
    assert not set(val) & set(shots)  # disjoint from the shots the method trains on
    assert np.array_equal(np.sort(np.concatenate([shots, val])),
                          np.sort(official_few_shot(labels, 12, seed=6, pool_per_class=60)))


def test_kd_from_scratch_trains_the_whole_student(mini_teacher_path, tmp_path):
    """#19's third arm: the same student without the copied teacher prefix, end to end against the teacher's
    logits (Hinton KD with loss=kl), the same shots and steps as NetGraft; val_acc on labelled held-out images."""
    ov = tiny_overrides(mini_teacher_path, tmp_path) + ["data.val_labelled_per_class=3"]
    cfg = config.load(NetGraftConfig, None, ov + ["method=kd_scratch", "loss=kl"])
    s = build(cfg)
    t0, s0 = s.tpart.blocks[0], s.spart.blocks[0]
    assert not torch.equal(t0[0].weight, s0[0].weight)  # prefix not copied from the teacher
    assert len(s.val_x) == 30 and s.val_y.tolist().count(0) == 3
    init = {k: v.clone() for k, v in s.student.state_dict().items()}
    summary = run(cfg)
    after = checkpoint.load(tmp_path / "student.pt")["student"]
    assert all(not torch.equal(init[k], after[k]) for k in init)  # every layer trained, the prefix too
    g = run(config.load(NetGraftConfig, None, ov + ["method=netgraft", f"out={tmp_path / 'g'}"]))
    assert summary["steps"] == g["steps"] and 0 <= summary["val_acc"] <= 100 and g["val_acc"] is not None
    cached = run(config.load(NetGraftConfig, None, ov + ["method=kd_scratch", "loss=kl", "data.augment=flip",
                                                         "data.cache_prefix=true", f"out={tmp_path / 'c'}"]))
    assert cached["steps"] == summary["steps"]  # cached teacher logits of each view, the images kept as input
