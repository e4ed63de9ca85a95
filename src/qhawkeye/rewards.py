"""Reward functions with TRL's signature: ``f(completions, **columns) -> list[float | None]``.

- ``accuracy``: ``exp(-|clip(pred) - clip(gt)| / tau)``, 0 on a parse failure (tau = 0.30 in the recipe; a
  1-point error earns 0.036, so early training is driven by the format reward).
- ``format``: 0.8 when the whole completion is ``<think>...</think><answer>number</answer>``, else 0.
- ``repetition``: the released recipe's penalty (not in the paper), reproduced exactly; see
  :func:`repetition_penalty`. On a well-formed answer it is 0, on a completion without ``<answer>`` it is
  about -2, so in effect it is a second format penalty.

All three read scores through :mod:`qhawkeye.parsing`. The ground truth comes from the dataset column
``gt_score``, already mapped to [1, 5] by the data pipeline.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

from qhawkeye import SCORE_MAX, SCORE_MIN
from qhawkeye.parsing import ANSWER_BLOCK, completion_text, is_well_formed, parse_score
from qhawkeye.registry import lookup

FORMAT_REWARD_VALUE = 0.8


def accuracy_curve(pred: float, gt: float, tau: float) -> float:
    """``exp(-|clip(pred) - clip(gt)| / tau)`` with both clipped to [SCORE_MIN, SCORE_MAX]."""
    if tau <= 0:
        raise ValueError(f"accuracy tau must be > 0, got {tau}")
    pred = min(max(pred, SCORE_MIN), SCORE_MAX)
    gt = min(max(gt, SCORE_MIN), SCORE_MAX)
    return math.exp(-abs(pred - gt) / tau)


OUT_OF_RANGE_POLICIES = ("clip", "zero")


def accuracy_reward(
    completions: list, gt_score: Sequence[float], tau: float = 0.30, out_of_range: str = "clip", **_
) -> list[float]:
    """Accuracy reward: :func:`accuracy_curve` of the parsed score, 0 on a parse failure.

    ``out_of_range``: a number outside [1, 5] is scored as its clipped value (``clip``, SPEC and the release),
    or earns 0 like a parse failure (``zero``). Under ``clip`` a policy can learn to write "1911" for a 5: the
    tiny model did (benchmarks/RESULTS.md), which also makes its first digit say the opposite of its score.
    """
    rewards = []
    for completion, gt in zip(completions, gt_score, strict=True):
        parsed = parse_score(completion_text(completion))
        ok = parsed.ok and not (out_of_range == "zero" and parsed.clipped)
        rewards.append(accuracy_curve(parsed.score, float(gt), tau) if ok else 0.0)
    return rewards


def format_reward(completions: list, **_) -> list[float]:
    """0.8 when the whole completion is ``<think>...</think><answer>number</answer>``, else 0."""
    return [FORMAT_REWARD_VALUE if is_well_formed(completion_text(c)) else 0.0 for c in completions]


_PUNCTUATION = re.compile(r"[^\w\s]")


def repetition_penalty_value(
    text: str, threshold: int = 5, scale: float = 0.25, floor: float = -2.0
) -> float:
    """The released repetition penalty of one completion, reproduced exactly.

    Takes the stripped text inside the first ``<answer>`` (the whole stripped completion when there is none),
    removes every character that is neither a word character nor whitespace, then
    ``-scale * (sum of counts of " "-split words seen more than threshold times)
      -scale * (sum of counts of characters, spaces included, seen more than threshold times)``,
    floored at ``floor``. (Splitting on a single space, empty strings included, is the release's behaviour.)
    """
    match = ANSWER_BLOCK.search(text)
    cleaned = _PUNCTUATION.sub("", (match.group(1) if match else text).strip())
    words = sum(n for n in Counter(cleaned.split(" ")).values() if n > threshold)
    chars = sum(n for n in Counter(cleaned).values() if n > threshold)
    return max(floor, -scale * words - scale * chars)


def repetition_penalty(completions: list, **_) -> list[float]:
    """Released recipe's repetition penalty (see :func:`repetition_penalty_value`)."""
    return [repetition_penalty_value(completion_text(c)) for c in completions]


REWARDS: dict[str, Callable[..., list[float]]] = {
    "accuracy": accuracy_reward,
    "format": format_reward,
    "repetition": repetition_penalty,
}


def get_reward_funcs(
    names: Sequence[str], accuracy_tau: float, accuracy_out_of_range: str = "clip"
) -> list[Callable[..., list[float]]]:
    """Reward functions by name, in order; ``accuracy`` gets ``tau`` and the out-of-range policy bound.
    Unknown names: did-you-mean error."""
    if accuracy_out_of_range not in OUT_OF_RANGE_POLICIES:
        raise ValueError(
            f"accuracy_out_of_range must be one of {OUT_OF_RANGE_POLICIES}, got {accuracy_out_of_range!r}"
        )
    funcs = []
    for name in names:
        func = lookup(REWARDS, name, "reward")
        if name == "accuracy":
            bound = functools.partial(func, tau=accuracy_tau, out_of_range=accuracy_out_of_range)
            func = functools.update_wrapper(bound, func)
        funcs.append(func)
    return funcs
