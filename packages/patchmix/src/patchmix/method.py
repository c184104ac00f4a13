"""PatchMix as pure tensor functions (spec §2.2-2.4).

    x_mix, meta = patch_mix(x, m=2, patch_size=16, generator=g)     # §2.2, one permutation per call
    y_oo, y_mo, y_mm = soft_targets(n_local=N, m=2)                   # §2.3, rows over the N_g global keys
    loss = soft_info_nce(q, k, y_mo, tau=0.2)                         # §2.4, soft-target InfoNCE

Mixed image n holds, at unchanged positions, segment j of the permutation from image (n + j) mod N, so the
group of image n is {n, ..., n+m-1} (cyclic in batch order) and the targets point forwards the same way.
"""
from __future__ import annotations

import dataclasses
import random as _random

import torch
import torch.nn.functional as F
from tenfold import distributed
from tenfold.errors import ConfigError

__all__ = ["patchify", "unpatchify", "draw_permutation", "segment_offsets", "patch_mix", "soft_targets",
           "soft_info_nce", "MixDraw", "PatchMixer"]


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[N,C,H,W] -> [N, T, C*p*p], grid cells row-major (the ViT token order)."""
    n, c, h, w = x.shape
    if h % p or w % p:
        raise ValueError(f"mix patch size {p} must divide the image size {h}x{w}")
    x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // p) * (w // p), c * p * p)


def unpatchify(patches: torch.Tensor, p: int, h: int, w: int | None = None) -> torch.Tensor:
    """Inverse of `patchify` for an image of size h x w."""
    w = h if w is None else w
    n, t, d = patches.shape
    c = d // (p * p)
    x = patches.reshape(n, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n, c, h, w)


def draw_permutation(t: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh random order of the T grid cells, shared by the whole batch (pitfall 2)."""
    return torch.randperm(t, generator=generator)


def segment_offsets(perm: torch.Tensor, m: int) -> torch.Tensor:
    """Source offset j per grid cell: cells perm[jS:(j+1)S] come from image n+j; leftover cells keep 0."""
    t = perm.numel()
    s = t // m
    offs = torch.zeros(t, dtype=torch.long)
    seg = torch.arange(m).repeat_interleave(s)  # segment id of perm positions 0..mS-1
    offs[perm[: m * s]] = seg
    return offs


