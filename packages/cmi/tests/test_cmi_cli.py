"""Exact resume of the distillation loop, and bad input -> one clear error line (exit 2)."""
from pathlib import Path

import pytest
import torch
from cmi.cli import distill_main, distill_parser, load_distill_config, synthesize_main
from cmi.train import Distiller


def _argv(teacher, out, *extra):
    return ["--out", str(out), "--device", "cpu", "--seed", "3", f"teacher.path={teacher}", "student.arch=toynet8",
            "data.dataset=toy", "data.image_size=16", "data.test_subset=200", "synth.batch_size=8",
            "synth.g_steps=2", "synth.lr_g=0.01", "synth.nz=16", "synth.ngf=8", "synth.bank_size=16",
            "synth.n_neg=8", "synth.head_dim=16", "kd.epochs=2", "kd.ep_steps=4", "kd.kd_steps=2",
            "kd.batch_size=16", "kd.lr=0.05", "eval_teacher=false", *extra]


def _cfg(argv):
    return load_distill_config(distill_parser().parse_intermixed_args(argv))


@pytest.mark.parametrize("method", ["cmi", "deepinversion", "dfq"])
def test_resume_is_bitwise_exact(method, toy_teacher_file, tmp_path):
    extra = [f"--method={method}", "ckpt_every_rounds=1"]
    if method == "dfq":
        extra += ["synth.g_steps=1", "kd.kd_steps=2"]
    straight = Distiller(_cfg(_argv(toy_teacher_file, tmp_path / "a", *extra)), quiet=True)
    straight.run()
    part = Distiller(_cfg(_argv(toy_teacher_file, tmp_path / "b", *extra)), quiet=True)
    part.run(stop_after_round=1)  # an interruption mid-epoch (2 rounds per epoch)
    resumed = Distiller(_cfg(_argv(toy_teacher_file, tmp_path / "b", *extra)), quiet=True)
    assert resumed.resume("auto") and resumed.round == 1
    resumed.run()
    for (k, a), b in zip(straight.student.state_dict().items(), resumed.student.state_dict().values()):
        assert torch.equal(a, b), k
    if method == "cmi":
        for a, b in zip(straight.synth.head.parameters(), resumed.synth.head.parameters()):
            assert torch.equal(a, b)
        assert torch.equal(straight.pool.tensor(), resumed.pool.tensor())
    assert straight.history == resumed.history
    assert (tmp_path / "a" / "summary.json").is_file() and (tmp_path / "a" / "config.yaml").is_file()


