"""FedMGD GPU benchmark (issue #17 contract): writes <out>/fedmgd.json after every measurement.

CIFAR-10 from --data-root (a pack with a reduced training set is fine), Dirichlet alpha = 0.1, K = 10 clients,
the paper's full-width networks (G 3.3M, D 3.0M, C 2.1M parameters), 32x32:
1. Stage 1 (the GAN stage, always fp32/TF32): GAN iterations/s and real images/s (64 per client per iteration),
   peak GPU memory with the generator graph built only through the routed clients (gan.g_graph=selected) and
   with every client's graph kept (g_graph=all), and their ratio; with budget left, the same at K = 20;
2. Stage 2 (federated enhancement) in bf16 and fp32 (cfg.precision through tenfold.runtime.autocast): clients/s
   and client images/s of the local work (batch 32), server-step time (2,048 synthetic samples, G + filter +
   S step), round time and peak memory; the bf16/fp32 round speed-up; the paper-specific ratio FedMGD/FedAvg
   round time at the nominal 100 server steps (what the server enhancement costs per round);
3. with --long (or a budget > 400 s left): a short accuracy run, FedMGD vs FedAvg from the same Stage-1
   classifiers (--smoke --long runs it tiny).
--smoke: the same code path on the CPU with tiny networks and a few hundred images (< 30 s); CIFAR-10 when found
under --data-root, else the offline blobs set. Stage 1 is fp32 in every run (R1's double backward).

    python packages/fedmgd/bench/gpu.py --out DIR [--smoke] [--budget S] [--data-root D] [--long]
"""
from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import torch
from fedmgd.config import FedMGDConfig
from fedmgd.data import build_federated_data
from fedmgd.engine import Comm, Streams
from fedmgd.nets import build_models
from fedmgd.stage1 import Stage1
from fedmgd.stage2 import Stage2
from tenfold import bench
from tenfold import config as config_mod
from tenfold.bench import gpu_parser, gpu_report

FULL = dict(data=["data.dataset=cifar10", "data.img_size=32"], k=10, batch=64, s1_warm=2, s1_iters=10,
            local_steps=20, server_steps=5, nominal_server_steps=100, gen_batch=2048, model=[],
            long=dict(s1_iters=400, rounds=5, local_steps=100, server_steps=100))
SMOKE = dict(data=["data.img_size=16", "data.pool_size=600", "data.test_size=100"], k=3, batch=16, s1_warm=1,
             s1_iters=1, local_steps=2, server_steps=2, nominal_server_steps=4, gen_batch=64,
             model=["model.ngf=4", "model.ndf=4", "model.g_nf_max=8", "model.d_nf_max=8", "model.n_z=16",
                    "model.c_width2=8", "model.c_hidden=32"],
             long=dict(s1_iters=3, rounds=2, local_steps=2, server_steps=2))


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def peak_reset(dev):
    if dev.type == "cuda":
        sync(dev)
        torch.cuda.reset_peak_memory_stats(dev)


def peak_mib(dev):
    """CUDA allocator peak since peak_reset (None on the CPU: no allocator statistics there)."""
    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None


def make_cfg(args, sz, k: int, *extra) -> FedMGDConfig:
    data = list(sz["data"])
    root = args.data_root or os.environ.get("TENFOLD_DATA")
    if args.smoke and not (root and (Path(root) / "cifar10" / "train.npz").is_file()):
        data = ["data.dataset=blobs", "data.synthetic_n=600", "data.img_size=16", "data.test_size=100"]
    elif args.smoke:
        data = ["data.dataset=cifar10"] + data
    over = data + sz["model"] + [
        f"partition.num_clients={k}", "partition.alpha=0.1", "partition.min_size=100" if not args.smoke else
        "partition.min_size=20", f"gan.batch_size={sz['batch']}", "fl.batch_size=32" if not args.smoke else
        "fl.batch_size=16", f"fl.gen_batch={sz['gen_batch']}", f"device={'cpu' if args.smoke else 'cuda'}",
        "out=unused", "seed=0"] + list(extra)
    if root:
        over.append(f"data_root={root}")
    return config_mod.load(FedMGDConfig, None, over)


