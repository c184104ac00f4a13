"""DEPARA GPU benchmark (issue #17 contract): attribution-graph build time per model, fp32 vs bf16.

    python packages/depara/bench/gpu.py --out DIR [--smoke] [--budget S] [--data-root D] [--models-root M] [--long]

1. Graph build (grad x input of the pooled representation, nodes float16, edges on the device) of every shared
   teacher in <models> (WRN-40-2 x 2, VGG-16 blockwise) on CIFAR-10 test probes of the data root (500; random
   images when it has none): seconds per graph and probes/s, fp32 and bf16, peak memory.
2. Spec 7.3 throughput: grad x input of ResNet-50 and VGG19-BN penultimate features at 224 px, batch 64 (random
   init), images/s fp32 and bf16.
3. Layer graphs of every conv layer of VGG-16 blockwise (one forward + one autograd.grad per layer vs a forward
   per layer), the shared-forward speed-up.
4. Pairwise scoring of 20 models x 1000 probes (node + edge similarity of all 190 pairs), seconds.
--long: also the real-data model-selection run (configs/real_zoo_gpu.yaml + the two WRN teachers) and the VGG-16
layer selection for animals-6 (configs/vgg_layer_selection.yaml).
--smoke: the same code on the CPU with tiny sizes (< 30 s).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from depara.graph import GraphOptions, build_graph, conv_layer_names, layer_graphs
from depara.method import edge_similarity, node_similarity
from depara.pipeline import amp_for
from depara.sources import representation
from depara.zoo import load_zoo_model, preprocess
from tenfold import bench
from tenfold.data import cifar10
from tenfold.errors import DataError

TEACHERS = ("cifar10_wrn40_2", "cifar10_animals6_wrn40_2", "cifar10_vgg16_blockwise")
PRECISIONS = ("fp32", "bf16")


def probes(data_root, n: int) -> tuple[torch.Tensor, str]:
    """n CIFAR-10 test images (normalised NCHW on the host), or random ones when the data root has none."""
    try:
        ds = cifar10(data_root, train=False)
        return preprocess(ds.images[:n]), "CIFAR-10 test"
    except DataError:
        g = torch.Generator().manual_seed(0)
        return preprocess(torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g)), "random"


def graph_rows(rep, models: dict, x: torch.Tensor, dev, repeat: int) -> None:
    opts = GraphOptions(batch_size=250 if dev.type == "cuda" else 16, node_dtype="float16")
    for name, model in models.items():
        fn, close = representation(model)
        try:
            for prec in PRECISIONS:
                amp = amp_for(dev, prec)
                def run(fn=fn, model=model, amp=amp):
                    return build_graph(fn, x, opts, model=model, device=dev, amp=amp)

                s = bench.time_it(run, warmup=1 if repeat > 1 else 0, repeat=repeat, device=dev)["median_s"]
                rep.row(f"graph build {name} ({prec}, {len(x)} probes)", s, "s")
                rep.row(f"graph build {name} ({prec})", len(x) / s, "probes/s")
                if prec == "bf16":
                    rep.row(f"peak memory, graph build {name} ({prec})", bench.peak_memory(run, dev) / 2**20, "MiB")
        finally:
            close()


def torchvision_rows(rep, dev, size: int, batch: int, repeat: int) -> None:
    import torchvision

    x = torch.randn(batch, 3, size, size, device=dev)
    opts = GraphOptions(batch_size=batch, node_dtype="float16")
    times = {}
    for name in ("resnet50", "vgg19_bn"):
        m = getattr(torchvision.models, name)()
        if name == "resnet50":
            m.fc = torch.nn.Identity()
        else:
            m.classifier = m.classifier[:-1]  # the penultimate 4096-d layer
        m = m.to(dev).eval()
        for prec in PRECISIONS:
            if not rep.smoke and rep.remaining() < 5:
                return
            amp = amp_for(dev, prec)
            def run(m=m, amp=amp):
                return build_graph(m, x, opts, model=m, device=dev, amp=amp)

            s = bench.time_it(run, warmup=1 if repeat > 1 else 0, repeat=repeat, device=dev)["median_s"]
            times[(name, prec)] = s
            rep.row(f"grad x input {name} {size}px ({prec}, batch {batch})", batch / s, "images/s")
        rep.row(f"bf16 speed-up, grad x input {name}", times[(name, "fp32")] / times[(name, "bf16")], "x")


def layer_rows(rep, model, x: torch.Tensor, dev, repeat: int) -> None:
    names = conv_layer_names(model, (torch.nn.Conv2d,))
    opts = GraphOptions(batch_size=100 if dev.type == "cuda" else 8, center_features=False, node_dtype="float16")
    t = {}
    for shared in (True, False):
        def run(shared=shared):
            return layer_graphs(model, names, x, opts, device=dev, shared_forward=shared)

        t[shared] = bench.time_it(run, warmup=0, repeat=repeat, device=dev)["median_s"]
    rep.row(f"layer graphs VGG-16 ({len(names)} conv layers, {len(x)} probes), shared forward", t[True], "s")
    rep.row("layer graphs: separate forwards / shared forward", t[False] / t[True], "x")


def pairwise_rows(rep, dev, models: int, n: int, pixels: int) -> None:
    g = torch.Generator(device=dev).manual_seed(0)
    V = [torch.rand(n, pixels, device=dev, generator=g).half() for _ in range(models)]
    E = [torch.rand(n * (n - 1) // 2, device=dev, generator=g) for _ in range(models)]
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    scores = [node_similarity(V[i], V[j]) + edge_similarity(E[i], E[j])
              for i in range(models) for j in range(i + 1, models)]
    torch.stack([torch.as_tensor(s, device=dev) for s in scores]).sum().item()  # one sync at the end
    rep.row(f"pairwise scoring, {models} models x {n} probes ({len(scores)} pairs)", time.perf_counter() - t0, "s")


def selection_rows(rep, args, models_root: Path, dev) -> None:
    """--long: the real-data zoo + selection of configs/real_zoo_gpu.yaml (the old gpu.sh)."""
    import json
    import tempfile

    from depara import cli
    from depara.data import split_size

    cfg = Path(__file__).resolve().parents[1] / "configs" / "real_zoo_gpu.yaml"
    # the splits are halves of the data root's sets; a pack's training subset scales the zoo down to fit
    tr, te = min(split_size(k, True, args.data_root) for k in ("cifar", "mnist")) // 2, split_size(
        "cifar", False, args.data_root) // 2
    cap = (64, 64, 64, 16) if args.smoke else (8000, 5000, 5000, 1000)
    sizes = [f"data.n_train={min(cap[0], tr // 3)}", f"data.n_transfer={min(cap[1], tr)}",
             f"data.n_test={min(cap[2], te)}", f"data.n_probe={min(cap[3], te)}"]
    teachers = f"zoo.teachers=[{models_root / 'cifar10_wrn40_2.pt'},{models_root / 'cifar10_animals6_wrn40_2.pt'}]"
    small = ["zoo.epochs=1", "zoo.tasks=[C1,C2]", "zoo.arch=tiny_cnn", "zoo.batch_size=8", "transfer.iters=2",
             "graph.batch_size=8"] if args.smoke else []
    extra = [f"data_root={args.data_root}"] if args.data_root else []
    with tempfile.TemporaryDirectory() as tmp:
        common = ["--config", str(cfg), teachers, f"device={dev.type}", f"zoo_dir={tmp}/zoo", *extra, *sizes, *small]
        t0 = time.perf_counter()
        try:
            failed = cli.zoo_main(["--out", f"{tmp}/zoo", *common]) or cli.select_main(["--out", f"{tmp}/sel", *common])
        except SystemExit as e:  # the CLIs' error exit
            failed = e.code or 1
        if failed:
            rep.row("model selection run failed (see the log)", None, "")
            return
        rep.row("zoo training + transfer + selection (real_zoo_gpu.yaml)", time.perf_counter() - t0, "s")
        metrics = json.loads((Path(tmp) / "sel" / "selection.json").read_text()).get("metrics") or {}
        for scorer in ("depara_lam1", "random"):  # {scorer: {spearman, kendall, top1_hit, top1_regret}}
            for k, v in (metrics.get(scorer) or {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    rep.row(f"selection {scorer} {k}", v, "")


def layer_selection_rows(rep, args, models_root: Path, dev) -> None:
    """--long: which VGG-16 conv layer transfers best to animals-6 (configs/vgg_layer_selection.yaml)."""
    import json
    import tempfile

    from depara import cli
    from depara.data import split_size

    cfg = Path(__file__).resolve().parents[1] / "configs" / "vgg_layer_selection.yaml"
    tr, te = split_size("cifar", True, args.data_root) // 2, split_size("cifar", False, args.data_root) // 2
    cap = (64, 50, 16) if args.smoke else (5000, 5000, 1000)
    sizes = [f"data.n_transfer={min(cap[0], tr)}", f"data.n_test={min(cap[1], te)}",
             f"data.n_probe={min(cap[2], te)}"] + (["graph.batch_size=8", "transfer.iters=2"] if args.smoke else [])
    extra = [f"data_root={args.data_root}"] if args.data_root else []
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--config", str(cfg), "--out", f"{tmp}/layers", f"device={dev.type}", *extra, *sizes,
                f"select.layer_source={models_root / 'cifar10_vgg16_blockwise.pt'}",
                f"select.layer_reference={models_root / 'cifar10_animals6_wrn40_2.pt'}"]
        t0 = time.perf_counter()
        try:
            failed = cli.select_main(argv)
        except SystemExit as e:
            failed = e.code or 1
        if failed:
            rep.row("layer selection run failed (see the log)", None, "")
            return
        rep.row("VGG-16 layer selection (vgg_layer_selection.yaml)", time.perf_counter() - t0, "s")
        res = json.loads((Path(tmp) / "layers" / "layers.json").read_text())
        for k in ("spearman_lam1", "regret_lam1"):
            if isinstance(res.get(k), (int, float)):
                rep.row(f"layer selection {k}", res[k], "")


def main(argv=None) -> None:
    args = bench.gpu_parser("depara", __doc__.split("\n")[0]).parse_args(argv)
    rep = bench.gpu_report("depara", args)
    dev = rep.device
    models_root = Path(args.models_root or os.environ.get("TENFOLD_MODELS") or "models")
    missing = [t for t in TEACHERS if not (models_root / f"{t}.pt").is_file()]
    if missing:
        rep.skip(f"teachers missing in {models_root}: {', '.join(missing)}")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    smoke = args.smoke
    models = {t: load_zoo_model(models_root / f"{t}.pt", dev)[0] for t in TEACHERS}
    x, what = probes(args.data_root, 16 if smoke else 500)
    print(f"depara: probes: {what} ({len(x)})", flush=True)
    repeat = 1 if smoke else 3
    graph_rows(rep, models, x, dev, repeat)
    # the smoke run checks every code path whatever its wall time; a real run leaves out what does not fit
    if smoke or rep.remaining() > 60:
        torchvision_rows(rep, dev, 32 if smoke else 224, 4 if smoke else 64, repeat)
    if smoke or rep.remaining() > 30:
        layer_rows(rep, models["cifar10_vgg16_blockwise"], x[:8] if smoke else x[:200], dev, 1)
    if smoke or rep.remaining() > 15:
        pairwise_rows(rep, dev, *((3, 20, 64) if smoke else (20, 1000, 65536)))
    if args.long:
        selection_rows(rep, args, models_root, dev)
        layer_selection_rows(rep, args, models_root, dev)


if __name__ == "__main__":
    main(sys.argv[1:])
