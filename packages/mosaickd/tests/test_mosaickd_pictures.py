"""Progress pictures (issue #16): the generator's synthetic batch as a grid at every evaluation
(`synthetic/step_<N>.png`) and at the end (`synthetic.png`), drawn between steps without touching the run."""
from pathlib import Path

import torch
from mosaickd.baselines import run_kd
from mosaickd.config import KDConfig, MosaicConfig
from mosaickd.train import run_mosaic
from PIL import Image
from tenfold.config import load

SHAPES = ["data.in_domain=shapes", "data.in_domain_classes=[0,1,2,3,4]", "data.ood=[shapes]",
          "data.ood_classes=[5,6,7,8,9]", "data.img_size=16", "data.synthetic_n=200", "device=cpu"]
MOSAIC = SHAPES + ["model.student=cnn8", "generator.nz=8", "generator.ngf=4", "discriminator.ndf=8",
                   "train.batch_size=16", "train.iters=5", "train.kd_steps=1", "train.eval_every=2",
                   "train.eval_teacher=false"]


def _grids(run: Path) -> list[str]:
    names = sorted(p.name for p in (run / "synthetic").glob("*.png"))
    for n in names + [None]:
        with Image.open(run / "synthetic" / n if n else run / "synthetic.png") as im:
            assert im.format == "PNG"
            assert im.size == (8 * 16 + 9 * 2, 8 * 16 + 9 * 2)  # 64 images of 16 px, 8 per row, 2-px padding
            im.verify()
    return names


def test_mosaic_grid_at_each_evaluation_and_the_end(tiny_teacher, tmp_path):
    run_mosaic(load(MosaicConfig, None, MOSAIC + [f"model.teacher={tiny_teacher}", f"out={tmp_path}"]))
    # evaluations at 2, 4 and the last iteration (5); one grid each, plus synthetic.png
    assert _grids(tmp_path) == ["step_0000002.png", "step_0000004.png", "step_0000005.png"]


def test_mosaic_grids_leave_the_run_unchanged(tiny_teacher, tmp_path):
    """A grid per evaluation vs evaluations only at the end: same weights (no RNG draw, no BN update)."""
    a = run_mosaic(load(MosaicConfig, None, MOSAIC + [f"model.teacher={tiny_teacher}", f"out={tmp_path / 'a'}",
                                                       "train.eval_every=1"]))
    b = run_mosaic(load(MosaicConfig, None, MOSAIC + [f"model.teacher={tiny_teacher}", f"out={tmp_path / 'b'}",
                                                       "train.eval_every=1000"]))
    assert len(_grids(tmp_path / "a")) == 5 and len(_grids(tmp_path / "b")) == 1
    assert a["last_top1"] == b["last_top1"]
    sa = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["state"]
    sb = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["state"]
    for net in ("generator", "student"):
        for k in sa[net]:
            assert torch.equal(sa[net][k], sb[net][k]), (net, k)


def test_datafree_baseline_grids(tiny_teacher, tmp_path):
    ov = SHAPES + ["method=datafree", "model.student=cnn8", f"model.teacher={tiny_teacher}", "batch_size=16",
                   "steps=3", "eval_every=2", "generator.nz=8", "generator.ngf=4", "datafree.kd_steps=1",
                   "datafree.g_steps_per_epoch=2", "eval_teacher=false", f"out={tmp_path}"]
    run_kd(load(KDConfig, None, ov))
    assert _grids(tmp_path) == ["step_0000002.png", "step_0000003.png"]