def stage1_rows(rep, args, sz, k: int, dev, fed_cache: dict) -> Stage1 | None:
    """GAN iterations/s and peak memory at K clients, for g_graph=selected and =all."""
    st_sel = None
    for mode in ("selected", "all"):
        cfg = make_cfg(args, sz, k, f"gan.g_graph={mode}")
        fed = fed_cache.setdefault(k, build_federated_data(cfg, dev))
        mg, md, mc = build_models(cfg.model, fed.num_classes, fed.channels, cfg.data.img_size)
        streams = Streams(0, dev)
        with streams.use("init_S"):
            S = mc().to(dev)
        st = Stage1(cfg, fed, Comm(k, dev), streams, dev, mg, md, mc, S)
        for t in range(sz["s1_warm"]):
            st.iteration(t)
        peak_reset(dev)
        sync(dev)
        t0 = time.perf_counter()
        n = sz["s1_iters"]
        for t in range(sz["s1_warm"], sz["s1_warm"] + n):
            st.iteration(t)
        sync(dev)
        its = n / (time.perf_counter() - t0)
        mem = peak_mib(dev)
        if dev.type != "cuda":  # CPU: count the tensors one iteration allocates
            mem = bench.peak_memory(lambda st=st, t=sz["s1_warm"] + n: st.iteration(t), dev) / 2**20
        tag = f"stage 1, K={k}, g_graph={mode}"
        rep.row(f"{tag}: GAN iterations/s (B={sz['batch']}, fp32)", its, "it/s")
        if mode == "selected":
            rep.row(f"{tag}: real images/s", its * sz["batch"] * k, "images/s")
            st_sel = st
        rep.row(f"{tag}: peak memory", mem, "MiB")
        if mode == "all":
            sel = next(r["value"] for r in reversed(rep.rows) if r["what"] == f"stage 1, K={k}, g_graph=selected: "
                       "peak memory")
            rep.row(f"stage 1, K={k}: peak memory all / selected", mem / sel if sel else None, "x")
        del st
    return st_sel


def stage2_round(args, sz, dev, fed, st1: Stage1, precision: str, method: str, server_steps: int):
    """(seconds per round, local seconds, server seconds, peak MiB) of a Stage-2 round after one warm-up round."""
    k = st1.comm.num_clients
    cfg = make_cfg(args, sz, k, f"precision={precision}", f"fl.method={method}", f"fl.local_steps={sz['local_steps']}",
                   f"fl.server_steps={server_steps}", "fl.rounds=100")
    sd = st1.state_dict()
    st2 = Stage2(cfg, fed, st1.comm, Streams(1, dev), dev, copy.deepcopy(st1.C[0]),
                 st1.G if method == "fedmgd" else None, copy.deepcopy(sd["C"]), copy.deepcopy(sd["opt_C"]))
    st2.round(0)
    peak_reset(dev)
    sync(dev)
    t0 = time.perf_counter()
    rec = st2.round(1)
    sync(dev)
    total = time.perf_counter() - t0
    server = 0.0
    if method == "fedmgd" and server_steps:
        sync(dev)
        t1 = time.perf_counter()
        st2.server_update()
        sync(dev)
        server = time.perf_counter() - t1
    return total, total - server, server, peak_mib(dev), rec


