"""Building a DEPARA (nodes V, edges E, RSA dissimilarities R) of a model or of its layers on a probe set.

Graphs are cached per model, so scoring M models costs M extractions, not M^2 (spec 6)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tenfold import checkpoint
from tenfold.errors import CheckpointError, ConfigError
from torch import nn

from .config import GraphOptions  # defined with the config (torch-free); importable from here as before
from .method import attribute, edge_rsa_streamed, edge_vector, elrp_rules, no_inplace, reduce_channels, rsa_vector

__all__ = ["Graph", "GraphOptions", "build_graph", "layer_graphs", "LayerTaps", "conv_layer_names",
           "save_graph", "load_graph"]

GRAPH_KIND = "depara-graph"


@dataclasses.dataclass
class Graph:
    V: torch.Tensor  # [n, P] vectorised attribution maps (nodes)
    E: torch.Tensor  # [n(n-1)/2] edge weights (cosine of features)
    R: torch.Tensor  # [n(n-1)/2] RSA dissimilarities (1 - Pearson), for the RSA baseline
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.V.shape[0]


def _nodes(A: torch.Tensor, opts: GraphOptions) -> torch.Tensor:
    if opts.node_pool > 1:
        A = F.avg_pool2d(A, opts.node_pool)
    return reduce_channels(A, opts.channel_reduce).to(getattr(torch, opts.node_dtype)).cpu()


def _finish(nodes: list, feats: list, opts: GraphOptions, meta: dict, stream_to=None) -> Graph:
    """stream_to=None: edges in fp64 where the features are (small pooled features); a device: the features
    (held on the host) go there in fp32 column slices, and only the n x n Gram matrix is kept (layer graphs)."""
    feats_t = torch.cat(feats)
    feats.clear()  # the per-batch pieces are not needed twice
    if feats_t.shape[0] < 3:
        raise ConfigError(f"a graph needs at least 3 probe images, got {feats_t.shape[0]}")
    if not bool(torch.isfinite(feats_t).all()):
        raise ConfigError(f"non-finite features for {meta.get('name', 'a model')}: check the weights/inputs")
    if stream_to is None:
        E, R = edge_vector(feats_t, opts.center_features).cpu(), rsa_vector(feats_t, opts.center_features).cpu()
    else:
        E, R = edge_rsa_streamed(feats_t, opts.center_features, stream_to)
    return Graph(torch.cat(nodes), E, R, dict(meta, dim=feats_t.shape[1], **{
                     k: getattr(opts, k) for k in ("attribution", "channel_reduce", "center_features",
                                                   "node_pool", "node_dtype")}))


def build_graph(fn: Callable[[torch.Tensor], torch.Tensor], probes: torch.Tensor, opts: GraphOptions | None = None,
                model: nn.Module | None = None, device: torch.device | str = "cpu", meta: dict | None = None,
                amp: Callable | None = None) -> Graph:
    """Graph of the representation `fn(x)` on `probes` [n,C,H,W] (already preprocessed), in batches.

    `model` (if given) is put in eval mode for the extraction: train-mode BN/dropout would make a map
    depend on its batch-mates."""
    opts = opts or GraphOptions()
    opts.validate()
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    nodes, feats = [], []
    try:
        with no_inplace(model):
            for i in range(0, probes.shape[0], opts.batch_size):
                xb = probes[i:i + opts.batch_size].to(device)
                with (amp() if amp is not None else _null()):
                    A, y = attribute(fn, xb, opts.attribution, opts.objective, opts.elrp_eps)
                nodes.append(_nodes(A.float(), opts))
                feats.append(y.float())  # edges are computed where the features are (GPU when there)
    finally:
        if model is not None and was_training:
            model.train()
    return _finish(nodes, feats, opts, meta or {})


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


class LayerTaps:
    """Forward hooks that keep the outputs of named modules (e.g. raw conv outputs before BN/ReLU)."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        mods = dict(model.named_modules())
        missing = [n for n in names if n not in mods]
        if missing:
            conv = conv_layer_names(model)
            raise ConfigError(f"no module named {missing[0]!r} in {type(model).__name__}; conv layers: "
                              f"{', '.join(conv[:20])}{' ...' if len(conv) > 20 else ''}")
        self.names = list(names)
        self.out: dict[str, torch.Tensor] = {}
        self.handles = [mods[n].register_forward_hook(self._hook(n)) for n in self.names]

    def _hook(self, name):
        def fn(_m, _inp, output):
            self.out[name] = output[0] if isinstance(output, (tuple, list)) else output

        return fn

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def conv_layer_names(model: nn.Module, types=(nn.Conv2d, nn.Linear)) -> list[str]:
    """Module names of conv (and linear) layers in forward-definition order."""
    return [n for n, m in model.named_modules() if isinstance(m, types) and n]


