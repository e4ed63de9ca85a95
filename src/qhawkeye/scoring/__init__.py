"""Scoring images with a trained (or any Qwen2.5-VL) quality model: :func:`create_scorer`.

The names are loaded on first use, so importing :mod:`qhawkeye.scoring.config` (the CLI does) stays cheap.
"""

from qhawkeye.scoring.config import ScorerConfig

__all__ = ["ScoreResult", "Scorer", "ScorerConfig", "create_scorer"]


def __getattr__(name: str):
    if name in ("ScoreResult", "Scorer", "create_scorer"):
        from qhawkeye.scoring import scorer

        return getattr(scorer, name)
    raise AttributeError(f"module 'qhawkeye.scoring' has no attribute {name!r}")
