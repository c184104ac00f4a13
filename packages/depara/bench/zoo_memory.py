"""Memory and time of DEPARA on a zoo of torchvision models at 224 px (issue #18), on the CPU.

    OMP_NUM_THREADS=1 python packages/depara/bench/zoo_memory.py --out DIR [--probes 200] [--batch 50] [--quick]

For each of 10 small torchvision architectures (random weights: nothing is downloaded) it builds the model graph
of the pooled representation (`#avgpool` where the model has one, else its output) on the same probes through
`depara.pipeline.model_graphs`, each in a fresh process, and records the wall time, the peak resident memory
above the level after building the model and probes (ru_maxrss, so allocator reuse between models cannot hide
it) and the counted forward FLOPs. Then it extrapolates to VGG19-BN: its per-probe
time measured on a few probes (the cost is linear in the probe count), its peak memory at two batch sizes
(activations are linear in the batch) and the host memory of layer selection's features (16 convs + 2 FCs),
counted from the layer shapes. Writes DIR/zoo_memory.json after every model; a rerun keeps the models already
measured there (same --probes and --batch) and continues."""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torchvision
from depara.config import DeparaConfig
from depara.data import synthetic_factors
from depara.pipeline import model_graphs
from depara.ranking import candidate_layers
from depara.zoo import preprocess
from torch.utils.flop_counter import FlopCounterMode

ZOO = ["mobilenet_v3_small", "shufflenet_v2_x0_5", "squeezenet1_1", "mnasnet0_5", "mobilenet_v2",
       "regnet_x_400mf", "efficientnet_b0", "mobilenet_v3_large", "resnet18", "googlenet"]
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _flops(model, x) -> float:
    with FlopCounterMode(display=False) as fc:
        model(x)
    return float(fc.get_total_flops())


def _build(arch: str):
    kw = {"aux_logits": False, "init_weights": True} if arch == "googlenet" else {}
    torch.manual_seed(0)
    return torchvision.models.get_model(arch, weights=None, **kw).eval()


def _cfg(batch: int) -> DeparaConfig:
    cfg = DeparaConfig()
    cfg.data.mean, cfg.data.std = IMAGENET
    cfg.graph.batch_size = batch
    return cfg


def one(arch: str, probes: int, batch: int, tap: str | None = None) -> dict:
    """One graph in this (fresh) process: time, peak RSS above the level before extraction, FLOPs."""
    raw = synthetic_factors(probes, seed=0, size=224).images
    model = _build(arch)
    tap = tap if tap is not None else ("avgpool" if hasattr(model, "avgpool") else "")
    flops = _flops(model, preprocess(raw[:1], *IMAGENET))
    base = _rss_mib()
    t0 = time.perf_counter()
    g = model_graphs(_cfg(batch), {arch: (model, {"tap": tap})}, None, "cpu", raw=raw)[arch]
    dt = time.perf_counter() - t0
    return {"arch": arch, "tap": tap or "(output)", "params_M": round(sum(p.numel() for p in model.parameters())
                                                                     / 1e6, 2),
            "gflops_fwd": round(flops / 1e9, 3), "dim": g.meta["dim"], "probes": probes, "batch": batch,
            "seconds": round(dt, 2), "probes_per_s": round(probes / dt, 2),
            "peak_rss_above_start_MiB": round(max(_peak_mib() - base, 0.0), 1)}


def _child(arch: str, probes: int, batch: int, tap: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--one", arch, "--probes", str(probes), "--batch", str(batch)]
    if tap is not None:
        cmd += ["--tap", tap]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"probes": args.probes, "image_size": 224, "batch": args.batch, "threads": torch.get_num_threads(),
           "torch": torch.__version__, "models": [], "note": "CPU, measured on a shared, loaded 2-core machine"}
    path = out / "zoo_memory.json"
    if path.is_file():  # a rerun continues: models already measured with the same sizes are kept
        old = json.loads(path.read_text())
        if (old.get("probes"), old.get("batch")) == (args.probes, args.batch):
            res["models"] = old.get("models", [])
    done = {m["arch"] for m in res["models"]}
    for arch in (ZOO[:3] if args.quick else ZOO):
        if arch in done:
            continue
        res["models"].append(_child(arch, args.probes, args.batch))
        (out / "zoo_memory.json").write_text(json.dumps(res, indent=1))
        print(json.dumps(res["models"][-1]), flush=True)
    res["zoo_total_seconds"] = round(sum(m["seconds"] for m in res["models"]), 1)
    res["zoo_max_peak_MiB"] = max(m["peak_rss_above_start_MiB"] for m in res["models"])
    res["vgg19_bn"] = _vgg(args)
    (out / "zoo_memory.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res["vgg19_bn"], indent=1))
    return res


def _vgg(args) -> dict:
    """VGG19-BN's penultimate FC (classifier.4) on a few probes at batch 2 and 4, extrapolated."""
    m = {b: _child("vgg19_bn", 2 * b, b, "classifier.4") for b in (2, 4)}
    per_probe_s = min(r["seconds"] / r["probes"] for r in m.values())
    per_image = (m[4]["peak_rss_above_start_MiB"] - m[2]["peak_rss_above_start_MiB"]) / 2
    vgg = _build("vgg19_bn")
    shapes: dict[str, int] = {}  # per-probe size of each candidate's output
    names = candidate_layers(vgg, 2)
    mods = dict(vgg.named_modules())
    hooks = [mods[n].register_forward_hook(lambda _m, _i, o, n=n: shapes.__setitem__(n, o[0].numel())) for n in names]
    with torch.no_grad():
        vgg(torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    n = args.probes
    return {"gflops_fwd": m[2]["gflops_fwd"], "seconds_per_probe": round(per_probe_s, 2),
            f"extrapolated_seconds_{n}_probes": round(per_probe_s * n, 1),
            "peak_MiB_batch2": m[2]["peak_rss_above_start_MiB"], "peak_MiB_batch4": m[4]["peak_rss_above_start_MiB"],
            "activation_MiB_per_probe_in_batch": round(per_image, 1),
            f"extrapolated_peak_MiB_batch{args.batch}": round(m[2]["peak_rss_above_start_MiB"]
                                                              + (args.batch - 2) * per_image, 1),
            "layer_selection_candidates": len(names),
            f"layer_selection_host_features_GiB_{n}_probes": round(n * sum(shapes.values()) * 4 / 2 ** 30, 2),
            "largest_layer_features_GiB": round(n * max(shapes.values()) * 4 / 2 ** 30, 2)}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/depara-zoo-memory")
    p.add_argument("--probes", type=int, default=200)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--quick", action="store_true", help="3 models, for a smoke check")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model in this process
    p.add_argument("--tap", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.probes, a.batch, a.tap)))
    else:
        run(a)
