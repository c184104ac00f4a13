"""GPU throughput figures (spec 7.3), random-init torchvision nets (weights cannot be downloaded here):

1. grad x input of the penultimate representation, ResNet-50 and VGG19-BN, 224x224, batch 64, fp32 and AMP;
2. all 16 conv layers of VGG19-BN: one forward + 16 autograd.grad(retain_graph) vs 16 forwards, 200 probes;
3. pairwise scoring: 20 models x 1000 probes (499,500 edges, 1000 x 65,536 fp16 maps), all 190 pairs.

    python bench/gpu_bench.py --out bench/gpu_throughput.json [--quick]   (--quick: tiny sizes, CPU smoke test)
"""
from __future__ import annotations

import argparse
import time

import torch
import torchvision
from depara.graph import GraphOptions, build_graph, conv_layer_names, layer_graphs
from depara.method import edge_similarity, node_similarity
from tenfold.bench import device_name, time_it, write_json
from tenfold.runtime import autocast, select_device


def penultimate(name: str):
    if name == "resnet50":
        m = torchvision.models.resnet50()
        m.fc = torch.nn.Identity()
    else:
        m = torchvision.models.vgg19_bn()
        m.classifier = m.classifier[:-1]  # up to the second 4096-d FC (+ReLU/Dropout), i.e. the penultimate layer
    return m


def attribution_throughput(dev, size, batch, reps) -> dict:
    out = {}
    x = torch.randn(batch, 3, size, size, device=dev)
    for name in ("resnet50", "vgg19_bn"):
        m = penultimate(name).to(dev).eval()
        for amp in (False, True):
            ctx = (lambda: autocast(dev)) if amp else None
            opts = GraphOptions(batch_size=batch, node_dtype="float16")

            def extract(m=m, opts=opts, ctx=ctx):
                return build_graph(m, x, opts, model=m, device=dev, amp=ctx)

            t = time_it(extract, warmup=1, repeat=reps, device=dev)
            out[f"{name}_{'amp' if amp else 'fp32'}_img_per_s"] = batch / t["median_s"]
    return out


def multi_layer(dev, size, n, reps) -> dict:
    m = torchvision.models.vgg19_bn().to(dev).eval()
    names = conv_layer_names(m, (torch.nn.Conv2d,))
    x = torch.randn(n, 3, size, size, device=dev)
    opts = GraphOptions(batch_size=20, center_features=False, node_dtype="float16")
    shared = time_it(lambda: layer_graphs(m, names, x, opts, device=dev), warmup=1, repeat=reps, device=dev)
    sep = time_it(lambda: layer_graphs(m, names, x, opts, device=dev, shared_forward=False), warmup=1,
                  repeat=reps, device=dev)
    return {"layers": len(names), "probes": n, "shared_forward_s": shared["median_s"],
            "separate_forwards_s": sep["median_s"], "multi_layer_speedup": sep["median_s"] / shared["median_s"],
            "shared_img_per_s": n / shared["median_s"], "separate_img_per_s": n / sep["median_s"]}


def pairwise(dev, models, n, pixels) -> dict:
    g = torch.Generator(device=dev).manual_seed(0)
    V = [torch.rand(n, pixels, device=dev, generator=g).half() for _ in range(models)]
    E = [torch.rand(n * (n - 1) // 2, device=dev, generator=g) for _ in range(models)]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    total = 0.0
    for i in range(models):
        for j in range(i + 1, models):
            total += float(node_similarity(V[i], V[j])) + float(edge_similarity(E[i], E[j]))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    out = {"pairwise_models": models, "pairwise_probes": n, "pairwise_pairs": models * (models - 1) // 2,
           "pairwise_edges": n * (n - 1) // 2, "pairwise_s": time.perf_counter() - t0, "pairwise_checksum": total}
    if dev.type == "cuda":
        out["peak_mem_gb"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench/gpu_throughput.json", help="JSON result path")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a CPU smoke test of this script)")
    args = p.parse_args()
    dev = select_device("auto")
    torch.backends.cudnn.benchmark = True
    q = args.quick
    res = {"device": device_name(dev)}
    res.update(attribution_throughput(dev, 32 if q else 224, 4 if q else 64, 1 if q else 5))
    res.update(multi_layer(dev, 32 if q else 224, 8 if q else 200, 1 if q else 3))
    res.update(pairwise(dev, 3 if q else 20, 50 if q else 1000, 256 if q else 65536))
    write_json(args.out, res)
    for k, v in res.items():
        print(f"{k:<32} {v:.4g}" if isinstance(v, float) else f"{k:<32} {v}")


if __name__ == "__main__":
    main()
