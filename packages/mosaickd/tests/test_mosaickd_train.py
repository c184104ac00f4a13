"""Training loops: exact resume (bitwise on CPU), summaries (best and last, pitfall 11), baselines, teacher CLI,
and bad input -> one clear error line with exit code 2."""
import json

import pytest
import torch
from mosaickd import cli
from mosaickd.baselines import run_kd
from mosaickd.config import KDConfig, MosaicConfig
from mosaickd.train import run_mosaic
from tenfold import checkpoint
from tenfold.config import load
from tenfold.errors import NonFiniteLossError

SHAPES = ["data.in_domain=shapes", "data.in_domain_classes=[0,1,2,3,4]", "data.ood=[shapes]",
          "data.ood_classes=[5,6,7,8,9]", "data.img_size=16", "data.synthetic_n=200", "device=cpu"]
TINY_MOSAIC = SHAPES + ["model.student=cnn8", "generator.nz=8", "generator.ngf=4", "discriminator.ndf=8",
                        "train.batch_size=16", "train.iters=6", "train.kd_steps=2", "train.eval_every=3",
                        "optim.lr=0.05", "train.eval_teacher=false"]


def mosaic_cfg(teacher, out, *extra):
    return load(MosaicConfig, None, TINY_MOSAIC + [f"model.teacher={teacher}", f"out={out}", *extra])


def states(run_dir):
    return checkpoint.load(run_dir / "last.pt")["state"]


def assert_bitwise_equal(a, b):
    for name in ("generator", "discriminator", "student", "model"):
        if name in a:
            for k in a[name]:
                assert torch.equal(a[name][k], b[name][k]), f"{name}.{k}"


def test_mosaic_resume_is_bitwise_exact(tiny_teacher, tmp_path):
    straight = run_mosaic(mosaic_cfg(tiny_teacher, tmp_path / "a"))
    part = run_mosaic(mosaic_cfg(tiny_teacher, tmp_path / "b"), stop_at=4)
    assert part["steps"] == 4 and part["last_top1"] is not None
    resumed = run_mosaic(mosaic_cfg(tiny_teacher, tmp_path / "b"), resume="auto")
    assert resumed["resumed"] and resumed["steps"] == straight["steps"] == 6
    assert_bitwise_equal(states(tmp_path / "a"), states(tmp_path / "b"))
    assert resumed["last_top1"] == straight["last_top1"]
    # pitfall 11: best and last are both reported
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert {"best_top1", "last_top1", "best_step"} <= set(s) and s["best_top1"] >= s["last_top1"]
    assert (tmp_path / "a" / "student.pt").is_file() and (tmp_path / "a" / "synthetic.png").is_file()
    assert (tmp_path / "a" / "config.yaml").is_file()


def test_mosaic_resume_exact_with_augmented_kd_stream_and_global_d(tiny_teacher, tmp_path):
    extra = ["data.kd_ood_augment=true", "discriminator.kind=global", "train.kd_use_ood=true"]
    run_mosaic(mosaic_cfg(tiny_teacher, tmp_path / "a", *extra))
    run_mosaic(mosaic_cfg(tiny_teacher, tmp_path / "b", *extra), stop_at=2)
    run_mosaic(mosaic_cfg(tiny_teacher, tmp_path / "b", *extra), resume=str(tmp_path / "b" / "last.pt"))
    assert_bitwise_equal(states(tmp_path / "a"), states(tmp_path / "b"))


