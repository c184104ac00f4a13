"""Data pipeline (spec §2.4, §7a.7, pitfall 4): the two OOD streams' transforms, batched augmentation,
resumable streams, loaders of data sets that are not shipped (tested on tiny generated copies)."""
import io

import numpy as np
import pytest
import torch
from mosaickd.baselines import balanced_indices
from mosaickd.common import norms
from mosaickd.config import DataConfig
from mosaickd.data import BatchStream, ImageSet, crop_flip, load_split
from mosaickd.nets import NORMALIZE_DICT
from tenfold.errors import ConfigError, DataError


def const_set(value=(10, 128, 250), n=8, size=8):
    imgs = torch.tensor(value, dtype=torch.uint8).view(1, 3, 1, 1).expand(n, 3, size, size).contiguous()
    return ImageSet(imgs, torch.zeros(n, dtype=torch.long), "const")


def test_d_real_stream_in_domain_stats_no_augmentation_pitfall4():
    d = DataConfig(in_domain="cifar100", ood=["svhn"])
    n_id, n_kd = norms(d)
    s = BatchStream(const_set(), 4, seed=0, normalizer=n_id, augment=False, device=torch.device("cpu"))
    x, _ = next(s.epoch_batches(0))
    mean, std = NORMALIZE_DICT["cifar100"]
    for c, v in enumerate((10, 128, 250)):
        assert torch.allclose(x[:, c], torch.full_like(x[:, c], (v / 255 - mean[c]) / std[c]), atol=1e-6)
    # the KD stream uses the OOD set's own statistics (code behaviour) unless switched to in_domain
    assert torch.allclose(n_kd.mean.flatten(), torch.tensor(NORMALIZE_DICT["svhn"][0]))
    _, n_kd2 = norms(DataConfig(in_domain="cifar100", ood=["svhn"], kd_ood_normalization="in_domain"))
    assert torch.allclose(n_kd2.mean.flatten(), torch.tensor(mean))


def test_kd_stream_is_augmented():
    n_id, _ = norms(DataConfig(in_domain="shapes", ood=["shapes"]))
    s = BatchStream(const_set(size=16), 8, seed=0, normalizer=n_id, augment=True, device=torch.device("cpu"))
    x, _ = next(s.epoch_batches(0))
    pad_value = (0 - 0.5) / 0.5  # zero padding, normalised
    assert (x == pad_value).any()  # crops reach into the zero padding
    assert len({tuple(xi[0].eq(pad_value).nonzero().sum(0).tolist()) for xi in x}) > 1  # different per image


def test_crop_flip_matches_reference():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(6, 3, 8, 8)
    out = crop_flip(x, g, pad=2)
    g = torch.Generator().manual_seed(3)
    oy, ox = torch.randint(0, 5, (6,), generator=g), torch.randint(0, 5, (6,), generator=g)
    flip = torch.rand(6, generator=g) < 0.5
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        ref = xp[i, :, oy[i]:oy[i] + 8, ox[i]:ox[i] + 8]
        if flip[i]:
            ref = ref.flip(-1)
        assert torch.equal(out[i], ref)


def test_stream_position_resumes_exactly():
    data = ImageSet(torch.randint(0, 255, (10, 3, 8, 8), dtype=torch.uint8), torch.arange(10), "r")
    n_id, _ = norms(DataConfig(in_domain="shapes", ood=["shapes"]))
    a = BatchStream(data, 4, seed=1, normalizer=n_id, augment=True, device=torch.device("cpu"))
    seq = [a.next() for _ in range(7)]  # crosses two epoch boundaries (3 batches per epoch, last one partial)
    assert [len(i) for _, i in seq[:3]] == [4, 4, 2]
    assert sorted(torch.cat([i for _, i in seq[:3]]).tolist()) == list(range(10))
    b = BatchStream(data, 4, seed=1, normalizer=n_id, augment=True, device=torch.device("cpu"))
    for _ in range(4):
        b.next()
    c = BatchStream(data, 4, seed=1, normalizer=n_id, augment=True, device=torch.device("cpu"))
    c.load_position(b.position)
    for (xa, ia) in seq[4:]:
        xc, ic = c.next()
        assert torch.equal(ia, ic) and torch.equal(xa, xc)