def layer_graphs(model: nn.Module, names: Sequence[str], probes: torch.Tensor, opts: GraphOptions | None = None,
                 device: torch.device | str = "cpu", shared_forward: bool = True, meta: dict | None = None
                 ) -> dict[str, Graph]:
    """One graph per layer (the model truncated at that layer).

    shared_forward=True: one forward per batch, then one autograd.grad(y_l.sum(), x, retain_graph=True)
    per layer, each on the same fresh leaf but never accumulated. False: a separate forward per layer.

    Memory: each batch's layer outputs leave the device at once (fp32, host), and the graphs are finished one
    layer at a time, each layer's features streamed back in fp32 slices (no fp64 copy, one layer on the device).
    The host holds n x sum_l D_l floats; a list of names split into groups bounds it (one call per group)."""
    opts = opts or GraphOptions()
    opts.validate()
    model.eval()
    nodes = {n: [] for n in names}
    feats = {n: [] for n in names}
    taps = LayerTaps(model, names)
    try:
        with no_inplace(model), torch.enable_grad():
            for i in range(0, probes.shape[0], opts.batch_size):
                xb = probes[i:i + opts.batch_size].to(device)
                if shared_forward:
                    x = xb.detach().clone().requires_grad_(True)
                    with (elrp_rules(opts.elrp_eps) if opts.attribution == "elrp" else _null()):
                        model(x)
                    g_sum = None
                    for j, n in enumerate(names):
                        y = taps.out[n]
                        s = y.sum() if opts.objective == "sum" else y.mean()
                        (g,) = torch.autograd.grad(s, x, retain_graph=j < len(names) - 1)
                        if opts.reference_accumulation:  # x.grad never zeroed between layers in the reference
                            g = g_sum = g if g_sum is None else g_sum + g
                        A = g.abs() if opts.attribution == "saliency" else g * x.detach()
                        nodes[n].append(_nodes(A.detach(), opts))
                        feats[n].append(y.detach().flatten(1).float().cpu())
                        del g, A
                    taps.out.clear()
                else:
                    for n in names:
                        def fn(x, n=n):
                            model(x)
                            return taps.out.pop(n)

                        A, y = attribute(fn, xb, opts.attribution, opts.objective, opts.elrp_eps)
                        nodes[n].append(_nodes(A, opts))
                        feats[n].append(y.float().cpu())
                        taps.out.clear()
    finally:
        taps.remove()
    return {n: _finish(nodes[n], feats[n], opts, dict(meta or {}, layer=n), stream_to=device) for n in names}


def save_graph(g: Graph, path: str | Path) -> Path:
    return checkpoint.save(path, {"V": g.V, "E": g.E, "R": g.R, "meta": g.meta}, kind=GRAPH_KIND)


def load_graph(path: str | Path) -> Graph:
    state = checkpoint.load(path, kind=GRAPH_KIND)
    try:
        return Graph(state["V"], state["E"], state["R"], state.get("meta", {}))
    except KeyError as e:
        raise CheckpointError(f"{path}: graph file lacks {e}") from None
