"""Your own models as DEPARA sources (issue #18): a model is named by one string,

    [NAME=]SOURCE[@WEIGHTS][#TAP]

* SOURCE `path.pt`: a depara zoo checkpoint or a teacher (state_dict + JSON beside it), as before;
* SOURCE `torchvision:<arch>`: a torchvision architecture built with random weights (nothing is downloaded),
  then WEIGHTS (a state_dict file, or a checkpoint holding one under 'state_dict' / 'model') loaded strictly;
* SOURCE `module:callable`: any factory importable from the Python path, called without arguments;
* TAP: the module whose output is the representation (e.g. `avgpool`, `classifier.4`); without it the pooled
  features of a `return_features=True` forward (zoo models, tenfold nets), else the model's output.

NAME defaults to the zoo task, the file stem, or the architecture."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import re
from collections.abc import Callable
from pathlib import Path

import torch
from tenfold import checkpoint
from tenfold.errors import CheckpointError, ConfigError
from torch import nn

from .graph import LayerTaps

__all__ = ["ModelSpec", "parse_model_spec", "load_source", "representation", "weights_digest"]

_NAME = re.compile(r"^([A-Za-z0-9_.+-]+)=(.+)$")


@dataclasses.dataclass
class ModelSpec:
    name: str
    source: str  # a file, torchvision:<arch> or module:callable
    weights: str = ""
    tap: str = ""

    @property
    def kind(self) -> str:
        if self.source.startswith("torchvision:"):
            return "torchvision"
        if ":" in self.source and not Path(self.source).exists() and not self.source.endswith(".pt"):
            return "factory"
        return "file"


def parse_model_spec(text: str) -> ModelSpec:
    text = text.strip()
    if not text:
        raise ConfigError("score.models has an empty entry")
    name = ""
    m = _NAME.match(text)
    if m and not Path(text).exists():
        name, text = m.group(1), m.group(2)
    tap = ""
    if "#" in text:
        text, tap = text.rsplit("#", 1)
    weights = ""
    if "@" in text:
        text, weights = text.split("@", 1)
    spec = ModelSpec(name, text, weights, tap)
    if not spec.name:
        spec.name = {"torchvision": text[len("torchvision:"):], "factory": text.rsplit(":", 1)[-1],
                     "file": Path(text).stem}[spec.kind]
    if spec.kind == "file" and spec.weights:
        raise ConfigError(f"{text}: '@WEIGHTS' is for torchvision:<arch> and module:callable sources; a .pt "
                          f"file carries its own weights")
    return spec


def _factory(target: str) -> Callable[[], nn.Module]:
    mod, _, attr = target.rpartition(":")
    try:
        obj = importlib.import_module(mod)
    except ImportError as e:
        raise ConfigError(f"model factory {target!r}: cannot import {mod!r} ({e})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"model factory {target!r}: {mod!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"model factory {target!r} is not callable")
    return obj


def _torchvision(arch: str) -> nn.Module:
    import torchvision

    try:
        return torchvision.models.get_model(arch, weights=None)  # random init: nothing is downloaded
    except ValueError:
        known = ", ".join(torchvision.models.list_models()[:12])
        raise ConfigError(f"torchvision:{arch}: unknown architecture (e.g. {known}, ...)") from None


def _load_weights(model: nn.Module, path: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file not found: {p}")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{p}: cannot read weights ({str(e).splitlines()[0]})") from None
    if isinstance(sd, dict):
        for key in ("state_dict", "model"):
            if isinstance(sd.get(key), dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict):
        raise CheckpointError(f"{p}: not a state_dict")
    checkpoint.load_module_state(model, sd, what=str(p.name))


def load_source(spec: ModelSpec, device="cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode on `device`, meta). meta['tap'] and meta['source'] define the representation."""
    from .zoo import load_zoo_model

    if spec.kind == "file":
        model, meta = load_zoo_model(spec.source, device)
        meta = dict(meta)
    else:
        model = _torchvision(spec.source[len("torchvision:"):]) if spec.kind == "torchvision" \
            else _factory(spec.source)()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"{spec.source} returned {type(model).__name__}, not a torch.nn.Module")
        if spec.weights:
            _load_weights(model, spec.weights)
        model = model.to(device).eval().requires_grad_(False)
        meta = {"arch": spec.source, "weights": spec.weights}
    meta.update(task=spec.name, source=spec.source, tap=spec.tap)
    return model, meta


def _takes_return_features(model: nn.Module) -> bool:
    try:
        return "return_features" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def representation(model: nn.Module, tap: str = "") -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable]:
    """(fn, close): fn(x) -> the representation [B, ...] DEPARA's nodes and edges are built from; close() removes
    any hook. A TAP keeps only that module's output; the forward still runs to the end (cheap next to backward)."""
    if tap:
        taps = LayerTaps(model, [tap])

        def fn(x):
            model(x)
            return taps.out.pop(tap)

        return fn, taps.remove
    if _takes_return_features(model):
        return (lambda x: model(x, return_features=True)[1]), (lambda: None)
    return model, (lambda: None)


def weights_digest(model: nn.Module) -> str:
    """sha256 of every parameter and buffer (names, dtypes, shapes, bytes): new weights -> a new digest."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
