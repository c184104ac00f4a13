"""Training loop: exact resume, CLI errors (config, data, checkpoint, NaN), export, configs (pitfall 13)."""
import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mgc.cli import _eval_cli, _export_cli, _train_cli
from mgc.config import TrainConfig
from mgc.export import from_timm_layout, load_backbone
from mgc.train import build, train
from tenfold.config import load
from tenfold.nets import VisionTransformer

PKG = Path(__file__).resolve().parents[1]
TINY = ["data.dataset=synthetic", "data.synthetic_n=64", "data.num_workers=0", "model.img_size=16",
        "model.patch_size=4", "model.embed_dim=32", "model.depth=1", "model.num_heads=2", "model.levels=[1,2,4]",
        "model.pairs=[4,2,1]", "model.proj_hidden=32", "model.pred_hidden=32", "model.out_dim=16",
        "views.stride_rules=null", "optim.batch_size=8", "optim.steps=6", "optim.warmup_steps=2",
        "monitor.final_eval=false", "log_every=1"]


def _cfg(out, extra=()):
    return load(TrainConfig, None, TINY + [f"out={out}", *extra])


def test_resume_is_bitwise_exact(tmp_path):
    train(_cfg(tmp_path / "a"))
    train(_cfg(tmp_path / "b"), stop_at=3)
    train(_cfg(tmp_path / "b"), resume="auto")
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["state"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["state"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["opt"]["state"], b["opt"]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


def test_optimizer_groups_and_lr_scaling(tmp_path):
    cfg = _cfg(tmp_path, ["optim.batch_size=64", "optim.lr_base=1e-3", "data.synthetic_n=128"])
    model, opt, *_, lr = build(cfg, torch.device("cpu"))
    assert lr == pytest.approx(1e-3 * 64 / 256)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 0.05  # official: all decayed
    n_trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(opt.param_groups[0]["params"]) == n_trainable
    cfg = _cfg(tmp_path, ["optim.decay_norm_bias=false"])
    _, opt, *_ = build(cfg, torch.device("cpu"))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert all(p.ndim >= 2 for p in opt.param_groups[0]["params"])


def _err(capsys, fn, argv):
    with pytest.raises(SystemExit) as e:
        fn(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


def test_cli_config_errors(tmp_path, capsys):
    assert "model.levels" in _err(capsys, _train_cli, TINY + ["model.levls=[1]", f"--out={tmp_path}"])
    assert "optim.steps" in _err(capsys, _train_cli, TINY + ["optim.steps=abc", f"--out={tmp_path}"])
    assert "does not divide" in _err(capsys, _train_cli, TINY + ["model.levels=[1,3,4]", f"--out={tmp_path}"])
    assert "stride_rules" in _err(capsys, _train_cli, TINY + ["views.stride_rules=[[1,1,1,1,1,1]]",
                                                               f"--out={tmp_path}"])


def test_cli_missing_data(tmp_path, capsys):
    msg = _err(capsys, _train_cli, TINY + ["data.dataset=cifar10", f"--data-root={tmp_path}/none",
                                           f"--out={tmp_path}"])
    assert "CIFAR-10 not found" in msg


def test_cli_corrupt_and_mismatched_checkpoints(tmp_path, capsys):
    out = tmp_path / "run"
    _train_cli(TINY + ["optim.steps=2", f"--out={out}"])
    capsys.readouterr()
    msg = _err(capsys, _train_cli, TINY + ["model.embed_dim=64", f"--out={out}", "--resume"])
    assert "model.embed_dim: 32 -> 64" in msg  # the spine's resume config check names the change
    msg = _err(capsys, _train_cli, TINY + ["model.embed_dim=64", f"--out={out}", "--resume",
                                           "--accept-config-change"])
    assert "shape mismatch" in msg
    (out / "last.pt").write_bytes(b"not a checkpoint")
    # (the accepted embed_dim change above is recorded in config.yaml, so going back is a change too)
    assert "corrupt" in _err(capsys, _train_cli, TINY + [f"--out={out}", "--resume", "--accept-config-change"])
    assert "corrupt" in _err(capsys, _eval_cli, [f"--checkpoint={out / 'last.pt'}", "dataset=synthetic"])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    _train_cli(TINY + ["optim.steps=2", f"--out={out}"])
    good = (out / "last.pt").read_bytes()
    capsys.readouterr()
    # T = 1e-45 makes the logits overflow to inf: the loss is NaN at the first new step
    msg = _err(capsys, _train_cli, TINY + ["optim.steps=4", "loss.temperature=1e-45", f"--out={out}", "--resume",
                                           "--accept-config-change"])
    assert "loss became nan at step 3" in msg
    assert (out / "last.pt").read_bytes() == good


def test_export_loads_strict_into_plain_vit_and_eval_runs(tmp_path, capsys):
    out = tmp_path / "run"
    _train_cli(TINY + ["optim.steps=2", f"--out={out}"])
    _export_cli([str(out), str(tmp_path / "bb.pt")])
    vit, meta = load_backbone(tmp_path / "bb.pt")
    assert isinstance(vit, VisionTransformer) and meta["vit"]["num_heads"] == 2
    sd = torch.load(tmp_path / "bb.pt", weights_only=True)
    assert not any(k.startswith(("base_encoder", "momentum", "projectors", "predictors")) for k in sd)
    plain = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2, pos_embed="sincos")
    plain.load_state_dict(from_timm_layout(sd), strict=True)
    ck = torch.load(out / "last.pt", weights_only=False)["state"]["model"]
    assert torch.equal(sd["blocks.0.attn.qkv.weight"], ck["base_encoder.blocks.0.attn.qkv.weight"])
    _export_cli([str(out), str(tmp_path / "mom.pt"), "--encoder", "momentum"])
    sdm = torch.load(tmp_path / "mom.pt", weights_only=True)
    assert torch.equal(sdm["blocks.0.attn.qkv.weight"], ck["momentum_encoder.blocks.0.attn.qkv.weight"])
    capsys.readouterr()
    res = _eval_cli([f"--checkpoint={tmp_path / 'bb.pt'}", "dataset=synthetic", "bank=100", "test=50",
                     "pairs=20", "probe_epochs=2", f"--out={tmp_path / 'ev'}"])
    assert 0 <= res["knn_top1"] <= 100 and 0 <= res["corr_retrieval"] <= 100
    assert (tmp_path / "ev" / "summary.json").is_file()


@pytest.mark.parametrize("path", sorted(glob.glob(str(PKG / "configs" / "*.yaml"))), ids=os.path.basename)
def test_shipped_configs_load(path):
    cfg = load(TrainConfig, path)
    g = cfg.model.img_size // cfg.model.patch_size
    assert all(g % c == 0 for c in cfg.model.levels)


def test_console_scripts_help(capsys):
    exe = Path(sys.executable).parent / "mgc-train"  # the installed entry point, once (a process costs seconds)
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--resume" in r.stdout and "KEY=VALUE" in r.stdout
    for fn in (_eval_cli, _export_cli):
        with pytest.raises(SystemExit) as e:
            fn(["--help"])
        assert e.value.code == 0
    assert "--encoder" in capsys.readouterr().out


def test_image_folder_pool_gives_views_and_correspondences(tmp_path):
    """COCO/VOC/ADE20K are read as ImageFolder trees (user's download); tested on a generated tree."""
    from mgc.data import pretrain_images
    from mgc.views import MGCViews, TwoViewBoxTransform
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            arr = torch.randint(0, 256, (40 + 10 * i, 64, 3), generator=rng, dtype=torch.uint8).numpy()
            Image.fromarray(arr).save(tmp_path / "imgs" / c / f"{i}.png")
    cfg = load(TrainConfig, None, TINY + [f"data.path={tmp_path / 'imgs'}", "data.dataset=image_folder",
                                          "data.subset=4"])
    base = pretrain_images(cfg.data)
    assert len(base) == 4
    item, _ = MGCViews(base, TwoViewBoxTransform(cfg.model, cfg.views, cfg.augment))[0]
    assert item["view1"].shape == item["view2"].shape == (3, 16, 16) and item["view1"].dtype == torch.uint8
    assert [len(c[0]) for c in item["corr"]] == [4, 2, 1]
    with pytest.raises(Exception, match="not found"):
        pretrain_images(load(TrainConfig, None, TINY + [f"data.path={tmp_path / 'nope'}",
                                                        "data.dataset=image_folder"]).data)


def test_paper_evaluation_uses_full_splits():
    """#18: mgc-eval and the GPU/paper configs evaluate on the whole train bank and test set; the class-balanced
    5,000 / 1,000 subsets are the CPU proofs' explicit choice."""
    from mgc.config import EvalConfig
    from mgc.data import labelled_split

    assert (EvalConfig().bank, EvalConfig().test) == (0, 0)
    for name in ("cifar10_vit_tiny_gpu", "cifar10_vit_tiny_gpu_global"):
        cfg = load(TrainConfig, PKG / "configs" / f"{name}.yaml")
        assert (cfg.monitor.bank, cfg.monitor.test) == (0, 0), name
    bank, test = labelled_split("synthetic", None, 0, 0, synthetic_n=60)
    sub, _ = labelled_split("synthetic", None, 20, 10, synthetic_n=60)
    assert len(bank) > len(sub) == 20 and len(test) > 10
