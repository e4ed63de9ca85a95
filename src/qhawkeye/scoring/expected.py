"""The expected-score mode: a deterministic score from the model's distribution over the score's first digit.

Greedy decoding gives one number per image, and a small or young model gives the same few numbers to most
images (ranking ties). As Q-Align does with its level tokens, the expected mode decodes greedily, finds the
token where the answer's number starts, and reads the model's probabilities of the digits ``1`` .. ``5`` at
that step (renormalised over those five): the score is their expected value, ``std`` their spread and
``uncertainty`` the normalised variance UADO uses (``var / 4`` on [1, 5]). The rest of the number (its
decimals) does not enter the score. It needs digits that are single tokens, as in Qwen2's tokenizer (and the
embedded tiny one); a tokenizer without them is refused with a message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from qhawkeye.parsing import ParsedScore, normalised_uncertainty


@dataclass(frozen=True)
class ScoreDigits:
    """The digit tokens of the integer scores in a range: ``values[i]`` is written as token ``ids[i]``."""

    values: tuple[int, ...]
    ids: tuple[int, ...]

    @classmethod
    def for_range(cls, tokenizer, lo: float, hi: float) -> ScoreDigits:
        values = tuple(range(math.ceil(lo), math.floor(hi) + 1))
        if not values or values[0] < 0 or values[-1] > 9:
            raise ValueError(f"the expected-score mode needs a score range within 0..9, got [{lo}, {hi}]")
        ids = []
        for value in values:
            encoded = tokenizer.encode(str(value), add_special_tokens=False)
            if len(encoded) != 1 or tokenizer.decode(encoded) != str(value):
                raise ValueError(
                    f"the tokenizer writes the digit {value} as {len(encoded)} tokens: the expected-score mode "
                    "needs single-token digits (Qwen2-style tokenizers have them); use mode greedy or sample"
                )
            ids.append(encoded[0])
        return cls(values, tuple(ids))


def token_index_at(tokenizer, token_ids: list[int], char_offset: int) -> int | None:
    """Index of the token whose decoded text covers ``char_offset`` of the decoded completion.

    Binary search over prefix decodes (``skip_special_tokens=True``, as the completion text was decoded),
    so byte-level tokens that split a character are handled the way the full decode handles them.
    """
    lo, hi = 0, len(token_ids)
    while lo < hi:  # smallest k with len(decode(ids[:k + 1])) > char_offset
        mid = (lo + hi) // 2
        if len(tokenizer.decode(token_ids[: mid + 1], skip_special_tokens=True)) > char_offset:
            hi = mid
        else:
            lo = mid + 1
    return lo if lo < len(token_ids) else None


@dataclass(frozen=True)
class Expected:
    """The expected score of one answer, or why there is none."""

    score: float | None
    std: float | None = None
    uncertainty: float | None = None
    probs: tuple[float, ...] | None = None
    error: str | None = None


def expected_score(
    parsed: ParsedScore,
    text: str,
    token_ids: list[int],
    watched: torch.Tensor,
    digits: ScoreDigits,
    tokenizer,
) -> Expected:
    """The expected value of the first score digit (see the module docstring); ``watched`` is (T, W)."""
    if not parsed.ok or parsed.digit_at is None:
        return Expected(None, error=parsed.error or "no number in the answer")
    if parsed.clipped or not digits.values[0] <= parsed.raw < digits.values[-1] + 1:
        # "1911" parses (and is clipped to 5) but its first digit is not its score's integer part: reading the
        # distribution at that digit would score it as a 1 (a policy can learn to write such numbers when the
        # reward clips them; benchmarks/RESULTS.md)
        return Expected(
            None, error=f"answer {parsed.raw:g} is outside the score range: its first digit is not its score"
        )
    index = token_index_at(tokenizer, token_ids, parsed.digit_at)
    if index is None or tokenizer.decode([token_ids[index]]).strip() != text[parsed.digit_at]:
        return Expected(None, error="the answer's first digit is not a token of its own")
    probs = watched[index].double().softmax(-1)
    values = torch.tensor(digits.values, dtype=torch.float64)
    mean = float((probs * values).sum())
    var = float((probs * (values - mean) ** 2).sum())
    uncertainty = normalised_uncertainty(var, digits.values[0], digits.values[-1])
    return Expected(mean, math.sqrt(var), uncertainty, tuple(float(p) for p in probs))
