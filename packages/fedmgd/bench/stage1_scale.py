"""Stage-1 memory and time against the number of clients K (issue #18), CPU, reduced widths.

For each K and each gan.g_graph mode, a fresh single-threaded subprocess builds K clients (IID split of an
offline data set, 3x16x16 images, B = 64, the paper's ResNet G/D and classifier at reduced widths), runs one
warm-up iteration (allocates Adam states and gradients), then times `--iters` iterations while a thread samples
the resident set size every 2 ms. Reported: median seconds per iteration, the peak RSS above the post-warm-up
baseline (activation memory of an iteration) and the peak RSS of the process. glibc is told to return every
allocation >= 64 KiB to the system (MALLOC_MMAP_THRESHOLD_), so RSS follows live tensors.

    python bench/stage1_scale.py [--ks 5 20 100] [--modes selected all] [--all-max-k 20] [--out bench/stage1_scale.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
SIZE = 16
MODEL = ["model.arch=resnet", "model.ngf=8", "model.ndf=8", "model.g_nf_max=32", "model.d_nf_max=32",
         "model.c_width1=16", "model.c_width2=16", "model.c_hidden=128", "model.n_z=64"]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def measure(k: int, mode: str, iters: int) -> dict:
    import resource
    import statistics

    import numpy as np
    import torch
    from fedmgd.config import FedMGDConfig
    from fedmgd.data import build_federated_data
    from fedmgd.engine import Comm, Streams
    from fedmgd.nets import build_models
    from fedmgd.stage1 import Stage1
    from tenfold.config import load

    torch.set_num_threads(1)
    n = 80 * k  # 64 training images per client after the 80/20 split
    rng = np.random.default_rng(0)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fedmgd_stage1_scale_{os.getpid()}.npz"
    np.savez(path, images=rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8), labels=np.arange(n) % 10,
             test_images=np.zeros((10, SIZE, SIZE, 3), np.uint8), test_labels=np.arange(10))
    cfg = load(FedMGDConfig, None, ["data.dataset=npz", f"data.path={path}", f"data.img_size={SIZE}",
                                    "data.test_size=10", "partition.kind=iid", f"partition.num_clients={k}",
                                    "partition.min_size=1", "gan.batch_size=64", f"gan.g_graph={mode}", "device=cpu",
                                    "out=unused"] + MODEL)
    fed = build_federated_data(cfg)
    path.unlink()
    dev = torch.device("cpu")
    mg, md, mc = build_models(cfg.model, fed.num_classes, fed.channels, SIZE)
    st = Stage1(cfg, fed, Comm(k), Streams(0, dev), dev, mg, md, mc, mc())
    st.iteration(0)
    base, peak, stop = _rss(), [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    times = []
    for t in range(1, iters + 1):
        t0 = time.perf_counter()
        st.iteration(t)
        times.append(time.perf_counter() - t0)
    stop.set()
    th.join()
    return {"K": k, "mode": mode, "iters": iters, "median_s_per_iter": statistics.median(times),
            "activation_peak_mib": (peak[0] - base) / 2**20, "baseline_rss_mib": base / 2**20,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 20, 100])
    ap.add_argument("--modes", nargs="+", default=["selected", "all"], choices=["selected", "all"])
    ap.add_argument("--all-max-k", type=int, default=20, help="largest K for g_graph=all (memory grows with K)")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).with_name("stage1_scale.json")))
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(int(args.child[0]), args.child[1], args.iters)))
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="65536", TENFOLD_QUIET="1")
    rows = []
    for mode in args.modes:
        for k in args.ks:
            if mode == "all" and k > args.all_max_k:
                continue
            p = subprocess.run([sys.executable, __file__, "--child", str(k), mode, "--iters", str(args.iters)],
                               env=env, capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"K={k} {mode} failed: {p.stderr.strip().splitlines()[-1:]}")
            rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"| {r['K']} | {r['mode']} | {r['median_s_per_iter']:.2f} | {r['activation_peak_mib']:.0f} | "
                  f"{r['peak_rss_mib']:.0f} |", flush=True)
            Path(args.out).write_text(json.dumps({"torch": __import__("torch").__version__, "img_size": SIZE,
                                                  "model": MODEL, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