def test_mnist_becomes_three_channel_32px(tmp_path):
    (tmp_path / "mnist").mkdir()
    imgs = np.zeros((6, 28, 28), np.uint8)
    imgs[:, 10:18, 10:18] = 255
    np.savez(tmp_path / "mnist" / "train.npz", images=imgs, labels=np.arange(6) % 3)
    s = load_split("mnist", True, root=str(tmp_path), img_size=32, channels=3, classes=[0, 1], cap=3)
    assert s.images.shape == (3, 3, 32, 32) and s.images.dtype == torch.uint8
    assert torch.equal(s.images[:, 0], s.images[:, 2]) and s.images.max() == 255
    assert set(s.labels.tolist()) <= {0, 1}


def _jpeg(arr):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return np.frombuffer(buf.getvalue(), np.uint8)


def test_cifar10_pack_subset_and_class_remap(tmp_path):
    (tmp_path / "cifar10").mkdir()
    labels = np.array([0, 2, 3, 2, 9, 3, 2, 0], dtype=np.int64)
    blobs = [_jpeg(np.full((32, 32, 3), 20 * i, np.uint8)) for i in range(len(labels))]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    np.savez(tmp_path / "cifar10" / "test.npz", jpeg=np.concatenate(blobs), offsets=offsets, labels=labels,
             classes=np.array(["c"] * 10))
    s = load_split("cifar10", False, root=str(tmp_path), classes=[2, 3], remap=True, per_class=2)
    assert sorted(s.labels.tolist()) == [0, 0, 1, 1] and s.images.shape == (4, 3, 32, 32)
    # the decoded pixel values identify which images were picked: all come from classes 2/3
    picked = sorted(round(float(v) / 20) for v in s.images[:, 0, 0, 0])
    assert set(picked) <= {1, 2, 3, 5, 6}


def test_image_folder_sets(tmp_path, cache_env):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "tree" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((40, 40, 3), 50 * i, np.uint8)).save(tmp_path / "tree" / c / f"{i}.png")
    s = load_split(f"folder:{tmp_path / 'tree'}", True, img_size=32)
    assert s.images.shape == (6, 3, 32, 32) and s.labels.tolist() == [0, 0, 0, 1, 1, 1]
    (tmp_path / "ImageNet_32x32" / "train" / "x").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "ImageNet_32x32" / "train" / "x" / "0.png")
    assert len(load_split("imagenet32", True, root=str(tmp_path))) == 1
    with pytest.raises(DataError, match="Places365_32x32"):
        load_split("places365_32", True, root=str(tmp_path))


def test_unknown_names_and_empty_selection(tmp_path):
    with pytest.raises(ConfigError, match="unknown data set"):
        load_split("cifar1000", True, root=str(tmp_path))
    with pytest.raises(DataError, match="no images"):
        load_split("shapes", True, classes=[42], synthetic_n=40)
    with pytest.raises(ConfigError, match="cache_teacher_ood"):
        DataConfig(cache_teacher_ood=True, kd_ood_augment=True).validate()


def test_balanced_indices_balance_pseudo_labels():
    pseudo = torch.tensor([0] * 90 + [1] * 9 + [3] * 1)
    idx = balanced_indices(pseudo, 99, seed=0)
    counts = torch.bincount(pseudo[idx], minlength=4)
    assert counts.tolist() == [33, 33, 0, 33]


def test_patch_shuffle_permutes_whole_patches():
    from mosaickd.data import patch_shuffle

    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.uint8).view(2, 1, 8, 8)
    y = patch_shuffle(x, 4, seed=0)
    assert not torch.equal(x, y) and torch.equal(y, patch_shuffle(x, 4, seed=0))
    for i in range(2):
        src = {tuple(x[i, 0, r:r + 4, c:c + 4].flatten().tolist()) for r in (0, 4) for c in (0, 4)}
        dst = {tuple(y[i, 0, r:r + 4, c:c + 4].flatten().tolist()) for r in (0, 4) for c in (0, 4)}
        assert src == dst  # the same four patches, moved
