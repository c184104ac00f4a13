"""ImageNet-style pre-training crops (issue #18): RandomResizedCrop's box is drawn on the full-resolution image, per
sample in the loader (torchvision's get_params under the loader's per-sample seed), so crops reach the borders that
the earlier 256-px centre pre-crop cut away. CIFAR-style array data sets keep the batched crops on the device."""
from pathlib import Path

import pytest
import torch
from patchmix.data import CropSpec, FolderCrops, FolderImages, load_split
from PIL import Image
from tenfold.data import SeededDataset
from torchvision.transforms import InterpolationMode, RandomResizedCrop
from torchvision.transforms import functional as TF

BAND = 10  # px of pure colour along each edge; the interior is grey
COLOURS = {"left": (255, 0, 0), "right": (0, 0, 255), "top": (0, 255, 0), "bottom": (255, 0, 255)}


def _bordered(h: int, w: int) -> Image.Image:
    x = torch.full((h, w, 3), 128, dtype=torch.uint8)
    x[:BAND] = torch.tensor(COLOURS["top"], dtype=torch.uint8)
    x[-BAND:] = torch.tensor(COLOURS["bottom"], dtype=torch.uint8)
    x[:, :BAND] = torch.tensor(COLOURS["left"], dtype=torch.uint8)
    x[:, -BAND:] = torch.tensor(COLOURS["right"], dtype=torch.uint8)
    return Image.fromarray(x.numpy())


def _folder(root: Path) -> Path:
    """train/ and val/ with one wide (40x100) and one tall (100x40) image per class; PNG and JPEG."""
    for split in ("train", "val"):
        for c, ext in (("a", "png"), ("b", "jpg")):
            (root / split / c).mkdir(parents=True)
            _bordered(40, 100).save(root / split / c / f"wide.{ext}", quality=95)
            _bordered(100, 40).save(root / split / c / f"tall.{ext}", quality=95)
    return root


def _has(view: torch.Tensor, colour) -> bool:
    """Some pixel of a uint8 [3, s, s] view is close to `colour` (bicubic blends the band into the grey)."""
    d = (view.float() - torch.tensor(colour, dtype=torch.float32).view(3, 1, 1)).abs().amax(0)
    return bool((d < 70).any())


CROPS = (CropSpec(16, (0.08, 1.0)), CropSpec(16, (0.08, 1.0)), CropSpec(8, (0.05, 0.35)))


def test_boxes_and_pixels_are_torchvisions_on_fixed_seeds(tmp_path):
    ds = FolderCrops(_folder(tmp_path) / "train", CROPS)
    seeded = SeededDataset(ds)
    for idx in range(len(ds)):
        img = ds.ds[idx][0].convert("RGB")
        for seed in range(10):
            views, y = seeded[(idx, seed)]
            assert y == ds.targets[idx] and len(views) == len(CROPS)
            torch.manual_seed(seed)  # what the loader's per-sample seeding does around __getitem__
            for v, c in zip(views, CROPS):
                box = RandomResizedCrop.get_params(img, list(c.scale), list(c.ratio))
                want = TF.pil_to_tensor(TF.resized_crop(img, *box, [c.size, c.size], InterpolationMode.BICUBIC))
                assert v.dtype == torch.uint8 and torch.equal(v, want), (idx, seed, box)


def test_crops_reach_the_borders_of_non_square_images(tmp_path):
    root = _folder(tmp_path)
    spec = CropSpec(16, (0.08, 1.0))
    ds = SeededDataset(FolderCrops(root / "train", (spec,)))
    wide, tall = 1, 0  # ImageFolder order within class a: tall.png, wide.png
    assert ds.dataset.ds[wide][0].size == (100, 40)
    n = 300
    seen = {k: 0 for k in COLOURS}
    for s in range(n):
        v = ds[(wide, s)][0][0]
        seen["left"] += _has(v, COLOURS["left"])
        seen["right"] += _has(v, COLOURS["right"])
        v = ds[(tall, s)][0][0]
        seen["top"] += _has(v, COLOURS["top"])
        seen["bottom"] += _has(v, COLOURS["bottom"])
    # torchvision's own boxes on the full 40x100 image: how often a box overlaps the left band (measured 0.14;
    # the views above showed the four bands in 0.12-0.16 of the draws)
    img = torch.zeros(3, 40, 100)
    torch.manual_seed(0)
    boxes = torch.tensor([RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(4000)])
    p_band = (boxes[:, 1] < BAND).double().mean().item()
    assert p_band > 0.08
    for side, k in seen.items():  # each border is reached about as often as torchvision's boxes reach it
        assert 0.5 * p_band < k / n < 1.5 * p_band, (side, k / n, p_band)
    # the earlier path (shorter side to 40, centre crop 40x40) had cut both long-side borders away entirely
    old = FolderImages(root / "train", 40)
    assert not _has(old[wide][0], COLOURS["left"]) and not _has(old[wide][0], COLOURS["right"])
    assert not _has(old[tall][0], COLOURS["top"]) and not _has(old[tall][0], COLOURS["bottom"])


