"""Sampler geometry (spec §7(a) 1–6 and pitfalls 1–4, 10–13)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from aps.augment import TwoViewAPSTransform
from aps.config import AugConfig, SamplingConfig
from aps.sampling import (
    asymmetric_patch_sampling,
    non_overlap_ratio,
    non_overlap_ratio_loop,
    num_kept,
    overlap_fraction,
    random_resized_crop_box,
    selection_weights,
    sparse_patch_sampling,
    weighted_sample_without_replacement,
)

FULL = (0, 0, 32, 32)


def test_identical_boxes_give_disjoint_subsets():
    rng = np.random.default_rng(0)
    i1, i2 = asymmetric_patch_sampling(FULL, FULL, False, False, 16, 0.25, 4, 3.0, rng)
    assert i1.shape == i2.shape == (4, 64) and i1.dtype == i2.dtype == np.int64
    for k in range(4):
        assert len(set(i2[k].tolist())) == 64
        assert not set(i1[k].tolist()) & set(i2[k].tolist())
        u = non_overlap_ratio(FULL, FULL, i1[k], 16)
        w = selection_weights(u, 3.0)
        p = w / w.sum()
        assert np.allclose(p[i1[k]], 0.0) and np.allclose(np.delete(p, i1[k]), 1 / 192)


def test_identical_boxes_view2_is_uniform_over_uncovered_cells():
    rng = np.random.default_rng(1)
    i1 = np.arange(64)[None]
    w = selection_weights(non_overlap_ratio(FULL, FULL, i1, 16), 3.0)
    counts = np.zeros(256)
    for _ in range(300):
        np.add.at(counts, weighted_sample_without_replacement(w, 64, rng)[0], 1)
    assert counts[:64].sum() == 0
    expected = 300 * 64 / 192
    chi2 = ((counts[64:] - expected) ** 2 / expected).sum()
    assert chi2 < 260  # 191 dof: mean 191, sd ≈ 19.5; a biased sampler lands far above


def test_view1_subsets_partition_the_grid():
    i1 = sparse_patch_sampling(16, 0.25, 4, np.random.default_rng(0))
    assert sorted(i1.reshape(-1).tolist()) == list(range(256))


def test_k_times_r_above_one_raises():
    with pytest.raises(ValueError, match="K·r must be ≤ 1"):
        sparse_patch_sampling(16, 0.3, 4, np.random.default_rng(0))


def test_grid_is_derived_not_hard_coded():
    assert num_kept(14, 0.25, 4) == 49  # ImageNet 224/16 (pitfall 11)
    i1, i2 = asymmetric_patch_sampling((0, 0, 224, 224), (10, 20, 180, 190), False, True, 14, 0.25, 4, 3.0,
                                       np.random.default_rng(0))
    assert i1.shape == i2.shape == (4, 49) and i2.max() < 196


def test_hand_computed_ratio_identical_boxes():
    u = non_overlap_ratio(FULL, FULL, np.array([0]), 16)
    assert u[0] == 0.0 and np.all(u[1:] == 1.0)


def test_hand_computed_ratio_half_patch_shift():
    u = non_overlap_ratio((0, 1, 32, 32), FULL, np.array([0]), 16)  # view 1 one pixel right = half a patch
    assert u[0] == pytest.approx(0.5, abs=1e-15) and u[1] == pytest.approx(0.5, abs=1e-15)
    assert np.all(u[2:] == 1.0)
    w = selection_weights(u, 3.0)
    assert w[0] == pytest.approx(0.125) and w[1] == pytest.approx(0.125) and w[2] == 1.0


def test_overlap_measured_in_image_space_not_index_space():
    """Pitfalls 1-2: view 2 = right half of the image, view 1 = whole image. View-1 patch 0 (top-left of
    the image) cannot cover anything of view 2, although view-2 index 0 has the same patch index."""
    u = non_overlap_ratio(FULL, (0, 16, 32, 16), np.array([0]), 16)
    assert np.all(u == 1.0)
    # the view-1 patch at original x ∈ [16, 18] covers view-2 column 0 (x ∈ [16, 17]) and half of column 1
    u = non_overlap_ratio(FULL, (0, 16, 32, 16), np.array([8]), 16)
    assert u[0] == 0.0 and u[1] == pytest.approx(0.0) and u[2] == 1.0


def test_flip_aware_geometry_mirrors_columns():
    # view 1 flipped: its tensor column 0 shows the original right-most column
    u_aware = non_overlap_ratio(FULL, FULL, np.array([0]), 16, flip1=True, flip2=False)
    assert u_aware[15] == 0.0 and u_aware[0] == 1.0
    # both flipped: index 0 is the same image region again
    assert non_overlap_ratio(FULL, FULL, np.array([0]), 16, True, True)[0] == 0.0
    # flip-blind (official Q1) treats index 0 as top-left
    rng = np.random.default_rng(0)
    i1, i2 = asymmetric_patch_sampling(FULL, FULL, True, False, 16, 0.25, 4, 3.0, rng, flip_aware=False)
    assert not set(i1[0].tolist()) & set(i2[0].tolist())


def test_vectorised_equals_loop_on_random_crops():
    rng = np.random.default_rng(0)
    for _ in range(40):
        b1, b2 = random_resized_crop_box(32, 32, rng=rng), random_resized_crop_box(32, 32, rng=rng)
        f1, f2 = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        idx = rng.permutation(256)[:64]
        np.testing.assert_allclose(non_overlap_ratio(b1, b2, idx, 16, f1, f2),
                                   non_overlap_ratio_loop(b1, b2, idx, 16, f1, f2), atol=1e-12, rtol=0)


def test_power_zero_is_uniform_even_on_covered_cells():
    u = non_overlap_ratio(FULL, FULL, np.arange(64), 16)
    w = selection_weights(u, 0.0)
    assert np.all(w == 1.0)


def test_power_applied_and_normalised():
    u = np.array([[0.0, 0.5, 1.0, 1.0]])
    w = selection_weights(u, 3.0)
    np.testing.assert_allclose(w / w.sum(), [[0.0, 0.125 / 2.125, 1 / 2.125, 1 / 2.125]])
    # sampling without replacement ∝ w: the first draw's frequencies follow p (2000 draws of 1)
    rng = np.random.default_rng(0)
    first = np.array([weighted_sample_without_replacement(w, 1, rng)[0, 0] for _ in range(4000)])
    freq = np.bincount(first, minlength=4) / 4000
    np.testing.assert_allclose(freq, (w / w.sum())[0], atol=0.025)


def test_degenerate_case_returns_unique_indices():
    # 3 cells have u > 0 but 4 are needed: must not crash (official np.random.choice would)
    w = np.array([[0.0, 0.0, 0.2, 0.5, 1.0, 0.0]])
    out = weighted_sample_without_replacement(w, 4, np.random.default_rng(0))[0]
    assert len(set(out.tolist())) == 4 and {2, 3, 4} <= set(out.tolist())
    out = weighted_sample_without_replacement(np.zeros((1, 6)), 3, np.random.default_rng(0))[0]
    assert len(set(out.tolist())) == 3


def _mean_overlap(power, flips, aware, seed=1, pairs=300):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(pairs):
        b1, b2 = random_resized_crop_box(32, 32, rng=rng), random_resized_crop_box(32, 32, rng=rng)
        f1, f2 = (bool(rng.random() < 0.5), bool(rng.random() < 0.5)) if flips else (False, False)
        i1, i2 = asymmetric_patch_sampling(b1, b2, f1, f2, 16, 0.25, 4, power, rng, aware)
        out.append(overlap_fraction(b1, b2, i1, i2, 16, f1, f2))  # true (flip-aware) geometry
    return float(np.mean(out))


def test_statistical_overlap_property():
    """Spec: APS ≈ 0.040, uniform ≈ 0.166, flip-blind with random flips ≈ 0.117.
    Observed (seed 1, 300 pairs): 0.040, 0.169, aware+flips 0.040, blind+flips 0.128."""
    aps, uniform = _mean_overlap(3.0, False, True), _mean_overlap(0.0, False, True)
    aps_flip, blind_flip = _mean_overlap(3.0, True, True), _mean_overlap(3.0, True, False)
    assert aps < 0.07 and aps_flip < 0.07
    assert uniform > 0.12
    assert 0.08 <= blind_flip <= 0.15


def test_rrc_box_inside_image_and_scale():
    rng = np.random.default_rng(0)
    for _ in range(200):
        i, j, h, w = random_resized_crop_box(32, 32, (0.15, 1.0), rng=rng)
        assert 0 <= i and 0 <= j and i + h <= 32 and j + w <= 32 and h * w >= 0.1 * 1024


def test_two_view_transform_is_seeded_per_sample():
    """Pitfall 12: the patch sample comes from torch's per-sample seed, not numpy's global RNG."""
    t = TwoViewAPSTransform(AugConfig(), SamplingConfig(), 32, 2)
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(5)
    a = t(img)
    np.random.seed(123)  # global numpy state must not matter
    torch.manual_seed(5)
    b = t(img)
    torch.manual_seed(6)
    c = t(img)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[1], c[1])
    assert a[0].shape == (3, 32, 32) and a[1].shape == (4, 64) and a[3].dtype == torch.int64


@pytest.mark.parametrize("mode", ["aps", "random", "symmetric", "full"])
def test_two_view_transform_modes(mode):
    t = TwoViewAPSTransform(AugConfig(), SamplingConfig(mode=mode), 32, 4)
    torch.manual_seed(0)
    x1, i1, x2, i2 = t(torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8))
    assert x1.shape == x2.shape == (3, 32, 32)
    if mode == "full":
        assert torch.equal(i1, torch.arange(64)[None]) and torch.equal(i2, i1)
    else:
        assert i1.shape == i2.shape == (4, 16)
        assert sorted(i1.reshape(-1).tolist()) == list(range(64))  # view-1 chunks partition the grid
        assert all(len(set(r.tolist())) == 16 for r in i2)


def test_patch_samples_do_not_depend_on_worker_count():
    """Pitfall 12: per-sample seeds -> identical views and indices with 0 or 2 loader workers."""
    from tenfold.data import make_loader, synthetic_shapes

    ds = synthetic_shapes(16, 32, 10, seed=0, transform=TwoViewAPSTransform(AugConfig(), SamplingConfig(), 32, 4))
    a = next(iter(make_loader(ds, 8, seed=3, num_workers=0)))
    b = next(iter(make_loader(ds, 8, seed=3, num_workers=2)))
    assert all(torch.equal(x, y) for x, y in zip(a[0], b[0]))
    assert not torch.equal(a[0][1][0], a[0][1][1])  # different images get different patch samples
