"""In-memory image pool (spec §2.6/§2.7): every synthesized image so far, optional uint8 quantisation
(the reference's PNG round trip), npz/PNG export and re-import for pre-inverted warm starts."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tenfold.errors import DataError

from .augment import Normalizer, random_crop_flip

__all__ = ["ImagePool"]


class ImagePool:
    def __init__(self, quantize: bool = True):
        self.quantize = quantize
        self._chunks: list[torch.Tensor] = []
        self._cat: torch.Tensor | None = None

    def __len__(self) -> int:
        return sum(c.shape[0] for c in self._chunks)

    def add(self, images: torch.Tensor) -> None:
        """images: float (B, C, H, W) in [0, 1]; stored on the CPU (uint8 if `quantize`)."""
        x = images.detach().float().clamp(0, 1).cpu()
        x = (x * 255).round().to(torch.uint8) if self.quantize else x.clone()
        self._chunks.append(x)
        self._cat = None

    def stored(self) -> torch.Tensor:
        """All images as stored (uint8 when quantised, else float), without a copy once concatenated."""
        if not self._chunks:
            raise DataError("the image pool is empty: run at least one synthesis round first")
        if self._cat is None:
            self._cat = torch.cat(self._chunks, 0)
            self._chunks = [self._cat]
        return self._cat

    def tensor(self) -> torch.Tensor:
        """All images as float (N, C, H, W) in [0, 1] (a full float copy: for export and inspection, not KD)."""
        x = self.stored()
        return x.float().div(255) if x.dtype == torch.uint8 else x

    def batches(self, n_steps: int, batch_size: int, normalizer: Normalizer, device, augment: bool = True):
        """`n_steps` KD batches: shuffled passes over the whole pool (a new permutation per pass), each
        with the CIFAR train augmentation (crop pad size/8 + flip, per sample), then normalised.

        Only the batch is gathered on the host, in the stored dtype (uint8: 4x fewer bytes than float), into
        pinned memory on CUDA so the copy is asynchronous; the uint8 -> float conversion happens on the device.
        (The whole pool used to be converted to float on the CPU every round and copied unpinned.)"""
        device = torch.device(device)
        data = self.stored()
        n = data.shape[0]
        pin = device.type == "cuda" and torch.cuda.is_available()
        perm = torch.randperm(n)
        pos = 0
        for _ in range(n_steps):
            if pos + batch_size > n:
                perm, pos = torch.randperm(n), 0
            idx = perm[pos:pos + min(batch_size, n)]
            pos += batch_size
            x = data[idx]
            if pin:
                x = x.pin_memory()
            x = x.to(device, non_blocking=True)
            x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
            if augment:
                x = random_crop_flip(x, max(x.shape[-1] // 8, 1))
            yield normalizer(x)

    def state_dict(self) -> dict:
        return {"quantize": self.quantize, "images": self._stored()}

    def _stored(self):
        return self.stored() if self._chunks else None

    def load_state_dict(self, sd: dict) -> None:
        self.quantize = sd["quantize"]
        self._chunks = [] if sd["images"] is None else [sd["images"]]
        self._cat = None

    def export(self, path: str | os.PathLike, png_dir: str | os.PathLike | None = None) -> Path:
        """Write `images` (uint8 N,H,W,C) to an .npz; optionally one PNG per image into a fresh folder."""
        x = self.stored()
        x = (x if x.dtype == torch.uint8 else (x * 255).round().to(torch.uint8)).permute(0, 2, 3, 1).numpy()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, images=x)
        if png_dir is not None:
            from PIL import Image

            d = Path(png_dir)
            d.mkdir(parents=True, exist_ok=True)
            for i, im in enumerate(x):
                Image.fromarray(im.squeeze(-1) if im.shape[-1] == 1 else im).save(d / f"{i:06d}.png")
        return path

    def load_init(self, path: str | os.PathLike) -> int:
        """Add a pre-inverted set: an .npz with `images` (uint8 N,H,W,C) or a folder of PNG files (only
        that folder's own files, so stale images elsewhere never leak in)."""
        p = Path(path)
        if p.is_file() and p.suffix == ".npz":
            with np.load(p) as f:
                if "images" not in f:
                    raise DataError(f"{p} has no 'images' array; export one with cmi-synthesize")
                arr = f["images"]
        elif p.is_dir():
            from PIL import Image

            files = sorted(q for q in p.iterdir() if q.suffix.lower() in (".png", ".jpg", ".jpeg"))
            if not files:
                raise DataError(f"no PNG/JPEG images in {p}")
            arr = np.stack([np.asarray(Image.open(q).convert("RGB")) for q in files])
        else:
            raise DataError(f"init pool {p} not found: pass an .npz written by cmi-synthesize or an image folder")
        if arr.dtype != np.uint8 or arr.ndim != 4:
            raise DataError(f"{p}: expected uint8 images of shape (N, H, W, C), got {arr.dtype} {arr.shape}")
        self.add(torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255))
        return arr.shape[0]
