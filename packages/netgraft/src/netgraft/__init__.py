"""NetGraft: progressive network grafting for few-shot knowledge distillation (Shen et al., AAAI 2021)."""
import importlib

# The names load on first use (PEP 562): the console scripts' parsers import this package without torch.
# `netgraft.partition` is the submodule (a lazily loaded package cannot also bind the function of that name):
# the function is netgraft.partition.partition.
_NAMES = {"GraftingUnit": "method", "Grafted": "method", "Student": "method", "build_units": "method",
          "graft_loss": "method", "merge_adapters": "method", "normalized_logit_loss": "method",
          "Partition": "partition"}
__all__ = list(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'netgraft' has no attribute {name!r}")
