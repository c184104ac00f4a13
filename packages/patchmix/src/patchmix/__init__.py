"""PatchMix: inter-instance similarity modelling for contrastive learning (Shen et al., arXiv 2306.12243)."""
from .method import PatchMixer, patch_mix, patchify, soft_info_nce, soft_targets, unpatchify
from .models import MomentumEncoder, Online, PatchMixViT, build_backbone, build_models, ema_update, momentum_at

__version__ = "0.1.0"
__all__ = ["patch_mix", "patchify", "unpatchify", "soft_targets", "soft_info_nce", "PatchMixer", "PatchMixViT",
           "build_backbone", "build_models", "Online", "MomentumEncoder", "ema_update", "momentum_at"]
