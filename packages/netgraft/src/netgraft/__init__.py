"""NetGraft: progressive network grafting for few-shot knowledge distillation (Shen et al., AAAI 2021)."""
from .method import Grafted, GraftingUnit, Student, build_units, graft_loss, merge_adapters, normalized_logit_loss
from .partition import Partition, partition

__all__ = ["GraftingUnit", "Grafted", "Student", "build_units", "graft_loss", "merge_adapters",
           "normalized_logit_loss", "Partition", "partition"]
