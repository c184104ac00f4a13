"""GPU throughput (spec §7c): teacher WRN-40-2, student WRN-16-1, B=256, random tensors as OOD images,
50 warm-up + 200 timed outer iterations, AMP off and on; split of time between D, G and KD steps; plain-KD
student step at the same batch in the same run. Writes JSON, prints one line per setting."""
from __future__ import annotations

import argparse
import json
import time

import torch
from mosaickd.game import MosaicGame
from mosaickd.method import student_kd_loss
from mosaickd.nets import NORMALIZE_DICT, Normalizer, PatchDiscriminator, UpsampleGenerator
from tenfold.bench import device_name, peak_memory, write_json
from tenfold.nets import create
from tenfold.runtime import autocast


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, n, dev):
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(dev)
    return (time.perf_counter() - t0) / n


def run(amp: bool, B: int, warmup: int, iters: int, num_classes: int, dev) -> dict:
    torch.manual_seed(0)
    T = create("wrn40_2", num_classes).to(dev).eval().requires_grad_(False)
    S = create("wrn16_1", num_classes).to(dev)
    game = MosaicGame(UpsampleGenerator(100, 64).to(dev), PatchDiscriminator(3, 128).to(dev), S, T,
                      Normalizer(*NORMALIZE_DICT["cifar100"]), total_iters=10 ** 6, device=dev, amp=amp)
    ood = torch.randn(B, 3, 32, 32, device=dev)
    x_real = torch.randn(B, 3, 32, 32, device=dev)
    outer = lambda: game.outer_step(x_real, lambda: (ood, None))  # noqa: E731
    timed(outer, warmup, dev)
    it_s = timed(outer, iters, dev)
    x_syn = game.synthesize(B)
    k = max(min(20, iters), 1)
    d_s = timed(lambda: game.d_step(x_syn, x_real), k, dev)
    g_s = timed(lambda: game.g_step(game.synthesize(B)), k, dev)
    kd_s = timed(lambda: game.student_step(B, ood), k, dev)
    opt = torch.optim.SGD(S.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x2 = torch.cat([ood, x_real])

    def kd_plain():
        with torch.no_grad(), autocast(dev, amp):
            t = T(x2).float()
        with autocast(dev, amp):
            s = S(x2).float()
        loss = student_kd_loss(s, t, 5.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    timed(kd_plain, min(10, warmup), dev)
    plain_s = timed(kd_plain, max(iters // 2, 1), dev)
    mem = peak_memory(outer, dev)
    return {"amp": amp, "batch": B, "outer_it_per_s": 1 / it_s, "student_images_per_s": game.kd_steps * 2 * B / it_s,
            "d_step_s": d_s, "g_step_s": g_s, "kd_step_s": kd_s, "plain_kd_step_s": plain_s,
            "ratio_per_student_step": (it_s / game.kd_steps) / plain_s, "ratio_iteration": it_s / plain_s,
            "peak_mem_gb": mem / 1e9}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--json", default="runs/bench_gpu/throughput.json")
    ap.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke test)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    rows = [run(amp, args.batch, args.warmup, args.iters, 100, dev) for amp in (False, True)]
    write_json(args.json, {"device": device_name(dev), "rows": rows})
    for r in rows:
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}))


if __name__ == "__main__":
    main()