@pytest.mark.parametrize("method", ["vanilla", "balanced", "datafree"])
def test_kd_baselines_resume_exact(tiny_teacher, tmp_path, method):
    ov = SHAPES + [f"method={method}", "model.student=cnn8", f"model.teacher={tiny_teacher}", "batch_size=16",
                   "steps=4", "eval_every=2", "generator.nz=8", "generator.ngf=4", "datafree.kd_steps=1",
                   "datafree.g_steps_per_epoch=2", "eval_teacher=false"]
    a = run_kd(load(KDConfig, None, ov + [f"out={tmp_path / 'a'}"]))
    run_kd(load(KDConfig, None, ov + [f"out={tmp_path / 'b'}"]), stop_at=2)
    b = run_kd(load(KDConfig, None, ov + [f"out={tmp_path / 'b'}"]), resume="auto")
    assert a["steps"] == b["steps"] == 4 and b["resumed"]
    sa, sb = states(tmp_path / "a"), states(tmp_path / "b")
    for k in sa["student"]:
        assert torch.equal(sa["student"][k], sb["student"][k]), k
    if method == "datafree":
        assert "generator" in sa and sa["sched"]["last_epoch"] == 2  # per-epoch student schedule


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_teacher, tmp_path):
    out = tmp_path / "nan"
    run_mosaic(mosaic_cfg(tiny_teacher, out), stop_at=2)
    good = states(out)
    sd = torch.load(tiny_teacher, weights_only=True)
    sd["fc.weight"].fill_(float("nan"))  # a broken teacher turns every loss into NaN
    nan_teacher = tmp_path / "nan_teacher.pt"
    torch.save(sd, nan_teacher)
    nan_teacher.with_suffix(".json").write_text(json.dumps({"arch": "cnn8", "num_classes": 5}))
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        run_mosaic(mosaic_cfg(nan_teacher, out), resume="auto")
    assert_bitwise_equal(good, states(out))


def test_teacher_cli_trains_and_exports(tmp_path, capsys):
    out = tmp_path / "t"
    cli.teacher(["teacher.dataset=shapes", "teacher.classes=[0,1,2]", "teacher.arch=cnn8", "teacher.img_size=16",
                 "teacher.synthetic_n=120", "teacher.batch_size=16", "teacher.steps=3", "--out", str(out),
                 "--device", "cpu"])
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["num_classes"] == 3 and s["steps"] == 3
    meta = json.loads((out / "teacher.json").read_text())
    assert meta["arch"] == "cnn8" and meta["num_classes"] == 3
    from tenfold.nets import load_teacher

    assert load_teacher(out / "teacher.pt").fc.out_features == 3


