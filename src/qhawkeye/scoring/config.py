"""The scoring settings (kept apart from the model code so the CLI can build its flags without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from qhawkeye import prompts

MODES = ("greedy", "sample", "expected")


@dataclass
class ScorerConfig:
    """Everything that decides a score. Recorded in every output file."""

    model: str = field(
        default="default",
        metadata={
            "help": "'default' (the embedded student: a fast CPU scorer trained on LIVE-Wild), a student folder "
            "(qhawkeye distill), a model folder (Qwen2.5-VL, a qhawkeye checkpoint, LoRA adapters), or 'tiny'"
        },
    )
    base_model: str | None = field(
        default=None,
        metadata={
            "help": "base model folder for LoRA adapters (default: the one named in adapter_config.json)"
        },
    )
    prompt_preset: str = field(
        default="qhawkeye", metadata={"help": f"prompt and parser, one of {sorted(prompts.PRESETS)}"}
    )
    mode: Literal["greedy", "sample", "expected"] | None = field(
        default=None,
        metadata={
            "help": "greedy (one deterministic answer), sample (mean of num_samples draws) or expected "
            "(deterministic: greedy answer, score = expected value of its first digit's distribution); "
            "default: the scoring_mode its training run recorded (qhawkeye_run.json), else greedy"
        },
    )
    num_samples: int = field(default=8, metadata={"help": "draws per image in sample mode (k)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (sample mode)"})
    top_p: float = field(
        default=1.0, metadata={"help": "nucleus sampling threshold, 1.0 = off (sample mode)"}
    )
    top_k: int = field(default=0, metadata={"help": "top-k sampling, 0 = off (sample mode)"})
    max_new_tokens: int = field(default=512, metadata={"help": "generation limit per answer"})
    batch_size: int = field(
        default=16, metadata={"help": "sequences per generate call (images x draws in sample mode)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the per-image draws (sample mode)"})
    device: str | None = field(default=None, metadata={"help": "torch device (default: cuda if available)"})
    dtype: str = field(default="auto", metadata={"help": "model dtype: auto, bfloat16, float16, float32"})
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "attention kernel: sdpa, flash_attention_2, eager (default: library's)"},
    )
    min_pixels: int | None = field(
        default=None, metadata={"help": "image min pixels (default: the training run's, else the folder's)"}
    )
    max_pixels: int | None = field(
        default=None, metadata={"help": "image max pixels (default: the training run's, else the folder's)"}
    )

    max_image_pixels: int = field(
        default=2**28,
        metadata={
            "help": "images over this many pixels (from the header) are reported unreadable, not decoded"
        },
    )
    max_aspect_ratio: float = field(
        default=200.0,
        metadata={
            "help": "images longer than this many times their width (or wider) are reported unreadable"
        },
    )

    def __post_init__(self):
        from qhawkeye.images import ImageLimits

        ImageLimits(self.max_image_pixels, self.max_aspect_ratio)  # range checks, with the field named
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.num_samples < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("num_samples, batch_size and max_new_tokens must be >= 1")
        if self.mode == "sample" and self.temperature <= 0:
            raise ValueError("temperature must be > 0 in sample mode; use mode='greedy' for deterministic")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        prompts.get_preset(self.prompt_preset)  # did-you-mean on a typo

    @property
    def image_limits(self):
        from qhawkeye.images import ImageLimits

        return ImageLimits(self.max_image_pixels, self.max_aspect_ratio)

    @property
    def draws(self) -> int:
        return self.num_samples if self.mode == "sample" else 1

    def decoding(self) -> dict:
        """The decoding settings as recorded in outputs."""
        out = {"mode": self.mode, "max_new_tokens": self.max_new_tokens, "prompt_preset": self.prompt_preset}
        if self.mode == "sample":
            out.update(k=self.num_samples, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
            out["seed"] = self.seed
        return out
