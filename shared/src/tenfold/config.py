"""YAML file + dotted command-line overrides -> one typed dataclass config.

    cfg = load(MyConfig, "configs/demo.yaml", ["optim.lr=0.1", "model.depth=3"])

Unknown keys fail with their dotted name and the closest valid key; values that do not fit the
field's type fail with the expected type. Override values are parsed as YAML scalars/lists.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import ConfigError

__all__ = ["RunConfig", "bounded", "positive", "nonnegative", "probability", "load", "read_yaml", "from_dict",
           "to_dict", "flat_defaults", "flat_values", "typed_defaults", "check_keys", "save", "apply_overrides"]


@dataclasses.dataclass
class RunConfig:
    """Fields every tenfold run has; package configs inherit from this."""

    seed: int = 0
    device: str = "auto"  # auto (cuda > mps > cpu) | cpu | cuda | cuda:1 | mps
    out: str = "runs/default"  # run directory: config.yaml, metrics.jsonl, checkpoints, summary.json
    data_root: str | None = None  # overrides $TENFOLD_DATA
    deterministic: bool = False  # torch.use_deterministic_algorithms + cudnn.deterministic
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"  # autocast dtype on CUDA (runtime.autocast); CPU runs fp32


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            if origin is list and args and not isinstance(value, (list, tuple)):
                value = [value]  # a scalar where a list is expected: a one-element list
            else:
                raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def _unknown(key: str, valid: list[str], prefix: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (valid keys: {', '.join(valid)})"
    return ConfigError(f"unknown config key '{prefix}{key}'{hint}")


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass `cls` from a (nested) mapping, checking keys and types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    kwargs = {}
    for k, v in data.items():
        if k not in fields:
            raise _unknown(str(k), list(fields), prefix)
        kwargs[k] = _coerce(v, hints[k], prefix + k)
        _check_range(kwargs[k], fields[k].metadata.get("range"), prefix + k)
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate()
    return obj


def bounded(default, *, gt=None, ge=None, le=None, lt=None):
    """A dataclass field whose value must lie in a range, declared beside the field and checked by from_dict:
    `lr: float = bounded(0.1, gt=0)`, `p: float = bounded(0.5, ge=0, le=1)`, `steps: int = bounded(0, ge=0)`."""
    return dataclasses.field(default=default, metadata={"range": (gt, ge, le, lt)})


def positive(default):
    """> 0 (learning rates, batch sizes, rounds)."""
    return bounded(default, gt=0)


def nonnegative(default):
    """>= 0 (step and epoch counts where 0 means 'derive it')."""
    return bounded(default, ge=0)


def probability(default):
    """In [0, 1]."""
    return bounded(default, ge=0, le=1)


def _check_range(value, rng, key: str) -> None:
    if rng is None or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    gt, ge, le, lt = rng
    bad = ((gt is not None and not value > gt) or (ge is not None and not value >= ge)
           or (le is not None and not value <= le) or (lt is not None and not value < lt))
    if bad:
        lo = f"> {gt}" if gt is not None else f">= {ge}" if ge is not None else ""
        hi = f"<= {le}" if le is not None else f"< {lt}" if lt is not None else ""
        raise ConfigError(f"{key}: must be {' and '.join(x for x in (lo, hi) if x)}, got {value}")


def to_dict(cfg) -> dict:
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(cfg)


def flat_defaults(schema) -> list[str]:
    """'key=default' for every field of a config dataclass, nested keys dotted as overrides spell them
    (for --help epilogs)."""
    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}={v}"

    return list(flat(to_dict(schema())))


def flat_values(schema) -> dict:
    """{dotted key: default} of a config dataclass."""
    return flat_values_of(to_dict(schema()))


def flat_values_of(data: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (data or {}).items():
        if isinstance(v, dict):
            out.update(flat_values_of(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def typed_defaults(schema, prefix: str = "") -> list[str]:
    """'key: type = default' for every field of a config dataclass (nested keys dotted), for --help."""
    out = []
    hints = _hints(schema)
    obj = schema()
    for f in dataclasses.fields(schema):
        if not f.init:
            continue
        tp, value = hints[f.name], getattr(obj, f.name)
        if dataclasses.is_dataclass(tp):
            out += typed_defaults(tp, f"{prefix}{f.name}.")
            continue
        rng = f.metadata.get("range")
        bound = ""
        if rng:
            gt, ge, le, lt = rng
            parts = [p for p in ((f"> {gt}" if gt is not None else f">= {ge}" if ge is not None else ""),
                                 (f"<= {le}" if le is not None else f"< {lt}" if lt is not None else "")) if p]
            bound = f" ({' and '.join(parts)})"
        shown = to_dict(value) if dataclasses.is_dataclass(value) else value
        name = str(tp).replace("typing.", "") if typing.get_origin(tp) is not None else _type_name(tp)
        out.append(f"{prefix}{f.name}: {name} = {shown}{bound}")
    return out


def _parse_value(text: str):
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` strings to a nested dict (keys checked later by from_dict)."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value, e.g. optim.lr=0.1")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override '{item}': '{p}' is not a section")
            node = nxt
        node[parts[-1]] = _parse_value(text)
    return data


def _merge_defaults(cls, data: dict, prefix: str = "") -> dict:
    """Check unknown keys at every level before building, so errors name the full dotted key."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    for k, v in data.items():
        if k not in fields:
            raise _unknown(str(k), list(fields), prefix)
        tp = hints[k]
        if dataclasses.is_dataclass(tp) and isinstance(v, dict):
            _merge_defaults(tp, v, prefix + k + ".")
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                m = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first at line {seen[key] + 1})", m)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def check_keys(cls, data: dict) -> dict:
    """Raise ConfigError for a key `cls` does not have (at any depth), without building the config."""
    return _merge_defaults(cls, data)


def read_yaml(path: str | os.PathLike | None) -> dict:
    """The mapping in a YAML file ({} for None), with one-line errors for a missing or malformed file."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.load(p.read_text(), Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{p}:{where} not valid YAML ({what})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys")
    return data


def load(cls, path: str | os.PathLike | None = None, overrides: list[str] | None = None):
    """Config of type `cls` from an optional YAML file plus dotted overrides."""
    data = apply_overrides(read_yaml(path), overrides or [])
    _merge_defaults(cls, data)
    return from_dict(cls, data)


def save(cfg, path: str | os.PathLike) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    # keep the '# history: ' lines tenfold.rundir records on resume (what ran when)
    history = [ln for ln in p.read_text().splitlines() if ln.startswith("# history: ")] if p.is_file() else []
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("".join(ln + "\n" for ln in history) + yaml.safe_dump(to_dict(cfg), sort_keys=False))
    os.replace(tmp, p)