def patch_mix(x: torch.Tensor, m: int, patch_size: int, generator: torch.Generator | None = None,
              perm: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Mix each image with its m-1 cyclic batch successors at patch level (spec §2.2).

    Whole p x p blocks aligned with the grid are copied and keep their position (no blending, no moving).
    `perm` (a permutation of the T cells) can be injected for tests; otherwise one is drawn from `generator`.
    Returns the mixed batch and meta {m, patch_size, perm, offsets [gh, gw]}.
    """
    n, _, h, w = x.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"mix patch size {patch_size} must divide the image size {h}x{w}")
    gh, gw = h // patch_size, w // patch_size
    t = gh * gw
    if perm is None:
        perm = draw_permutation(t, generator)
    if perm.numel() != t:
        raise ValueError(f"permutation has {perm.numel()} entries, the grid has {t} cells")
    offs = segment_offsets(perm.cpu(), m).view(gh, gw)
    meta = {"m": m, "patch_size": patch_size, "perm": perm, "offsets": offs}
    if m <= 1:
        return x, meta
    # Pixel-level offset map, then one gather along the batch: out[n,:,y,x] = x[(n + off[y,x]) % N, :, y, x].
    off_pix = offs.to(x.device).repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)  # [H, W]
    src = (torch.arange(n, device=x.device).view(n, 1, 1) + off_pix) % n  # [N, H, W]
    out = x.gather(0, src.unsqueeze(1).expand(-1, x.shape[1], -1, -1))
    return out, meta


def soft_targets(n_local: int, m: int, rank: int = 0, world: int = 1, smoothing: float = 0.0,
                 device=None, dtype=torch.float32, scope: str = "local"
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Y_oo, Y_mo, Y_mm), each [n_local, n_local*world]; non-zeros in the columns [rank*N, (rank+1)*N).

    Y_mo[i] = (1/m) sum_j e_{i+j};  Y_mm[i] = sum_d (m-|d|)/m^2 e_{i+d}  (= Y_mo Y_mo^T), indices mod N.
    Built by summation, so N < 2m-1 (colliding indices) still gives correct rows (fixes reference Q7).
    Smoothing eps: off = eps/N_g, on = (1-eps) w + eps/N_g.
    scope="global": groups wrap around the gathered batch of N_g (mixing via all-gather); the rows are this
    rank's slice [rank*N, (rank+1)*N) of the N_g x N_g circulant.
    """
    if n_local < 1 or m < 1:
        raise ValueError("n_local and m must be >= 1")
    if scope == "global" and world > 1:
        full = soft_targets(n_local * world, m, 0, 1, smoothing, device, dtype)
        return tuple(t[rank * n_local:(rank + 1) * n_local] for t in full)
    n, ng, o = n_local, n_local * world, rank * n_local
    rows = torch.arange(n)
    eye = torch.eye(n, dtype=torch.float64)
    y_mo = torch.zeros(n, n, dtype=torch.float64)
    for j in range(m):
        y_mo.index_put_((rows, (rows + j) % n), torch.full((n,), 1.0 / m, dtype=torch.float64), accumulate=True)
    y_mm = torch.zeros(n, n, dtype=torch.float64)
    for d in range(-(m - 1), m):
        y_mm.index_put_((rows, (rows + d) % n), torch.full((n,), (m - abs(d)) / m**2, dtype=torch.float64),
                        accumulate=True)
    out = []
    for blk in (eye, y_mo, y_mm):
        full = torch.zeros(n, ng, dtype=torch.float64)
        full[:, o:o + n] = blk
        if smoothing > 0:
            full = (1 - smoothing) * full + smoothing / ng
        out.append(full.to(device=device, dtype=dtype))
    return tuple(out)


def soft_info_nce(q: torch.Tensor, k: torch.Tensor, targets: torch.Tensor, tau: float,
                  gather: bool = False) -> torch.Tensor:
    """l(Q, K, Y; tau) = mean_i sum_j -Y_ij log softmax_j(q_i.k_j / tau), q and k L2-normalised (§2.4).

    No 2*tau factor and no queue. With `gather`, keys of all ranks are concatenated (no gradient).
    """
    # fp32 logits even under autocast (which would run the matmul in bf16): at tau = 0.2 a bf16 cosine's rounding
    # (~4e-3) moves a logit by ~0.02, and the soft targets weigh every column
    with torch.autocast(q.device.type, enabled=False):
        q = F.normalize(q.float(), dim=1)
        k = F.normalize(k.float(), dim=1)
        if gather:
            k = distributed.all_gather_nograd(k)
        logits = q @ k.T / tau
        return -(targets.float() * F.log_softmax(logits, dim=1)).sum(1).mean()


@dataclasses.dataclass
class MixDraw:
    """What one training step mixes with: m and the mix patch size are drawn once per step (fixes Q6)."""

    apply: bool
    m: int
    patch_size: int


class PatchMixer:
    """Per-step mixing policy: probability `mix_p`, a list of m values and of mix patch sizes (§2.2)."""

    def __init__(self, mix_num: list[int], mix_p: float, patch_sizes: list[int]):
        if not mix_num or any(v < 1 for v in mix_num):
            raise ConfigError("mix.mix_num must be a non-empty list of integers >= 1, e.g. [2]")
        if not 0.0 <= mix_p <= 1.0:
            raise ConfigError(f"mix.mix_p must be in [0, 1], got {mix_p}")
        self.mix_num, self.mix_p, self.patch_sizes = list(mix_num), float(mix_p), list(patch_sizes)

    def draw(self, rng: _random.Random) -> MixDraw:
        m = self.mix_num[rng.randrange(len(self.mix_num))] if len(self.mix_num) > 1 else self.mix_num[0]
        p = self.patch_sizes[rng.randrange(len(self.patch_sizes))] if len(self.patch_sizes) > 1 else self.patch_sizes[0]
        apply = m > 1 and self.mix_p > 0 and (self.mix_p >= 1.0 or rng.random() < self.mix_p)
        return MixDraw(apply, m if apply else 1, p)

    @staticmethod
    def mix(x: torch.Tensor, draw: MixDraw, generator: torch.Generator | None = None) -> torch.Tensor:
        if not draw.apply:
            return x
        return patch_mix(x, draw.m, draw.patch_size, generator)[0]
