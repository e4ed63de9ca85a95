"""Scoring images with a trained (or any Qwen2.5-VL) quality model: :func:`create_scorer`."""

from qhawkeye.scoring.scorer import Scorer, ScorerConfig, ScoreResult, create_scorer

__all__ = ["ScoreResult", "Scorer", "ScorerConfig", "create_scorer"]
