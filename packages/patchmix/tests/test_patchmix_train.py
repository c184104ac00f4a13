"""Training loop: exact resume, CLIs, bad input -> one clear error line, evaluation protocols."""
import json
from pathlib import Path

import pytest
import torch
from patchmix.cli import eval_main, train_main

DEMO = str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")
SMALL = ["device=cpu", "data.shapes_train=64", "data.shapes_test=32", "optim.batch_size=16", "optim.steps=6",
         "optim.warmup_epochs=0.5", "monitor.knn_final=false", "log_every=1", "ckpt_every=0"]


def run_cli(fn, argv, capsys):
    capsys.readouterr()  # drop what earlier calls printed (progress lines on stderr)
    with pytest.raises(SystemExit) as e:
        fn(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return e.value.code, err


def test_resume_is_bitwise_exact(tmp_path):
    train_main(["--config", DEMO, "--out", str(tmp_path / "a"), *SMALL])
    train_main(["--config", DEMO, "--out", str(tmp_path / "b"), "--stop-at", "3", *SMALL])
    partial = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert partial["loop"]["step"] == 3
    train_main(["--config", DEMO, "--out", str(tmp_path / "b"), *SMALL, "--resume"])
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["state"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["state"]
    for part in ("online", "momentum"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert (tmp_path / "a" / "config.yaml").is_file() and (tmp_path / "a" / "backbone.pt").is_file()
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["final_m"] == 2.0
    from patchmix.evaluate import load_pretrained

    assert load_pretrained(str(tmp_path / "a"))[2] == "momentum"  # pitfall 11: the momentum encoder by default


def test_unknown_key_and_wrong_type(tmp_path, capsys):
    code, err = run_cli(train_main, ["--config", DEMO, "--out", str(tmp_path), "mix.mixnum=[2]"], capsys)
    assert code == 2 and len(err) == 1 and "mix.mixnum" in err[0] and "mix.mix_num" in err[0]
    code, err = run_cli(train_main, ["--config", DEMO, "--out", str(tmp_path), "loss.temp=hot"], capsys)
    assert code == 2 and len(err) == 1 and "loss.temp" in err[0]
    code, err = run_cli(train_main, ["--config", DEMO, "--out", str(tmp_path), "mix.patch_size=[5]"], capsys)
    assert code == 2 and len(err) == 1 and "divide" in err[0]


def test_missing_data(tmp_path, capsys):
    code, err = run_cli(train_main, ["--config", DEMO, "--out", str(tmp_path), "--data-root", str(tmp_path / "no"),
                                     "data.dataset=cifar10"], capsys)
    assert code == 2 and len(err) == 1 and "CIFAR-10 not found" in err[0]


def test_corrupt_and_mismatched_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    code, err = run_cli(train_main, ["--config", DEMO, "--out", str(tmp_path / "r"), "--resume", str(bad), *SMALL],
                        capsys)
    assert code == 2 and len(err) == 1 and "corrupt" in err[0]
    train_main(["--config", DEMO, "--out", str(tmp_path / "a"), "--stop-at", "1", *SMALL])
    code, err = run_cli(train_main, ["--config", DEMO, "--out", str(tmp_path / "m"), "--resume",
                                     str(tmp_path / "a" / "last.pt"), "model.embed_dim=32", *SMALL,
                                     "--accept-config-change"], capsys)  # past the spine's config-change check
    assert code == 2 and len(err) == 1 and "shape mismatch" in err[0]


def test_nan_loss_stops_and_keeps_last_good(tmp_path, capsys):
    out = tmp_path / "run"
    train_main(["--config", DEMO, "--out", str(out), "--stop-at", "2", *SMALL])
    before = (out / "last.pt").read_bytes()
    nan = ["loss.temp=1e-40", "loss.warmup_temp=1e-40"]  # logits overflow to inf -> NaN loss
    code, err = run_cli(train_main, ["--config", DEMO, "--out", str(out), *SMALL, *nan, "--resume",
                                     "--accept-config-change"], capsys)  # past the spine's config-change check
    assert code == 2 and len(err) == 1 and "loss became" in err[0]
    assert (out / "last.pt").read_bytes() == before


def test_eval_protocols(tmp_path, capsys):
    run = tmp_path / "pre"
    train_main(["--config", DEMO, "--out", str(run), *SMALL, "model.framework=no_momentum"])
    common = ["--checkpoint", str(run), "device=cpu", "data.dataset=shapes", "data.shapes_train=64",
              "data.shapes_test=32"]
    assert eval_main([*common, "--out", str(tmp_path / "knn"), "knn.k=[5,20]"]) == 0
    res = json.loads((tmp_path / "knn" / "summary.json").read_text())
    assert res["encoder"] == "online" and 0 <= res["knn5_top1"] <= 100 and "knn20_top5" in res
    assert eval_main([*common, "--out", str(tmp_path / "knnq3"), "knn.k=[5]", "knn.faithful_random_head=true"]) == 0
    assert eval_main([*common, "--out", str(tmp_path / "lin"), "--protocol", "linear", "linear.epochs=2",
                      "linear.batch_size=16"]) == 0
    res = json.loads((tmp_path / "lin" / "summary.json").read_text())
    assert res["linear_top1_best"] >= res["linear_top1_last"] >= 0
    assert eval_main([*common, "--out", str(tmp_path / "ft"), "--protocol", "finetune", "finetune.epochs=1",
                      "finetune.batch_size=16", "finetune.warmup_epochs=0.5"]) == 0
    res = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert 0 <= res["finetune_top1_last"] <= 100
    code, err = run_cli(eval_main, [*common, "--out", str(tmp_path / "e"), "encoder=momentum"], capsys)
    assert code == 2 and len(err) == 1 and "no momentum encoder" in err[0]
    code, err = run_cli(eval_main, ["--checkpoint", str(tmp_path / "nothing"), "--out", str(tmp_path / "e2")],
                        capsys)
    assert code == 2 and len(err) == 1 and "not found" in err[0]


@pytest.mark.parametrize("path", sorted((Path(DEMO).parent).glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_loads(path):
    from patchmix.config import EvalConfig, PretrainConfig
    from tenfold import config as config_mod

    schema = EvalConfig if "eval" in path.name else PretrainConfig
    cfg = config_mod.load(schema, path)
    if schema is PretrainConfig and "tiny_cpu" not in path.name and path.name != "demo.yaml":
        assert cfg.seed == 7 and cfg.loss.temp == 0.2 and cfg.mix.mix_num == [2]
        assert tuple(cfg.aug.mean) == (0.485, 0.456, 0.406) and cfg.aug.blur_p[0] == 1.0
        if "cifar" in path.name:  # pitfall 12: patch 2, no multi-crop, scale (0.1, 1)
            assert cfg.model.patch_size == 2 and cfg.aug.local_crops == 0 and tuple(cfg.aug.global_scale) == (0.1, 1)
        else:
            assert cfg.model.patch_size == 16 and cfg.aug.local_crops == 8
