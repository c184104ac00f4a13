"""CMI: Contrastive Model Inversion for data-free knowledge distillation (Fang et al., IJCAI 2021),
with DeepInversion, DAFL, ZSKT, DFQ and DFAD baselines on the tenfold spine."""
from .augment import Normalizer, global_view, local_view, random_crop_flip, random_resized_crop_flip
from .generator import Generator, LargeGenerator, reset_model
from .hooks import TeacherTaps, default_feature_layers, feature_dim
from .method import (
                     MemoryBank,
                     MLPHead,
                     bn_stat_loss,
                     class_balance_loss,
                     contrastive_loss,
                     jsdiv,
                     kldiv,
                     masked_adversarial_loss,
                     tv_l1,
)
from .models import ToyNet, build
from .pool import ImagePool
from .synthesis import BestIterate, CMISynthesizer, DeepInvSynthesizer, GenerativeSynthesizer

__version__ = "0.1.0"
__all__ = ["Normalizer", "global_view", "local_view", "random_crop_flip", "random_resized_crop_flip", "Generator",
           "LargeGenerator", "reset_model", "TeacherTaps", "default_feature_layers", "feature_dim", "MemoryBank",
           "MLPHead", "bn_stat_loss", "class_balance_loss", "contrastive_loss", "jsdiv", "kldiv",
           "masked_adversarial_loss", "tv_l1", "ToyNet", "build", "ImagePool", "BestIterate", "CMISynthesizer",
           "DeepInvSynthesizer", "GenerativeSynthesizer"]
