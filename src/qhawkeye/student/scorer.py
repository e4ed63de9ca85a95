"""A student as a scorer: the same interface, result schema, score range and direction as the VLM scorer.

``create_scorer("<student folder>")`` (or ``"default"``, the embedded student) returns a
:class:`StudentScorer`; ``qhawkeye score``, ``evaluate``, ``serve`` and the data filter's score mode take it like
any model. What differs from a VLM: there is no text and no decoding (the ``mode``, sampling and prompt settings
do not apply and are not recorded), ``std``/``uncertainty`` are None, and a chat completion answers with the
score alone, ``<answer>3.42</answer>``, with no reasoning (one image per request).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from qhawkeye import SCORE_MAX, SCORE_MIN, prompts
from qhawkeye.scoring.config import ScorerConfig
from qhawkeye.scoring.scorer import BatchScoring, ScoreResult, decode_batch
from qhawkeye.student.features import MIN_SIDE, FeatureExtractor
from qhawkeye.student.head import load_student

logger = logging.getLogger(__name__)
CPU_BATCH = 2


class StudentScorer(BatchScoring):
    """A loaded student. Build it with :func:`qhawkeye.scoring.create_scorer`."""

    score_range = (SCORE_MIN, SCORE_MAX)
    lower_better = False
    is_student = True

    def __init__(self, config: ScorerConfig, folder: Path):
        self.config = config
        self.preset = prompts.get_preset("qhawkeye")  # parses the chat answer this scorer writes
        self.head = load_student(folder)
        self.model_path = folder
        device = config.device or "cpu"
        # on a CPU two images per backbone call is fastest (cache-bound depthwise convolutions: 2 beats 1, 4 and
        # 8 at 512x384, benchmarks/RESULTS.md); elsewhere the configured batch size
        self.extractor = FeatureExtractor(
            self.head.spec, batch_size=CPU_BATCH if device == "cpu" else config.batch_size, device=device
        )
        if config.mode is not None or config.prompt_preset != "qhawkeye":
            logger.warning(
                "%s is a student: it has no decoding or prompt; mode=%s and prompt_preset=%s do not apply",
                folder,
                config.mode,
                config.prompt_preset,
            )

    def describe(self) -> dict:
        """What produced the scores: recorded in output files."""
        return {
            "model": str(self.model_path),
            "model_kind": "student",
            "identity": self.head.identity,
            "description": self.head.meta.get("description", ""),
            "features": self.head.spec.to_dict(),
            "score_range": list(self.score_range),
            "lower_better": self.lower_better,
        }

    def predict(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Raw (unclipped) scores of decoded RGB images."""
        if not images:
            return np.zeros(0)
        return self.head.fit.predict(self.extractor(images))

    def score_batch(
        self, images: Sequence[str | Path | Image.Image], ids: Sequence[str] | None = None
    ) -> list[ScoreResult]:
        """Score several images (paths or PIL images); results in input order."""
        keys, results, readable, loaded = decode_batch(images, ids, self.config.image_limits)
        good, decoded = [], []
        for n, image in zip(readable, loaded, strict=True):
            if min(image.size) < MIN_SIDE:
                results[n] = ScoreResult.unreadable(
                    keys[n],
                    f"{keys[n]}: {image.width}x{image.height} is too small for the student (sides >= {MIN_SIDE})",
                )
                continue
            good.append(n)
            decoded.append(image)
        for n, raw in zip(good, self.predict(decoded), strict=True):
            score = float(np.clip(raw, SCORE_MIN, SCORE_MAX))
            results[n] = ScoreResult(keys[n], round(score, 6), "ok", n_parsed=1, n_draws=1,
                                     clipped=bool(raw < SCORE_MIN or raw > SCORE_MAX))  # fmt: skip
        return results  # type: ignore[return-value]

    def _chunk(self) -> int:
        return self.config.batch_size

    def generate(self, requests, return_logprobs: bool = False):
        """Chat requests (the server's): each must hold exactly one image; the answer is the score alone."""
        from qhawkeye.scoring.generation import Generation

        for n, request in enumerate(requests):
            if len(request.images) != 1:
                raise ValueError(
                    f"request {n}: a student scores exactly one image per chat request, got {len(request.images)}"
                )
        scores = np.clip(self.predict([r.images[0] for r in requests]), SCORE_MIN, SCORE_MAX)
        return [Generation(f"<answer>{s:.2f}</answer>", "stop", 0, 0) for s in scores]
