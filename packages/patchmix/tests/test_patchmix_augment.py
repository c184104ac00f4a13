"""The batched augmentations against torchvision's semantics (issue #18): RandomResizedCrop's box rule (retries,
whole pixels, centre-crop fallback) and ColorJitter's per-image random order of its ops."""
import math

import pytest
import torch
from patchmix.augment import _u, color_jitter, random_resized_crop, rrc_boxes
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms import functional as TF

SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


def test_rrc_box_statistics_match_torchvision():
    h, w, n = 24, 32, 20000  # a non-square image: the ratio bounds and retries matter
    torch.manual_seed(0)
    img = torch.zeros(3, h, w)
    tv = torch.tensor([RandomResizedCrop.get_params(img, SCALE, RATIO) for _ in range(n)], dtype=torch.float64)
    ours = torch.stack(rrc_boxes(n, h, w, SCALE, RATIO, torch.Generator().manual_seed(0)), 1)
    for b in (tv, ours):  # whole pixels inside the image
        assert torch.equal(b, b.round()) and (b[:, 2] >= 1).all() and (b[:, 0] + b[:, 2] <= h).all()
        assert (b[:, 1] + b[:, 3] <= w).all()
    area = lambda b: (b[:, 2] * b[:, 3] / (h * w))  # noqa: E731
    assert area(ours).mean().item() == pytest.approx(area(tv).mean().item(), abs=0.01)  # sem ~0.002
    for q in (0.1, 0.5, 0.9):
        assert area(ours).quantile(q).item() == pytest.approx(area(tv).quantile(q).item(), abs=0.02)
    for col in range(4):  # top, left, height, width
        assert ours[:, col].mean().item() == pytest.approx(tv[:, col].mean().item(), rel=0.03, abs=0.1)
    # the earlier single clamped draw is measurably different (its mean area is ~0.54 here)
    g = torch.Generator().manual_seed(0)
    a, r = _u(n, *SCALE, g), _u(n, math.log(RATIO[0]), math.log(RATIO[1]), g).exp()
    clamped = ((a * r).sqrt().clamp(max=1) * (a / r).sqrt().clamp(max=1)).mean().item()
    assert abs(clamped - area(tv).mean().item()) > 0.05


def test_rrc_fallback_is_torchvisions_centre_crop():
    img = torch.zeros(3, 32, 64)  # ratio 2: a full-area crop with ratio <= 4/3 never fits
    tv = RandomResizedCrop.get_params(img, (1.0, 1.0), RATIO)
    top, left, h, w = rrc_boxes(5, 32, 64, (1.0, 1.0), RATIO, torch.Generator().manual_seed(0))
    for k in range(5):
        assert (top[k].item(), left[k].item(), h[k].item(), w[k].item()) == tv == (0, 10, 32, 43)


def test_rrc_resampling_copies_the_box_when_sizes_agree():
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    scale = (0.25, 0.25)  # 16 x 16 boxes at ratio 1: no resizing, the crop must be an exact copy
    top, left, h, w = rrc_boxes(6, 32, 32, scale, (1.0, 1.0), torch.Generator().manual_seed(2))
    out = random_resized_crop(x, 16, scale, torch.Generator().manual_seed(2), ratio=(1.0, 1.0))
    for k in range(6):
        t, lf = int(top[k]), int(left[k])
        torch.testing.assert_close(out[k], x[k, :, t:t + 16, lf:lf + 16], atol=1e-5, rtol=0)


@pytest.mark.parametrize("order", ["random", "fixed"])
def test_color_jitter_is_torchvisions_ops_in_each_images_order(order):
    n = 48
    x = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    strength = (0.4, 0.4, 0.4, 0.0)  # hue is the documented YIQ stand-in; checked apart from torchvision
    out = color_jitter(x, strength, 1.0, torch.Generator().manual_seed(4), order)
    g = torch.Generator().manual_seed(4)  # the same draws, in the function's order
    torch.rand(n, generator=g)
    fb, fc, fs = (_u(n, 0.6, 1.4, g) for _ in range(3))
    _u(n, 0.0, 0.0, g)
    perm = torch.rand(n, 3, generator=g).argsort(1) if order == "random" else torch.arange(3).expand(n, 3)
    ops = [lambda im, k: TF.adjust_brightness(im, fb[k].item()), lambda im, k: TF.adjust_contrast(im, fc[k].item()),
           lambda im, k: TF.adjust_saturation(im, fs[k].item())]
    for k in range(n):
        want = x[k]
        for op in perm[k].tolist():
            want = ops[op](want, k)
        torch.testing.assert_close(out[k], want, atol=2e-3, rtol=0)  # grayscale weights .299 vs .2989
    seen = {tuple(p) for p in perm.tolist()}
    assert len(seen) >= 4 if order == "random" else seen == {(0, 1, 2)}


def test_rand_augment_is_torchvisions_per_image_and_leaves_the_global_rng():
    from patchmix.augment import rand_augment
    from torchvision.transforms import v2

    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5)).expand(24, -1, -1, -1)
    before = torch.random.get_rng_state()
    out = rand_augment(x, 2, 9, torch.Generator().manual_seed(6))
    assert torch.equal(torch.random.get_rng_state(), before)  # exact resume: the global RNG is untouched
    assert len({o.numpy().tobytes() for o in out}) > 12  # each image draws its own two ops
    seeds = torch.randint(0, 2**62, (24,), generator=torch.Generator().manual_seed(6)).tolist()
    ra = v2.RandAugment(num_ops=2, magnitude=9, interpolation=v2.InterpolationMode.BILINEAR)
    u8 = (x[0] * 255).round().to(torch.uint8)
    for k in (0, 7, 23):
        torch.manual_seed(seeds[k])
        assert torch.equal(out[k], ra(u8).float() / 255)


def test_random_erasing_statistics_match_torchvision():
    from patchmix.augment import random_erasing

    n = 2000
    out = random_erasing(torch.zeros(n, 3, 16, 16), 0.25, torch.Generator().manual_seed(7))
    erased = out.ne(0).flatten(1).any(1)
    assert abs(erased.float().mean().item() - 0.25) < 0.03  # p = 0.25 (3 sigma ~ 0.029)
    frac = out[erased].ne(0).flatten(1).float().mean(1)  # area of the one box (N(0,1) pixels are never 0)
    assert frac.min().item() >= 0.01 and frac.max().item() <= 0.33 + 0.05  # scale (0.02, 0.33), whole pixels
    vals = out[out.ne(0)]
    assert abs(vals.mean().item()) < 0.05 and abs(vals.std().item() - 1.0) < 0.05  # 'random' fill: N(0, 1)
