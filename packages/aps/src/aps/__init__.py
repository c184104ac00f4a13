"""APS: Asymmetric Patch Sampling for contrastive learning (Shen et al., Pattern Recognition 2025)."""
from .method import aps_loss, contrastive_loss, lr_factor
from .model import APSModel, APSViT, build_backbone, finetune_state_from_pretrain, mlp_head
from .sampling import (
                       asymmetric_patch_sampling,
                       non_overlap_ratio,
                       overlap_fraction,
                       selective_patch_sampling,
                       sparse_patch_sampling,
)

__all__ = ["aps_loss", "contrastive_loss", "lr_factor", "APSModel", "APSViT", "build_backbone",
           "finetune_state_from_pretrain", "mlp_head", "asymmetric_patch_sampling", "non_overlap_ratio",
           "overlap_fraction", "selective_patch_sampling", "sparse_patch_sampling"]
__version__ = "0.1.0"
