"""Perception-Aware Optimization (PAO): the implicit perception loss and its schedule, as pure functions.

Per completion token t, with ``d = clamp(logp_deg - logp_orig, -20, 20)``:
``kl_t = clamp(exp(d) - d - 1, -10, 10)``, the k3 estimator of KL(pi(.|orig) || pi(.|deg)) on tokens sampled
from the original-image policy. The perception loss *maximises* it: ``loss += -gamma_t * KL_prcp``, with
``gamma_t`` a cosine decay to 0 at epoch E0. Double entropy regularisation adds ``eta1 * H_orig + eta2 * H_deg``
(true per-token entropies). Every per-token term is aggregated exactly as TRL aggregates its own per-token
loss (:func:`aggregate_like_trl`).
"""

from __future__ import annotations

import math

import torch

LOG_RATIO_CLAMP = 20.0
KL_CLAMP = 10.0


def perception_kl_per_token(logp_orig: torch.Tensor, logp_deg: torch.Tensor) -> torch.Tensor:
    """k3 estimate of KL(pi_orig || pi_deg) per token: (B, T), (B, T) -> (B, T). 0 where they agree."""
    d = (logp_deg - logp_orig).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return (torch.exp(d) - d - 1).clamp(-KL_CLAMP, KL_CLAMP)


def gamma_schedule(epoch: float, gamma: float, zero_epoch: float) -> float:
    """``gamma * 0.5 * (1 + cos(pi * min(epoch / zero_epoch, 1)))``: gamma at epoch 0, 0 from ``zero_epoch`` on."""
    if zero_epoch <= 0:
        raise ValueError(f"zero_epoch must be > 0, got {zero_epoch}")
    progress = min(max(epoch, 0.0) / zero_epoch, 1.0)
    return gamma * 0.5 * (1.0 + math.cos(math.pi * progress))


def aggregate_like_trl(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str,
    *,
    train: bool,
    gradient_accumulation_steps: int,
    num_items_in_batch: torch.Tensor | float,
    num_processes: int,
    steps_per_generation: int,
    max_completion_length: int,
) -> torch.Tensor:
    """Reduce a (B, T) per-token term to the scalar TRL 1.16 would add to the loss for ``loss_type``.

    Mirrors ``GRPOTrainer._compute_loss`` (trl 1.16.0), gradient-accumulation scaling included:
    ``grpo``/``sapo``: mean over sequences of the per-sequence token mean, / GA;
    ``bnpo``: token mean over the micro-batch, / GA; ``dr_grpo``: sum / (B * max_completion_length), / GA;
    ``dapo``/``cispo``/``vespo``: sum / (tokens in the generation batch / processes * GA / steps_per_generation);
    ``luspo``: mean over sequences of the per-sequence token sum, / GA. In eval there is no GA scaling.
    """
    mask = mask.to(per_token.dtype)
    ga = gradient_accumulation_steps if train else 1.0
    masked = per_token * mask
    if loss_type in ("grpo", "sapo"):
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean() / ga
    if loss_type == "bnpo":
        return masked.sum() / mask.sum().clamp(min=1.0) / ga
    if loss_type == "dr_grpo":
        return masked.sum() / (per_token.size(0) * max_completion_length) / ga
    if loss_type in ("dapo", "cispo", "vespo"):
        items = torch.as_tensor(num_items_in_batch, dtype=per_token.dtype, device=per_token.device)
        normalizer = items.clamp(min=1.0) / num_processes
        if train:
            normalizer = normalizer * gradient_accumulation_steps / steps_per_generation
        return masked.sum() / normalizer
    if loss_type == "luspo":
        return masked.sum(-1).mean() / ga
    raise ValueError(f"unknown loss_type {loss_type!r}")
