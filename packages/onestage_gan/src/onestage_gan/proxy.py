"""Quality proxy for generated images (spec §7d): Fréchet distance / KID in a fixed classifier's feature
space, class coverage and mean max-probability. MNIST: a small CNN trained once on real MNIST and cached;
CIFAR-10: the penultimate features of the cifar10_wrn40_2 teacher."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from tenfold import data as tfdata
from tenfold import nets
from tenfold.data import transforms
from tenfold.errors import DataError

from .data import gan_images, real_batch
from .fid import MnistNet, class_stats, features, frechet_distance, kid, train_mnist_classifier

__all__ = ["image_quality", "mnist_feature_net", "cifar_feature_net"]


def mnist_feature_net(size: int, root=None, train_images: int = 20000) -> MnistNet:
    path = tfdata.cache_dir() / f"osgan_mnist_cnn_{size}_{train_images}.pt"
    if path.is_file():
        net = MnistNet(size)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return net.eval()
    ds = gan_images("mnist", size, root, train=True)[0]
    x = real_batch(ds, train_images, seed=0)
    y = torch.as_tensor(ds.labels)[torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:train_images]]
    net = train_mnist_classifier(x, y, epochs=1)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, path)
    return net


def cifar_feature_net():
    root = os.environ.get("TENFOLD_MODELS")
    p = Path(root) / "cifar10_wrn40_2.pt" if root else None
    if p is None or not p.is_file():
        raise DataError("the CIFAR-10 quality proxy needs cifar10_wrn40_2.pt: set TENFOLD_MODELS to its folder")
    return nets.load_teacher(p)


def _cifar_input(x):
    x = (x + 1) / 2
    if x.shape[-1] != 32:
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    # on x's device and dtype: built on the CPU they broke every data-free KD step on CUDA (issue #17)
    dtype = torch.promote_types(x.dtype, torch.float32)  # bf16 constants would round 0.4914 to 0.4922
    m = torch.tensor(transforms.CIFAR10_MEAN, device=x.device, dtype=dtype).view(1, 3, 1, 1)
    s = torch.tensor(transforms.CIFAR10_STD, device=x.device, dtype=dtype).view(1, 3, 1, 1)
    return (x - m) / s


def image_quality(cfg, fake: torch.Tensor, n_real: int | None = None) -> dict:
    name = cfg.data.name
    if name not in ("mnist", "cifar10"):
        return {}
    size = cfg.model.size
    real = real_batch(gan_images(name, size, cfg.data_root, train=False)[0], n_real or len(fake), seed=0)
    if name == "mnist":
        net, tf = mnist_feature_net(size, cfg.data_root), None
    else:
        net, tf = cifar_feature_net(), _cifar_input
    f_fake, p_fake = features(net, fake, transform=tf)
    f_real, _ = features(net, real, transform=tf)
    return {"fd": frechet_distance(f_fake, f_real), "kid": kid(f_fake, f_real), **class_stats(p_fake)}
