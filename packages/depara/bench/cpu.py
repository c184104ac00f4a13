"""CPU benchmark: one model's DEPARA (500 probes, nodes + edges) built batched vs with a per-image loop.

    OMP_NUM_THREADS=1 python bench/cpu.py [--out bench/cpu.json] [--arch tiny_cnn] [--batch 100]

Prints 'ratio per-image/batched: X' (speed-up of the batched extraction, measured in this one run)."""
from __future__ import annotations

import argparse
import time

import torch
from depara.data import synthetic_factors
from depara.graph import GraphOptions, build_graph
from depara.zoo import create_model, preprocess
from tenfold.bench import device_name, time_it, write_json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench/cpu.json", help="where to write the JSON result")
    p.add_argument("--arch", default="tiny_cnn", help="tiny_cnn or a tenfold.nets name")
    p.add_argument("--n", type=int, default=500, help="probe images")
    p.add_argument("--batch", type=int, default=100, help="probe batch size of the batched path")
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions (median reported)")
    args = p.parse_args()
    torch.manual_seed(0)
    model = create_model(args.arch, 10).eval()
    probes = preprocess(synthetic_factors(args.n, seed=0, size=32).images)

    def fn(x):
        return model(x, return_features=True)[1]

    def run(bs):
        return build_graph(fn, probes, GraphOptions(batch_size=bs), model=model)

    g_b, g_1 = run(args.batch), run(1)
    max_diff = float((g_b.V - g_1.V).abs().max() / g_1.V.abs().max())
    cpu0 = time.process_time()
    t_batched = time_it(lambda: run(args.batch), warmup=1, repeat=args.repeat)
    t_loop = time_it(lambda: run(1), warmup=1, repeat=args.repeat)
    ratio = t_loop["median_s"] / t_batched["median_s"]
    res = {"arch": args.arch, "n_probe": args.n, "batch": args.batch, "batched_s": t_batched["median_s"],
           "per_image_s": t_loop["median_s"], "ratio": ratio, "probes_per_s_batched": args.n / t_batched["median_s"],
           "probes_per_s_per_image": args.n / t_loop["median_s"], "max_rel_diff_nodes": max_diff,
           "threads": torch.get_num_threads(), "device": device_name(torch.device("cpu")),
           "cpu_s": time.process_time() - cpu0}
    write_json(args.out, res)
    print(f"{args.arch}, {args.n} probes: batched {t_batched['median_s']:.3f} s, per-image {t_loop['median_s']:.3f} s "
          f"(same nodes up to {max_diff:.1e})")
    print(f"ratio per-image/batched: {ratio:.2f}")


if __name__ == "__main__":
    main()
