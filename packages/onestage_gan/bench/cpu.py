"""CPU ratio benchmark: time per iteration, two-stage / one-stage, for a DCGAN (32 px, d=32, batch 64) with
the symmetric minimax loss (BN D) and the non-saturating loss (GN D), measured back to back in one run.

    python bench/cpu.py [--size 32] [--width 32] [--batch 64] [--repeat 10] [--device cpu] [--json bench-cpu.json]
"""
from __future__ import annotations

import argparse
import json

import torch
from onestage_gan.losses import get_loss
from onestage_gan.method import one_stage_step, two_stage_step
from onestage_gan.nets import DCDiscriminator, DCGenerator
from tenfold import bench, runtime


def measure(loss_name: str, d_norm: str, args, dev) -> dict:
    """Median time per iteration of both schemes for one loss, same models, data and optimizers."""
    loss = get_loss(loss_name)
    torch.manual_seed(0)
    G = DCGenerator(100, 3, args.width, args.size).to(dev)
    D = DCDiscriminator(3, args.width, args.size, d_norm).to(dev)
    og = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    x = torch.randn(args.batch, 3, args.size, args.size, device=dev).tanh()

    def z():
        return torch.randn(args.batch, 100, device=dev)

    def one():
        with runtime.autocast(dev):
            one_stage_step(G, D, og, od, x, z(), loss)

    def two():
        with runtime.autocast(dev):
            two_stage_step(G, D, og, od, x, z(), z(), loss)

    t1 = bench.time_it(one, warmup=3, repeat=args.repeat, device=dev)["median_s"]
    t2 = bench.time_it(two, warmup=3, repeat=args.repeat, device=dev)["median_s"]
    return {"one_stage_s": t1, "two_stage_s": t2, "ratio_two_over_one": t2 / t1,
            "one_stage_img_per_s": args.batch / t1, "two_stage_img_per_s": args.batch / t2}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default="bench-cpu.json")
    args = ap.parse_args()
    dev = runtime.select_device(args.device)
    res = {"device": bench.device_name(dev), "batch": args.batch, "size": args.size}
    for loss_name, d_norm in (("minimax", "bn"), ("nonsaturating", "gn")):
        res[loss_name] = measure(loss_name, d_norm, args, dev)
    bench.write_json(args.json, res)
    print(json.dumps(res))
    for k in ("minimax", "nonsaturating"):
        print(f"ratio two-stage / one-stage time per iteration ({k}): {res[k]['ratio_two_over_one']:.2f}")


if __name__ == "__main__":
    main()
