"""CPU ratio benchmark: one stage-1 grafting step (unit U1 inside the frozen VGG16 teacher) vs one plain
full-network KD step (teacher forward + whole student forward/backward), batch 64, measured in one run.

    python bench/cpu.py [--batch 64] [--repeat 5] [--json bench-cpu.json]
"""
from __future__ import annotations

import argparse
import json

import torch
from netgraft.method import Grafted, build_units, normalized_logit_loss
from netgraft.models import build_student, build_teacher, copy_prefix_
from netgraft.partition import partition
from tenfold import bench
from torch import nn


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default="bench-cpu.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    teacher = build_teacher("vgg_blockwise", 10).eval().requires_grad_(False)
    student = build_student("vgg_blockwise", 10)
    tp, sp = partition(teacher), partition(student)
    copy_prefix_(tp, sp, 3)
    units = build_units(tp, sp, [3, 4, 5])
    x = torch.randn(args.batch, 3, 32, 32)
    graft = Grafted(tp, units[1], 4, 1)
    opt_g = torch.optim.Adam(units[1].parameters(), lr=1e-4)
    full = nn.Sequential(*student.features, nn.Flatten(), student.classifier)
    opt_f = torch.optim.Adam(full.parameters(), lr=1e-4)

    def graft_step():
        with torch.no_grad():
            h = tp.forward_prefix(x, 3)
            z_t = tp.forward(h, start=3)
        loss = normalized_logit_loss(graft(h, start=3), z_t)
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()

    def kd_step():
        with torch.no_grad():
            z_t = teacher(x)
        loss = normalized_logit_loss(full(x), z_t)
        opt_f.zero_grad()
        loss.backward()
        opt_f.step()

    tg = bench.time_it(graft_step, warmup=2, repeat=args.repeat)["median_s"]
    tk = bench.time_it(kd_step, warmup=2, repeat=args.repeat)["median_s"]
    res = {"stage1_step_s": tg, "kd_step_s": tk, "ratio_stage1_over_kd": tg / tk, "batch": args.batch,
           "device": bench.device_name()}
    bench.write_json(args.json, res)
    print(json.dumps(res))
    print(f"ratio stage-1 graft step / full-network KD step: {tg / tk:.2f}")


if __name__ == "__main__":
    main()
