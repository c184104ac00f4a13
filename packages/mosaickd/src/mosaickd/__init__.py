"""MosaicKD: distil a teacher into a student using only out-of-domain data, by training a generator whose
images are locally made of OOD patches (patch discriminator) and globally in-domain for the teacher."""
from .game import MosaicGame
from .method import (
                     adv_loss,
                     align_loss,
                     balance_loss,
                     discriminator_loss,
                     generator_loss,
                     kldiv,
                     local_loss,
                     select_high_entropy,
                     student_kd_loss,
)
from .nets import GlobalDiscriminator, Normalizer, PatchDiscriminator, SmallCNN, UpsampleGenerator

__all__ = ["MosaicGame", "adv_loss", "align_loss", "balance_loss", "discriminator_loss", "generator_loss", "kldiv",
           "local_loss", "select_high_entropy", "student_kd_loss", "GlobalDiscriminator", "Normalizer",
           "PatchDiscriminator", "SmallCNN", "UpsampleGenerator"]
__version__ = "0.1.0"