# ---- bad input: one line "error: ..." on stderr, exit code 2 --------------------------------------------
def _error_line(fn, argv, capsys):
    with pytest.raises(SystemExit) as e:
        fn(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


def test_cli_unknown_key_wrong_type_bad_value(tiny_teacher, tmp_path, capsys):
    base = [f"model.teacher={tiny_teacher}", "--out", str(tmp_path / "x")]
    assert "loss.balanse" in _error_line(cli.train, base + ["loss.balanse=1"], capsys)
    assert "did you mean 'loss.balance'" in _error_line(cli.train, base + ["loss.balanse=1"], capsys)
    assert "train.kd_steps" in _error_line(cli.train, base + ["train.kd_steps=many"], capsys)
    assert "kd_ood_normalization" in _error_line(cli.train, base + ["data.kd_ood_normalization=x"], capsys)
    assert "discriminator.kind" in _error_line(cli.train, base + ["discriminator.kind=dcgan"], capsys)
    assert "method" in _error_line(cli.kd, base + ["method=fitnet"], capsys)
    assert "config file not found" in _error_line(cli.train, ["--config", str(tmp_path / "none.yaml")], capsys)


def test_cli_missing_teacher_and_data(tmp_path, capsys, tiny_teacher):
    assert "model.teacher" in _error_line(cli.train, ["--out", str(tmp_path / "a")], capsys)
    msg = _error_line(cli.train, ["model.teacher=/nonexistent/t.pt", "--out", str(tmp_path / "a")], capsys)
    assert "teacher weights not found" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = _error_line(cli.train, [f"model.teacher={tiny_teacher}", "data.in_domain=cifar10", "--data-root",
                                  str(empty), "--out", str(tmp_path / "b")], capsys)
    assert "CIFAR-10 not found" in msg and "cifar10/train.npz" in msg
    msg = _error_line(cli.kd, [f"model.teacher={tiny_teacher}", "data.ood=[svhn]", "data.in_domain=shapes",
                               "--data-root", str(empty), "--out", str(tmp_path / "c")], capsys)
    assert "SVHN not found" in msg
    msg = _error_line(cli.train, [f"model.teacher={tiny_teacher}", "data.ood=[imagenet]", "data.in_domain=shapes",
                                  "--out", str(tmp_path / "d")], capsys)
    assert "unknown data set 'imagenet'" in msg


def test_cli_corrupt_and_foreign_checkpoints(tiny_teacher, tmp_path, capsys):
    argv = TINY_MOSAIC + [f"model.teacher={tiny_teacher}", "--out", str(tmp_path / "r")]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    assert "corrupt or truncated" in _error_line(cli.train, argv + ["--resume", str(bad)], capsys)
    kd_dir = tmp_path / "kd"
    run_kd(load(KDConfig, None, SHAPES + ["model.student=cnn8", f"model.teacher={tiny_teacher}", "batch_size=16",
                                          "steps=1", f"out={kd_dir}", "eval_teacher=false"]))
    # --accept-config-change: get past the spine's config comparison (a KD config differs) to the kind check
    assert "not 'mosaickd'" in _error_line(cli.train, argv + ["--resume", str(kd_dir / "last.pt"),
                                                             "--accept-config-change"], capsys)
    # a checkpoint of another student architecture
    run_mosaic(mosaic_cfg(tiny_teacher, tmp_path / "m", "train.iters=1"))
    msg = _error_line(cli.train, argv + ["model.student=cnn16", "--resume", str(tmp_path / "m" / "last.pt"),
                                         "--accept-config-change"], capsys)
    assert "shape mismatch" in msg or "does not match" in msg
    # a teacher file that is not a state dict of the named architecture
    wrong = tmp_path / "wrong.pt"
    torch.save({"x": torch.zeros(1)}, wrong)
    wrong.with_suffix(".json").write_text(json.dumps({"arch": "cnn8", "num_classes": 5}))
    assert "does not match" in _error_line(cli.train, TINY_MOSAIC + [f"model.teacher={wrong}", "--out",
                                                                     str(tmp_path / "w")], capsys)


def test_cli_help_explains_options(capsys):
    for fn in (cli.train, cli.kd, cli.teacher):
        with pytest.raises(SystemExit) as e:
            fn(["--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        for opt in ("--config", "--out", "--resume", "--device", "--seed", "--data-root", "--stop-at", "KEY=VALUE"):
            assert opt in text


def test_defaults_follow_spec_pitfall12():
    m, k = MosaicConfig(), KDConfig()
    assert (m.loss.local, m.loss.align, m.loss.adv, m.loss.balance, m.loss.T) == (1.0, 1.0, 1.0, 10.0, 1.0)
    assert (m.train.batch_size, m.train.kd_steps, m.train.epochs, m.generator.nz, m.discriminator.ndf) == (
        256, 5, 200, 100, 128)
    assert (m.optim.lr, m.optim.lr_g, m.optim.betas, m.optim.weight_decay) == (0.1, 1e-3, (0.5, 0.999), 1e-4)
    assert m.data.kd_ood_normalization == "ood" and m.data.kd_ood_augment
    assert k.T == 5.0 and k.augment == "in_domain" and k.batch_size == 128  # vanilla KD: tau 5, in-domain aug


def test_every_shipped_config_loads():
    from pathlib import Path

    from mosaickd.config import TeacherConfig

    files = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert len(files) >= 10
    for f in files:
        schema = TeacherConfig if "teacher" in f.stem else KDConfig if "kd" in f.stem.split("_")[0:2] else MosaicConfig
        if f.stem.endswith("_kd"):
            schema = KDConfig
        cfg = load(schema, f)
        assert cfg is not None, f
