"""MosaicKD GPU benchmark (issue #17 contract): one outer iteration (D step + G step + 5 student steps on 2B
images) of the animals-6 / vehicles setting vs a plain-KD student step, fp32 and bf16, peak memory.

    python packages/mosaickd/bench/gpu.py --out DIR [--smoke] [--budget S] [--data-root D] [--models-root M] [--long]

Teacher: <models>/cifar10_animals6_wrn40_2.pt (WRN-40-2), student WRN-16-1, B = 128 as in
configs/animals6_vehicles.yaml; the OOD images are the CIFAR-10 vehicle training images of the data root fed through
the package's own BatchStream (random images when the data root has none; the row names say which). Rows, for each
precision: outer iterations/s, student images/s, plain-KD student images/s, the MosaicKD/KD time per student step,
teacher forward images/s, peak memory; then the bf16 speed-up and the D/G/student split of one iteration.
--long adds a short quality run: MosaicKD vs plain KD at equal student steps, animals-6 test top-1.
--smoke: the same code on the CPU, B = 4, one timed repetition.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch
from mosaickd.data import BatchStream, ImageSet
from mosaickd.game import MosaicGame
from mosaickd.method import student_kd_loss
from mosaickd.nets import NORMALIZE_DICT, Normalizer, PatchDiscriminator, UpsampleGenerator
from tenfold import bench
from tenfold.data import cifar10
from tenfold.errors import DataError
from tenfold.nets import create, load_teacher
from tenfold.runtime import autocast, grad_scaler

TEACHER = "cifar10_animals6_wrn40_2.pt"
VEHICLES = (0, 1, 8, 9)


def ood_images(data_root: str | None, n: int) -> tuple[ImageSet, str]:
    """CIFAR-10 vehicle training images (uint8 NCHW) of the data root, else random ones."""
    try:
        ds = cifar10(data_root, train=True)
        labels = torch.as_tensor(ds.labels)
        keep = torch.isin(labels, torch.tensor(VEHICLES)).nonzero().flatten()[:n]
        imgs = torch.from_numpy(ds.images[keep.numpy()]).permute(0, 3, 1, 2).contiguous()
        return ImageSet(imgs, labels[keep], "cifar10-vehicles"), "CIFAR-10 vehicles"
    except DataError:
        g = torch.Generator().manual_seed(0)
        return ImageSet(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                        torch.zeros(n, dtype=torch.long), "random"), "random images"


def measure(rep, precision: str, T, pool: ImageSet, B: int, warmup: int, repeat: int, dev) -> float:
    """Rows for one precision; returns seconds per outer iteration."""
    torch.manual_seed(0)
    S = create("wrn16_1", 6).to(dev)
    norm = Normalizer(*NORMALIZE_DICT["cifar10"])
    game = MosaicGame(UpsampleGenerator(100, 64).to(dev), PatchDiscriminator(3, 128).to(dev), S, T, norm,
                      total_iters=10**6, kd_steps=5, device=dev, precision=precision)
    real = BatchStream(pool, B, seed=0, normalizer=norm, augment=False, device=dev)
    kd = BatchStream(pool, B, seed=1, normalizer=norm, augment=True, device=dev)
    x_real = real.next()[0]
    outer = lambda: game.outer_step(x_real, lambda: (kd.next()[0], None))  # noqa: E731
    it = bench.time_it(outer, warmup=warmup, repeat=repeat, device=dev)["median_s"]
    tag = f"{precision}, B={B}"
    rep.row(f"MosaicKD outer iterations ({tag})", 1 / it, "it/s")
    rep.row(f"MosaicKD student images ({tag}; 5 steps of 2B per iteration)", game.kd_steps * 2 * B / it, "images/s")

    opt = torch.optim.SGD(S.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    scaler = grad_scaler(dev, precision)
    x2 = torch.cat([kd.next()[0], kd.next()[0]])

    def kd_step():  # baselines.run_kd's vanilla step on 2B OOD images
        with torch.no_grad(), autocast(dev, precision):
            t = T(x2).float()
        with autocast(dev, precision):
            s = S(x2).float()
        loss = student_kd_loss(s, t, 5.0)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    step = bench.time_it(kd_step, warmup=warmup, repeat=repeat, device=dev)["median_s"]
    rep.row(f"plain-KD student images ({tag}; one step of 2B)", 2 * B / step, "images/s")
    rep.row(f"MosaicKD / plain-KD time per student step ({precision})", (it / game.kd_steps) / step, "x")

    def teacher_forward():
        with torch.no_grad(), autocast(dev, precision):
            T(x2)

    tf = bench.time_it(teacher_forward, warmup=warmup, repeat=repeat, device=dev)["median_s"]
    rep.row(f"teacher WRN-40-2 forward ({precision}, batch 2B={2 * B})", 2 * B / tf, "images/s")
    rep.row(f"peak memory, MosaicKD iteration ({tag})", bench.peak_memory(outer, dev) / 2**20, "MiB")
    if precision == "bf16":
        x_syn = game.synthesize(B)
        parts = {"D step": lambda: game.d_step(x_syn, x_real), "G step": lambda: game.g_step(game.synthesize(B)),
                 "student step": lambda: game.student_step(B, kd.next()[0])}
        for name, fn in parts.items():
            s = bench.time_it(fn, warmup=min(warmup, 1), repeat=repeat, device=dev)["median_s"]
            rep.row(f"{name} ({tag})", 1000 * s, "ms")
    return it


def quality(rep, args, teacher: Path, dev, s_per_iter: float) -> None:
    """--long: MosaicKD vs plain KD at equal student steps (configs/animals6_vehicles*.yaml, the OOD set = the data
    root's vehicle training images), as many MosaicKD iterations as ~60 % of the remaining budget allows (the KD
    arm's steps are cheaper), at most the config's 3000."""
    from mosaickd.baselines import run_kd
    from mosaickd.config import KDConfig, MosaicConfig
    from mosaickd.train import run_mosaic
    from tenfold.config import load

    here = Path(__file__).resolve().parents[1] / "configs"
    iters = 2 if args.smoke else int(max(10, min(3000, 0.6 * rep.remaining() / (1.3 * s_per_iter))))
    common = [f"model.teacher={teacher}", f"device={dev.type}"] + (
        [f"data_root={args.data_root}"] if args.data_root else [])
    small = ["data.test_per_class=10", "data.ood_per_class=20", "train.batch_size=8"] if args.smoke else []
    with tempfile.TemporaryDirectory() as tmp:
        mk = load(MosaicConfig, here / "animals6_vehicles.yaml",
                  common + small + [f"out={tmp}/mk", f"train.iters={iters}", f"train.eval_every={iters}"])
        res = run_mosaic(mk)
        rep.row(f"MosaicKD animals-6 test top-1 after {iters} iterations (B={mk.train.batch_size})", res["last_top1"],
                "%")
        kd_small = ["data.test_per_class=10", "data.ood_per_class=20", "batch_size=16"] if args.smoke else []
        kd = load(KDConfig, here / "animals6_vehicles_kd.yaml",
                  common + kd_small + [f"out={tmp}/kd", f"steps={iters * 5}", f"eval_every={iters * 5}"])
        res = run_kd(kd)
        rep.row(f"plain KD animals-6 test top-1 after {iters * 5} steps", res["last_top1"], "%")


def main(argv=None) -> None:
    args = bench.gpu_parser("mosaickd", __doc__.split("\n")[0]).parse_args(argv)
    rep = bench.gpu_report("mosaickd", args)
    dev = rep.device
    models = Path(args.models_root or os.environ.get("TENFOLD_MODELS") or "models")
    path = models / TEACHER
    if path.is_file():
        T = load_teacher(path).to(dev)
    elif args.smoke:  # CI without the teachers: the same code with a random WRN-40-2
        T = create("wrn40_2", 6).to(dev).eval().requires_grad_(False)
        print(f"mosaickd: {path} missing, smoke run with a random WRN-40-2", flush=True)
    else:
        rep.skip(f"teacher missing: {path}")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    B, warmup, repeat = (4, 0, 1) if args.smoke else (128, 5, 20)
    pool, what = ood_images(args.data_root, 64 if args.smoke else 5000)
    print(f"mosaickd: OOD images: {what} ({len(pool)})", flush=True)
    times = {}
    for precision in ("fp32", "bf16"):
        if not args.smoke and rep.remaining() < 30:  # the smoke run checks every path whatever its wall time
            rep.row(f"{precision} measurements left out (budget)", None, "")
            break
        times[precision] = measure(rep, precision, T, pool, B, warmup, repeat, dev)
    if len(times) == 2:
        rep.row("bf16 speed-up of the MosaicKD iteration (fp32 time / bf16 time)", times["fp32"] / times["bf16"], "x")
    if args.long and path.is_file() and times:
        quality(rep, args, path, dev, times.get("bf16", times["fp32"]) * (1 if args.smoke else 128 / B))


if __name__ == "__main__":
    main(sys.argv[1:])
