"""Shared command-line plumbing: every tenfold CLI takes --config, dotted overrides, --out, --resume,
--device, --seed and --data-root, and turns TenfoldError into one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import functools
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from . import config as config_mod
from . import configs, rundir, signals
from .errors import RunStopped, TenfoldError

__all__ = ["base_parser", "parse_args", "parse_config", "prepare_run", "main_guard", "HelpFormatter"]

EPILOG = ("Any config key below can be overridden as KEY=VALUE (dotted for nested keys); unknown keys, wrong "
          "types and out-of-range values are rejected with one line.")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: X)' only where there is a default worth showing; the epilog (config keys, examples)
    keeps its line breaks."""

    def _get_help_string(self, action):
        if action.default is None or action.default is argparse.SUPPRESS or action.default is False:
            return action.help
        return super()._get_help_string(action)


def base_parser(prog: str, description: str, config_required: bool = False, schema=None,
                defaults: str = "", train: bool = False, package: str = "",
                examples: list[str] | None = None) -> argparse.ArgumentParser:
    """The common flags. With `schema` (a config dataclass) the epilog lists every key with its type and default;
    `defaults` says where those defaults come from. The help ends with two example commands (`examples`, else
    made from the package's demo config and a step/epoch key); a test parses each of them.
    `train=True` marks a training CLI: its --out is protected
    (see tenfold.rundir) and it gets --overwrite, --resume-if-exists and --accept-config-change."""
    package = package or _caller_package()
    epilog = textwrap.fill(EPILOG, 118)
    if schema is not None:
        epilog += f"\n\nconfig keys (defaults{' = ' + defaults if defaults else ''}):\n" + \
            "\n".join(f"  {line}" for line in config_mod.typed_defaults(schema))
    examples = examples if examples is not None else _examples(prog, package, schema, train)
    if examples:
        epilog += "\n\nexamples:\n" + "\n".join(f"  {e}" for e in examples)
    p = argparse.ArgumentParser(prog=prog, description=textwrap.fill(" ".join(description.split()), 118),
                                epilog=epilog, formatter_class=HelpFormatter)
    p.set_defaults(tenfold_package=package)
    # `type` resolves a shipped config's name to its path as soon as the option is read (before --help acts)
    p.add_argument("--config", "-c", required=config_required, type=functools.partial(configs.resolve, package),
                   help="YAML config: a path, or the name of a config shipped with the package (e.g. demo; "
                        "see --list-configs); defaults apply to missing keys")
    p.add_argument("--list-configs", action=_ListConfigs, package=package,
                   help="list the configs shipped with this package, one line each, and exit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (file + overrides + flags) as YAML and exit")
    p.add_argument("--out", help="run directory (config.yaml, metrics.jsonl, last.pt, summary.json)")
    p.add_argument("--resume", nargs="?", const="auto",
                   help="continue exactly from a checkpoint file or run directory; bare --resume uses <out>/last.pt"
                        + (" and fails when there is none" if train else ""))
    if train:
        p.add_argument("--resume-if-exists", action="store_true",
                       help="resume from <out>/last.pt when it exists, else start fresh (for requeue scripts)")
        p.add_argument("--overwrite", action="store_true",
                       help="start afresh in an --out that holds a run, moving the old run to <out>.old-<time>")
        p.add_argument("--accept-config-change", action="store_true",
                       help="on resume, apply config changes beyond step/epoch limits and logging/eval settings "
                            "(e.g. a new learning rate); they are recorded in config.yaml")
        p.set_defaults(tenfold_train=True)
    p.add_argument("--device", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--data-root", help="data directory (default: $TENFOLD_DATA, else ~/.cache/tenfold/data)")
    return p


# keys that make a good second example (a shorter or longer run), first match wins
_EXAMPLE_KEYS = ("max_steps", "optim.steps", "steps", "fl.rounds", "rounds", "kd.epochs", "epochs", "optim.epochs",
                 "train.epochs", "gan.iters")


def _demo_config(prog: str, package: str, schema):
    """The shipped config an example should use: demo_<command> (demo_teacher for x-teacher), else demo, if its
    keys fit this command's schema."""
    found = configs.shipped(package) if package else {}
    for name in (f"demo_{prog.rsplit('-', 1)[-1]}", "demo"):
        if name in found:
            try:
                data = config_mod.read_yaml(found[name])
                if schema is not None:
                    config_mod.check_keys(schema, data)
                return name, data
            except TenfoldError:
                continue
    return None, {}


def _examples(prog: str, package: str, schema, train: bool) -> list[str]:
    name, data = _demo_config(prog, package, schema)
    base = f"{prog} --config {name}" if name else prog
    out = f" --out runs/{prog.split('-')[0] if train and name == 'demo' else prog}-demo"
    first = base + out
    if schema is None:
        return [first, f"{prog} --help"]
    keys = {**config_mod.flat_values(schema), **config_mod.flat_values_of(data)}
    key = next((k for k in _EXAMPLE_KEYS if k in keys and isinstance(keys[k], int) and not isinstance(keys[k], bool)),
               None)
    second = base + (f" {key}={max(int(keys[key]) * 2, 2)}" if key else "") + out + \
        (" --resume-if-exists" if train else " --print-config")
    return [first, second]


def _caller_package() -> str:
    """The top-level package of base_parser's caller (its shipped configs are looked up by name)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("tenfold."):
        frame = frame.f_back
    name = (frame.f_globals.get("__package__") or frame.f_globals.get("__name__", "")) if frame else ""
    return name.split(".")[0] if name and name != "__main__" else ""


class _ListConfigs(argparse.Action):
    def __init__(self, option_strings, dest, package="", help=None):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)
        self.package = package

    def __call__(self, parser, namespace, values, option_string=None):
        found = configs.shipped(self.package)
        if not found:
            print(f"no shipped configs found for {self.package or parser.prog}")
        width = max((len(n) for n in found), default=0)
        for name, path in found.items():
            print(f"{name:<{width}}  {configs.describe(path)}")
        parser.exit(0)


def parse_config(schema, args: argparse.Namespace):
    """Config from --config + overrides, with the common flags applied last."""
    overrides = list(args.overrides or [])
    resume = getattr(args, "resume", None)
    if resume and "=" in str(resume) and not Path(resume).exists():
        # `--resume key=value`: argparse gave the override to the optional --resume value
        overrides.append(resume)
        args.resume = "auto"
    for flag, key in (("out", "out"), ("device", "device"), ("seed", "seed"), ("data_root", "data_root")):
        val = getattr(args, flag, None)
        if val is not None:
            overrides.append(f"{key}={val}")
    cfg = config_mod.load(schema, args.config, overrides)
    _maybe_print(cfg, args)
    prepare_run(cfg, args)
    return cfg


def _maybe_print(cfg, args: argparse.Namespace) -> None:
    if getattr(args, "print_config", False):
        import yaml

        print(yaml.safe_dump(config_mod.to_dict(cfg), sort_keys=False), end="")
        sys.exit(0)


def prepare_run(cfg, args: argparse.Namespace) -> None:
    """For training parsers: protect --out and settle args.resume (None, 'auto' or a path) before the run
    writes anything; see tenfold.rundir. A no-op for parsers built without train=True."""
    _maybe_print(cfg, args)
    if not getattr(args, "tenfold_train", False) or getattr(args, "tenfold_prepared", False):
        return
    args.resume = rundir.prepare(cfg, args.resume, overwrite=args.overwrite, if_exists=args.resume_if_exists,
                                 accept_change=args.accept_config_change)
    args.tenfold_prepared = True
    global _run_out
    _run_out = str(cfg.out)
    if args.resume:
        _draw_curves()  # the curves so far, before the run goes on


_run_out: str | None = None  # the run directory of the training CLI in progress (for curves.png)


def _draw_curves() -> None:
    """<out>/curves.png from metrics.jsonl; a picture must never fail a run, so problems only warn."""
    if _run_out is None or not (Path(_run_out) / "metrics.jsonl").is_file():
        return
    try:
        from . import plot

        plot.curves(_run_out)
    except Exception as e:  # noqa: BLE001
        print(f"warning: could not draw {_run_out}/curves.png ({type(e).__name__}: {e})", file=sys.stderr)


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Like parser.parse_args, but KEY=VALUE overrides may come before, between or after options."""
    return parser.parse_intermixed_args(argv)


def main_guard(fn: Callable) -> Callable:
    """Decorator for console-script entry points: TenfoldError -> 'error: ...' and exit 2."""

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        global _run_out
        _run_out = None
        signals.install()
        try:
            # Returned values reach Python callers (tests, notebooks); entry points that are console scripts
            # should return None or an int, since the script wrapper passes the value to sys.exit.
            result = fn(*a, **kw)
            _draw_curves()
            return result
        except TenfoldError as e:
            _draw_curves()
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            _draw_curves()
            print("interrupted; resume with --resume", file=sys.stderr)
            sys.exit(130)
        except RunStopped as e:
            _draw_curves()
            print(e.message, file=sys.stderr, flush=True)
            sys.exit(128 + e.signum)
        finally:
            if "tenfold.checkpoint" in sys.modules:  # undo an --accept-config-change resume's optimizer hook
                sys.modules["tenfold.checkpoint"].keep_hparams_on_load(False)

    return wrapper