def test_load_split_gives_loader_crops_only_for_image_folder_training(tmp_path):
    from patchmix.config import DataConfig

    root = _folder(tmp_path)
    dcfg = DataConfig(dataset="imagefolder", path=str(root), base_size=32)
    assert isinstance(load_split(dcfg, True, crops=CROPS), FolderCrops)
    assert isinstance(load_split(dcfg, True), FolderImages)  # evaluation: resize + centre crop, as before
    assert isinstance(load_split(dcfg, False, crops=CROPS), FolderImages)
    shapes = load_split(DataConfig(dataset="shapes", shapes_train=8), True, crops=CROPS)  # arrays: unchanged
    assert shapes[0][0].shape == (3, 32, 32)


DEMO = str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")


def _spy(mp) -> list:
    """Record the size of every image FolderCrops draws boxes on."""
    drawn = []
    real_boxes = FolderCrops.boxes
    mp.setattr(FolderCrops, "boxes", lambda self, img: drawn.append(img.size) or real_boxes(self, img))
    return drawn


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 2-step pre-training on an image folder with two local crops: (folder overrides, run dir, boxes drawn)."""
    from patchmix.cli import train_main

    tmp = tmp_path_factory.mktemp("folder_pretrain")
    folder = ["device=cpu", "data.dataset=imagefolder", f"data.path={_folder(tmp / 'data')}", "data.base_size=37"]
    with pytest.MonkeyPatch.context() as mp:
        drawn = _spy(mp)
        train_main(["--config", DEMO, "--out", str(tmp / "run"), *folder, "optim.batch_size=4", "optim.steps=2",
                    "optim.warmup_epochs=0", "aug.rrc=torchvision", "aug.local_crops=2", "aug.local_size=16",
                    "aug.local_scale=[0.05,0.35]", "monitor.knn_final=true", "log_every=1", "ckpt_every=0"])
    return folder, tmp / "run", drawn


def test_pretrain_on_an_image_folder(pretrained):
    """End to end: views come cropped from the loader (two globals + two local crops per image), the device adds
    the rest; the kNN monitor still evaluates on resized, centre-cropped images."""
    import json

    _, run, drawn = pretrained
    s = json.loads((run / "summary.json").read_text())
    assert s["steps"] == 2 and "knn_top1" in s
    assert all(torch.isfinite(torch.tensor(s[f"final_{k}"])) for k in ("loss", "l_src", "l_multi", "l_multi_mix"))
    assert len(drawn) == 2 * 4 and set(drawn) == {(100, 40), (40, 100)}  # full-resolution originals, per sample


@pytest.mark.parametrize("protocol", ["linear", "finetune"])
def test_linear_and_finetune_crops_come_from_the_originals(pretrained, tmp_path, monkeypatch, protocol):
    """The linear probe (augment=true) and fine-tuning (RandomResizedCrop, no padding) on an image folder crop the
    full-resolution training images in the loader too; their test images keep the resize + centre crop."""
    import json

    from patchmix.cli import eval_main

    folder, run, _ = pretrained
    drawn = _spy(monkeypatch)
    extra = (["linear.epochs=1", "linear.batch_size=4", "linear.augment=true"] if protocol == "linear" else
             ["finetune.epochs=1", "finetune.batch_size=4", "finetune.warmup_epochs=0", "finetune.random_crop_pad=0",
              "finetune.randaug_ops=1"])
    assert eval_main(["--checkpoint", str(run), "--out", str(tmp_path / protocol), *folder,
                      "--protocol", protocol, *extra]) == 0
    res = json.loads((tmp_path / protocol / "summary.json").read_text())
    assert 0 <= res[f"{protocol}_top1_last"] <= 100
    assert len(drawn) == 4 and set(drawn) == {(100, 40), (40, 100)}  # one epoch of 4 originals, one crop each
