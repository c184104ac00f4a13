"""CPU benchmark: batched per-sample differentiable augmentation (global + local view, forward and
backward) vs the same ops called once per image (what a per-sample loop over kornia/torchvision does).

    OMP_NUM_THREADS=1 python bench/cpu.py [--batch 256] [--out runs/bench_cpu.json]
"""
from __future__ import annotations

import argparse

import torch
from cmi.augment import Normalizer, per_image_loop, random_crop_flip, random_resized_crop_flip
from tenfold.bench import device_name, time_it, write_json
from tenfold.data.transforms import CIFAR10_MEAN, CIFAR10_STD


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--out", default="runs/bench_cpu.json")
    a = ap.parse_args()
    torch.manual_seed(0)
    norm = Normalizer(CIFAR10_MEAN, CIFAR10_STD)
    x = torch.rand(a.batch, 3, a.size, a.size, requires_grad=True)

    def views(fn):
        def run():
            xg = norm(fn(x, lambda v: random_crop_flip(v, a.size // 8)))
            xl = norm(fn(x, random_resized_crop_flip))
            (xg.square().mean() + xl.square().mean()).backward()
            x.grad = None
        return run

    batched = time_it(views(lambda v, f: f(v)), warmup=2, repeat=a.repeat)
    looped = time_it(views(per_image_loop), warmup=1, repeat=max(a.repeat // 2, 3))
    ratio = looped["median_s"] / batched["median_s"]
    res = {"device": device_name(), "batch": a.batch, "size": a.size, "batched_s": batched["median_s"],
           "per_image_loop_s": looped["median_s"], "ratio": ratio,
           "batched_images_per_s": a.batch / batched["median_s"],
           "loop_images_per_s": a.batch / looped["median_s"]}
    write_json(a.out, res)
    print(f"batched per-sample views (fwd+bwd, B={a.batch}): {batched['median_s'] * 1e3:.1f} ms; "
          f"per-image loop: {looped['median_s'] * 1e3:.1f} ms")
    print(f"ratio A/B: {ratio:.2f}  (A = per-image loop time, B = batched time; {device_name()})")


if __name__ == "__main__":
    main()