def stage2_rows(rep, args, sz, dev, fed, st1: Stage1):
    k = st1.comm.num_clients
    rounds = {}
    for precision in ("bf16", "fp32"):
        if rep.remaining() < 30 and precision == "fp32" and not args.smoke:
            rep.skip("fp32 Stage-2 round left out: budget spent", exit=False)
            break
        total, local, server, mem, _ = stage2_round(args, sz, dev, fed, st1, precision, "fedmgd", sz["server_steps"])
        rounds[precision] = total
        imgs = k * sz["local_steps"] * (32 if not args.smoke else 16)
        tag = f"stage 2, K={k}, {precision}"
        rep.row(f"{tag}: clients/s ({sz['local_steps']} local steps each)", k / local, "clients/s")
        rep.row(f"{tag}: client images/s", imgs / local, "images/s")
        rep.row(f"{tag}: server step ({sz['gen_batch']} synthetic, G + filter + S step)",
                1000 * server / sz["server_steps"], "ms")
        rep.row(f"{tag}: round peak memory", mem, "MiB")
        if precision == "bf16":
            per_step = server / sz["server_steps"]
            avg, *_ = stage2_round(args, sz, dev, fed, st1, precision, "fedavg", 0)
            nominal = avg + sz["nominal_server_steps"] * per_step
            rep.row(f"{tag}: FedMGD / FedAvg round time at {sz['nominal_server_steps']} server steps",
                    nominal / avg, "x")
    if len(rounds) == 2:
        rep.row(f"stage 2, K={k}: bf16 speed-up over fp32 (round time)", rounds["fp32"] / rounds["bf16"], "x")


def accuracy_rows(rep, args, sz, dev):
    """A short FedMGD vs FedAvg(same Stage-1 init) comparison (budget permitting)."""
    import tempfile

    from fedmgd.train import run

    L = sz["long"]
    out = Path(tempfile.mkdtemp(prefix="fedmgd_bench_"))  # run folders (checkpoints) stay out of --out
    common = [f"gan.iters={L['s1_iters']}", f"fl.rounds={L['rounds']}", f"fl.local_steps={L['local_steps']}",
              f"fl.server_steps={L['server_steps']}", "gan.ckpt_every=1000000", "fl.ckpt_every=1000000"]
    t0 = time.perf_counter()
    mgd = run(make_cfg(args, sz, sz["k"], *common, f"out={out / 'fedmgd'}"), log=lambda *a: None)
    s1 = out / "fedmgd" / "stage1.pt"
    avg = run(make_cfg(args, sz, sz["k"], *common, "fl.method=fedavg", "fl.init=stage1", f"fl.stage1_from={s1}",
                       f"out={out / 'fedavg'}"), log=lambda *a: None)
    tag = f"short run ({L['s1_iters']} GAN it, {L['rounds']} rounds x {L['local_steps']} steps)"
    rep.row(f"{tag}: FedMGD test accuracy", 100 * mgd["final_test_acc"], "%")
    rep.row(f"{tag}: FedAvg (same Stage-1 init) test accuracy", 100 * avg["final_test_acc"], "%")
    rep.row(f"{tag}: wall seconds, both arms", time.perf_counter() - t0, "s")
    import shutil

    shutil.rmtree(out, ignore_errors=True)


def main():
    ap = gpu_parser("fedmgd", __doc__.split("\n\n")[0])
    args = ap.parse_args()
    rep = gpu_report("fedmgd", args)
    dev = rep.device
    sz = SMOKE if args.smoke else FULL
    root = args.data_root or os.environ.get("TENFOLD_DATA")
    if not args.smoke and not (root and (Path(root) / "cifar10" / "train.npz").is_file()):
        rep.skip(f"no cifar10/train.npz under --data-root ({root})")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_num_threads(1)
    feds: dict = {}
    st1 = stage1_rows(rep, args, sz, sz["k"], dev, feds)
    stage2_rows(rep, args, sz, dev, feds[sz["k"]], st1)
    if not args.smoke and rep.remaining() > 60:  # (--smoke: the same function at K=10 was just run)
        del st1
        stage1_rows(rep, args, sz, 2 * sz["k"], dev, feds)
    if args.long or (not args.smoke and rep.remaining() > 400):
        accuracy_rows(rep, args, sz, dev)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
