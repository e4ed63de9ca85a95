"""qhawkeye: Q-Hawkeye (arXiv 2601.22920) for image quality assessment with vision-language models.

The package trains Qwen2.5-VL with GRPO plus two additions, uncertainty-aware advantage reweighting (UADO)
and an implicit perception loss on original/degraded image pairs (PAO), and scores images with the same
prompt and score parser that training uses.
"""

__version__ = "0.1.0"

SCORE_MIN = 1.0
SCORE_MAX = 5.0
"""Every qhawkeye score lies in [SCORE_MIN, SCORE_MAX]; higher is better (lower_better = False)."""
