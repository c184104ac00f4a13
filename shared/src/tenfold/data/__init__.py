"""Data: real data sets (tenfold packs or torchvision layouts), a synthetic offline set, loaders."""
from . import transforms
from .arrays import ArrayImageDataset, class_subset, few_shot_indices
from .images import CIFAR10_CLASSES, cifar10, cifar100, image_folder, mnist, stl10
from .loader import ResumableSampler, SeededDataset, make_loader, mix_seeds, steps_per_epoch
from .root import cache_dir, data_root
from .synthetic import SHAPES, synthetic_shapes

__all__ = ["ArrayImageDataset", "class_subset", "few_shot_indices", "CIFAR10_CLASSES", "cifar10", "cifar100",
           "image_folder", "mnist", "stl10", "ResumableSampler", "SeededDataset", "make_loader",
           "steps_per_epoch", "mix_seeds", "cache_dir", "data_root", "SHAPES", "synthetic_shapes", "transforms"]