def _run_err(main, argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_bad_config_key_and_type(toy_teacher_file, tmp_path, capsys):
    msg = _run_err(distill_main, _argv(toy_teacher_file, tmp_path, "synth.crT=0.1"), capsys)
    assert "synth.crT" in msg and "cr_T" in msg
    msg = _run_err(distill_main, _argv(toy_teacher_file, tmp_path, "kd.epochs=many"), capsys)
    assert "kd.epochs" in msg
    msg = _run_err(distill_main, _argv(toy_teacher_file, tmp_path, "synth.bank_size=20"), capsys)
    assert "multiple" in msg


def test_missing_data_and_teacher(toy_teacher_file, tmp_path, capsys):
    msg = _run_err(distill_main, _argv(toy_teacher_file, tmp_path, "data.dataset=cifar10", "data.image_size=32",
                                       "--data-root", str(tmp_path / "nodata")), capsys)
    assert "CIFAR-10 not found" in msg
    msg = _run_err(distill_main, _argv(tmp_path / "nope.pt", tmp_path), capsys)
    assert "teacher weights not found" in msg


def test_mismatched_teacher_and_corrupt_checkpoint(toy_teacher_file, tmp_path, capsys):
    msg = _run_err(distill_main, _argv(toy_teacher_file, tmp_path, "teacher.arch=toynet8"), capsys)
    assert "shape mismatch" in msg or "does not match" in msg
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    msg = _run_err(distill_main, _argv(toy_teacher_file, tmp_path / "r", "--resume", str(bad)), capsys)
    assert "corrupt" in msg
    msg = _run_err(synthesize_main, ["--out", str(tmp_path / "s"), f"teacher.path={toy_teacher_file}",
                                     "data.dataset=toy", "data.image_size=16", "--resume", str(bad)], capsys)
    assert "corrupt" in msg


def test_nan_loss_stops_and_keeps_last_good_checkpoint(toy_teacher_file, tmp_path, capsys):
    out = tmp_path / "nan"
    d = Distiller(_cfg(_argv(toy_teacher_file, out, "ckpt_every_rounds=1")), quiet=True)
    d.run(stop_after_round=1)
    good = (out / "last.pt").read_bytes()
    # continue the run with a diverging lr (an --out holding a run is only ever resumed, never overwritten)
    msg = _run_err(distill_main, _argv(toy_teacher_file, out, "ckpt_every_rounds=1", "kd.lr=1e30", "--resume",
                                       "--accept-config-change"), capsys)
    assert "became" in msg and "last good checkpoint" in msg
    assert (out / "last.pt").read_bytes() == good


def test_synthesize_cli_exports_pool_for_warm_start(toy_teacher_file, tmp_path, capsys):
    out = tmp_path / "syn"
    synthesize_main(["--out", str(out), "--device", "cpu", f"teacher.path={toy_teacher_file}", "data.dataset=toy",
                     "data.image_size=16", "rounds=2", "synth.batch_size=8", "synth.g_steps=2", "synth.nz=16",
                     "synth.ngf=8", "synth.bank_size=16", "synth.n_neg=8", "synth.head_dim=16", "png=true"])
    import numpy as np

    with np.load(out / "pool.npz") as f:
        assert f["images"].shape == (16, 16, 16, 3) and f["images"].dtype == np.uint8
    assert len(list((out / "images").glob("*.png"))) == 16
    d = Distiller(_cfg(_argv(toy_teacher_file, tmp_path / "warm", f"kd.init_pool={out / 'pool.npz'}")), quiet=True)
    assert len(d.pool) == 16


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_loads(path):
    from cmi.config import SynthesizeConfig, TeacherTrainConfig
    from tenfold import config as config_mod

    if "teacher" in path.stem and path.stem != "demo":
        cfg = config_mod.load(TeacherTrainConfig, path)
        assert cfg.epochs >= 1
    elif path.stem.startswith("synthesize"):
        assert config_mod.load(SynthesizeConfig, path).synth.g_steps == 400
    else:
        cfg = _cfg(["--config", str(path)])
        assert cfg.kd.ep_steps % cfg.kd.kd_steps == 0


def test_method_presets_and_override_order():
    dafl = _cfg(["--method", "dafl"])
    got = (dafl.synth.nz, dafl.synth.balance, dafl.synth.act, dafl.kd.T, dafl.kd.kd_steps)
    assert got == (512, 20.0, 0.001, 1.0, 5)
    dfad = _cfg(["--method", "dfad", "kd.T=2"])
    assert dfad.kd.loss == "l1" and dfad.synth.gan_loss == "l1" and dfad.kd.T == 2.0
    cmi = _cfg([])
    assert (cmi.synth.cr, cmi.synth.cr_T, cmi.synth.adv, cmi.kd.T, cmi.synth.bank_size) == (0.8, 0.1, 0.5, 20.0, 40960)


def test_teacher_cli_then_vanilla_kd_upper_bound(tmp_path):
    from cmi.cli import teacher_main

    tdir = tmp_path / "teacher"
    teacher_main(["--out", str(tdir), "--device", "cpu", "arch=toynet16", "num_classes=4", "data.dataset=toy",
                  "data.image_size=16", "epochs=1", "batch_size=64", "lr=0.05", "milestones=[1]"])
    assert (tdir / "teacher.pt").is_file() and (tdir / "teacher.json").is_file()
    d = Distiller(_cfg(_argv(tdir / "teacher.pt", tmp_path / "vanilla", "--method=vanilla", "kd.epochs=1",
                             "kd.ep_steps=2")), quiet=True)
    assert len(d.pool) == 2000  # the real toy training images
    summary = d.run()
    assert summary["rounds"] == 1 and summary["last_top1"] is not None
