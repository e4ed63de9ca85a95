"""The one score parser, used by every reward, UADO, scoring and evaluation.

Grammar (SPEC): the *first* ``<answer>...</answer>`` block must hold exactly one number
``[+-]?\\d+(\\.\\d+)?``, surrounding whitespace allowed. Anything else is a parse failure, which is counted
and reported, never replaced by a default. A parsed value outside [1, 5] is clipped, and the clip is recorded.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from qhawkeye import SCORE_MAX, SCORE_MIN

ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
"""The answer block (the first ``<answer>...</answer>``): the one pattern the parser and the rewards share."""
_ANSWER_BLOCK = ANSWER_BLOCK
_NUMBER = re.compile(r"\s*([+-]?\d+(?:\.\d+)?)\s*")
_FULL_FORMAT = re.compile(r"\s*<think>.*?</think>\s*<answer>\s*[+-]?\d+(?:\.\d+)?\s*</answer>\s*", re.DOTALL)


@dataclass(frozen=True)
class ParsedScore:
    """Outcome of parsing one completion.

    Attributes:
        score: the clipped score in [SCORE_MIN, SCORE_MAX], or ``None`` on a parse failure.
        raw: the number as written (before clipping), or ``None``.
        clipped: whether ``raw`` lay outside the range and was clipped.
        error: why parsing failed (``None`` when it succeeded).
        digit_at: character offset in the text of the number's first digit (after any sign), or ``None``;
            the expected-score mode reads the model's distribution at that token.
    """

    score: float | None
    raw: float | None = None
    clipped: bool = False
    error: str | None = None
    digit_at: int | None = None

    @property
    def ok(self) -> bool:
        return self.score is not None


def parse_score(text: str, lo: float = SCORE_MIN, hi: float = SCORE_MAX) -> ParsedScore:
    """Parse the score of one completion (see the module docstring for the grammar)."""
    block = _ANSWER_BLOCK.search(text)
    if block is None:
        return ParsedScore(None, error="no <answer>...</answer> block")
    number = _NUMBER.fullmatch(block.group(1))
    if number is None:
        return ParsedScore(None, error=f"answer is not exactly one number: {block.group(1)[:40]!r}")
    raw = float(number.group(1))
    if not math.isfinite(raw):  # defensive: the grammar only admits finite decimals
        return ParsedScore(None, error="answer is not finite")
    score = min(max(raw, lo), hi)
    return ParsedScore(score, raw=raw, clipped=score != raw, digit_at=_digit_at(block, number))


def _digit_at(block: re.Match, number: re.Match) -> int:
    """Offset in the whole text of the first digit of ``number`` (group 1), found inside ``block`` (group 1)."""
    start = block.start(1) + number.start(1)
    return start + 1 if number.group(1)[0] in "+-" else start


def is_well_formed(text: str) -> bool:
    """True when the whole completion is ``<think>...</think><answer>number</answer>`` (whitespace allowed)."""
    return _FULL_FORMAT.fullmatch(text) is not None


def completion_text(completion: str | list[dict]) -> str:
    """The text of one TRL completion, conversational (``[{"role": "assistant", "content": ...}]``) or plain."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"] if completion else ""
    if isinstance(content, list):  # structured content blocks
        return "".join(block.get("text", "") for block in content)
    return content


_JSON_RATING = re.compile(r'^\s*\{\s*"?rating"?\s*:\s*"?([+-]?\d+(?:\.\d+)?)"?\s*\}\s*$')
_FINAL_SCORE = re.compile(r"^\s*(?:final_score\s*[:=]\s*)?([+-]?\d+(?:\.\d+)?)\s*$", re.IGNORECASE)


def _parse_block(text: str, pattern: re.Pattern, what: str, lo: float, hi: float) -> ParsedScore:
    block = _ANSWER_BLOCK.search(text)
    if block is None:
        return ParsedScore(None, error="no <answer>...</answer> block")
    match = pattern.fullmatch(block.group(1))
    if match is None:
        return ParsedScore(None, error=f"answer is not {what}: {block.group(1)[:40]!r}")
    raw = float(match.group(1))
    score = min(max(raw, lo), hi)
    return ParsedScore(score, raw=raw, clipped=score != raw, digit_at=_digit_at(block, match))


def parse_score_json_rating(text: str, lo: float = SCORE_MIN, hi: float = SCORE_MAX) -> ParsedScore:
    """Q-Insight's answer: the first ``<answer>`` block holds ``{"rating": number}`` (evaluation preset only)."""
    return _parse_block(text, _JSON_RATING, 'a {"rating": number} object', lo, hi)


def parse_score_release(text: str, lo: float = SCORE_MIN, hi: float = SCORE_MAX) -> ParsedScore:
    """The authors' release at inference: one number, optionally written ``final_score: number``.

    Its inference question asks for "the following keys: final_score", so its checkpoint may answer with
    that key inside the tags; anything else is a failure, as in :func:`parse_score` (evaluation preset only).
    """
    return _parse_block(text, _FINAL_SCORE, "one number (optionally final_score: number)", lo, hi)


def max_variance(lo: float = SCORE_MIN, hi: float = SCORE_MAX) -> float:
    """The largest population variance of scores on [lo, hi]: half of them at each end, ``(hi - lo)^2 / 4``."""
    return (hi - lo) ** 2 / 4


def normalised_uncertainty(var: float, lo: float = SCORE_MIN, hi: float = SCORE_MAX) -> float:
    """``var / max_variance`` clipped to [0, 1]: the uncertainty UADO weights by and the Scorer reports (one
    definition for both; :func:`qhawkeye.train.uado.group_uncertainty` is its batched tensor form)."""
    top = max_variance(lo, hi)
    return min(max(var / top, 0.0), 1.0) if top > 0 else 0.0
