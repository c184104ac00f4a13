"""The 2-D ring acceptance run of spec §7b as one small loop (no data loader, no checkpoints): MLP G and D
without normalisation (so the asymmetric decomposition is exact), fresh ring samples every iteration, Adam.
Used by the fast ring test; `run_gan` with data.name=ring is the same game on the full training loop."""
from __future__ import annotations

import torch

from .data import ring_of_gaussians, ring_quality
from .losses import get_loss
from .method import one_stage_step, two_stage_step
from .nets import MLPDiscriminator, MLPGenerator

__all__ = ["train_ring"]


def train_ring(mode: str, loss_name: str, seed: int = 0, iters: int = 2000, batch: int = 256, zdim: int = 16,
               hidden: int = 128, lr: float = 1e-3, lr_d: float | None = None, eval_samples: int = 5000) -> dict:
    """Train G/D on the ring of 8 Gaussians in one or two stages; return ring_quality of `eval_samples` samples
    (high-quality fraction within 0.18 of a mode centre, modes with ≥ 20 % of their fair share). lr is G's (and
    D's unless lr_d is given: one-stage runs use a smaller D learning rate in the reference, spec §2.4)."""
    if mode not in ("one", "two"):
        raise ValueError(f"mode must be 'one' or 'two', not {mode!r}")
    loss = get_loss(loss_name)
    torch.manual_seed(seed)
    G, D = MLPGenerator(zdim, hidden), MLPDiscriminator(2, hidden)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr if lr_d is None else lr_d, betas=(0.5, 0.999))
    real, _ = ring_of_gaussians(iters * batch, seed=seed + 1000)  # drawn once: same data order for both modes
    gz = torch.Generator().manual_seed(seed + 2000)
    for i in range(iters):
        x = real[i * batch:(i + 1) * batch]
        z = torch.randn(batch, zdim, generator=gz)
        if mode == "one":
            one_stage_step(G, D, opt_g, opt_d, x, z, loss)
        else:
            two_stage_step(G, D, opt_g, opt_d, x, z, torch.randn(batch, zdim, generator=gz), loss)
    with torch.no_grad():
        samples = G(torch.randn(eval_samples, zdim, generator=torch.Generator().manual_seed(seed + 3000)))
    return ring_quality(samples)
