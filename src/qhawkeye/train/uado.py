"""Uncertainty-Aware Dynamic Optimization (UADO): per-image advantage weights from rollout score spread.

For one image's G parsed scores (clipped to [score_min, score_max]):
``var`` = population variance, ``u = clip(var / var_max, 0, 1)`` with ``var_max = (score_max - score_min)^2 / 4``,
``w = exp(-alpha * u)``; every advantage of the image is multiplied by ``w``. The variance is taken over the
parseable scores only; a group with fewer than two of them gets ``u`` from the chosen policy.
Pure tensor functions; the trainer gathers complete groups across processes before calling them.
"""

from __future__ import annotations

import torch

from qhawkeye.parsing import max_variance

UNPARSED_POLICIES = ("max_uncertainty", "full_weight")
"""For groups with fewer than two parseable scores: ``max_uncertainty`` gives u = 1 (smallest weight);
``full_weight`` gives u = 0 (w = 1), the authors' release behaviour."""


def group_uncertainty(
    scores: torch.Tensor, score_min: float, score_max: float, unparsed_policy: str = "max_uncertainty"
) -> torch.Tensor:
    """Normalised score variance per group.

    Args:
        scores: (N, G) parsed scores, NaN where a completion did not parse.
        score_min, score_max: the score range; scores are clipped to it first.
        unparsed_policy: see :data:`UNPARSED_POLICIES`.

    Returns:
        (N,) uncertainty u in [0, 1].
    """
    if unparsed_policy not in UNPARSED_POLICIES:
        raise ValueError(f"unparsed_policy must be one of {UNPARSED_POLICIES}, got {unparsed_policy!r}")
    valid = ~torch.isnan(scores)
    x = scores.clamp(score_min, score_max).nan_to_num(0.0).double()
    n = valid.sum(dim=1)
    mean = (x * valid).sum(dim=1) / n.clamp(min=1)
    var = (((x - mean[:, None]) ** 2) * valid).sum(dim=1) / n.clamp(min=1)  # population variance
    u = (var / max_variance(score_min, score_max)).clamp(0.0, 1.0)  # normalised_uncertainty, batched
    fallback = 1.0 if unparsed_policy == "max_uncertainty" else 0.0
    return torch.where(n >= 2, u, torch.full_like(u, fallback)).to(scores.dtype)


def uado_weights(uncertainty: torch.Tensor, alpha: float) -> torch.Tensor:
    """``exp(-alpha * u)``: (N,) -> (N,)."""
    return torch.exp(-alpha * uncertainty)
