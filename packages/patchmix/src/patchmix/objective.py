"""The PatchMix objective as pure functions (spec §2.4-2.6): targets from the batch layout, five terms from features.

    t = step_targets(n, m, o2o_smoothing=0.1)                           # Y_oo, Y_mo, Y_mm of one step
    terms = patchmix_terms(q1, mq2, k1, k2, mk1, t, tau=0.2)            # l_src, l_m2o, l_m2m (+ l_multi, ...)
    loss = weighted_loss(terms, w_src=1, w_m2o=.5, w_m2m=.5, w_multi=1, w_multi_mix=1)

Kept apart from the training step (view generation, forward passes, optimiser) so that the targets each term uses
and its weight can be tested against hand values.
"""
from __future__ import annotations

import dataclasses

import torch

from .method import soft_info_nce, soft_targets

__all__ = ["StepTargets", "step_targets", "patchmix_terms", "src_terms", "mocov3_terms", "weighted_loss"]


@dataclasses.dataclass(frozen=True)
class StepTargets:
    """The three target matrices of one step, each [N, N_g]."""

    y_oo: torch.Tensor  # original -> original
    y_mo: torch.Tensor  # mixed -> original
    y_mm: torch.Tensor  # mixed -> mixed


def step_targets(n: int, m: int, rank: int = 0, world: int = 1, mix_smoothing: float = 0.0,
                 o2o_smoothing: float = 0.0, device=None, scope: str = "local") -> StepTargets:
    """Targets of one step. Y_oo carries its own smoothing: the reference builds its un-mixed targets with
    PatchMixer's default eps = 0.1 while the mixed ones use the configs' eps (0), so the two are separate knobs."""
    _, y_mo, y_mm = soft_targets(n, m, rank, world, mix_smoothing, device, scope=scope)
    y_oo = soft_targets(n, 1, rank, world, o2o_smoothing, device)[0]
    return StepTargets(y_oo, y_mo, y_mm)


def patchmix_terms(q1: torch.Tensor, mq2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, mk1: torch.Tensor,
                   t: StepTargets, tau: float, q_local: list[torch.Tensor] = (),
                   q_local_mix: list[torch.Tensor] = (), gather: bool = False) -> dict[str, torch.Tensor]:
    """The five PatchMix terms (spec §2.6 pseudocode):

    l_src  = l(q1, k2, Y_oo)             original -> original
    l_m2o  = l(mq2, k1, Y_mo)            mixed view 2 -> original view 1
    l_m2m  = l(mq2, mk1, Y_mm)           mixed view 2 -> mixed view 1
    l_multi     = 1/L sum_l [l(qv_l, k1, Y_oo) + l(qv_l, k2, Y_oo)]     (local crops only)
    l_multi_mix = 1/L sum_l [l(qv_l', k1, Y_mo) + l(qv_l', k2, Y_mo)]  (mixed local crops only)
    """
    ell = lambda q, k, y: soft_info_nce(q, k, y, tau, gather=gather)  # noqa: E731
    out = {"l_src": ell(q1, k2, t.y_oo), "l_m2o": ell(mq2, k1, t.y_mo), "l_m2m": ell(mq2, mk1, t.y_mm)}
    if len(q_local):
        nl = len(q_local)
        out["l_multi"] = sum(ell(q, k1, t.y_oo) + ell(q, k2, t.y_oo) for q in q_local) / nl
        out["l_multi_mix"] = sum(ell(q, k1, t.y_mo) + ell(q, k2, t.y_mo) for q in q_local_mix) / nl
    return out


def src_terms(q1: torch.Tensor, k2: torch.Tensor, y_oo: torch.Tensor, tau: float,
              gather: bool = False) -> dict[str, torch.Tensor]:
    """The no-mix baseline: l_src alone (the same momentum framework, no mixing)."""
    return {"l_src": soft_info_nce(q1, k2, y_oo, tau, gather=gather)}


def mocov3_terms(q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, y_oo: torch.Tensor,
                 tau: float, gather: bool = False) -> dict[str, torch.Tensor]:
    """The symmetric no-mix step: l(q1, k2) + l(q2, k1)."""
    return {"l_src": soft_info_nce(q1, k2, y_oo, tau, gather=gather),
            "l_src_rev": soft_info_nce(q2, k1, y_oo, tau, gather=gather)}


def weighted_loss(terms: dict[str, torch.Tensor], w_src: float = 1.0, w_m2o: float = 0.5, w_m2m: float = 0.5,
                  w_multi: float = 1.0, w_multi_mix: float = 1.0) -> torch.Tensor:
    """Sum of the present terms with the paper's weights 1, 1/2, 1/2, 1, 1 (l_src_rev, mocov3 only, weight 1)."""
    w = {"l_src": w_src, "l_m2o": w_m2o, "l_m2m": w_m2m, "l_multi": w_multi, "l_multi_mix": w_multi_mix,
         "l_src_rev": 1.0}
    return sum(w[k] * v for k, v in terms.items())
