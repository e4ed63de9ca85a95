"""What `qhawkeye evaluate` evaluates and where it writes (light: the CLI builds its flags from it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvaluateConfig:
    """What to evaluate and where to write it (the model and decoding are a :class:`ScorerConfig`)."""

    benchmarks: list[str] = field(
        default_factory=lambda: ["koniq"],
        metadata={"help": "built-in card names (koniq, spaq, ...) or paths to YAML cards"},
    )
    data_root: str | None = field(
        default=None,
        metadata={"help": "folder holding the benchmark data that the cards' paths are relative to"},
    )
    out: str = field(default="runs/eval", metadata={"help": "output folder (reused and resumed on a rerun)"})
    limit: int | None = field(
        default=None, metadata={"help": "only the first N rows of each benchmark (smoke)"}
    )
    bootstrap: int = field(default=1000, metadata={"help": "bootstrap resamples for the 95% intervals"})
    bootstrap_seed: int = field(default=0, metadata={"help": "seed of the bootstrap resampling"})
    plots: bool = field(default=True, metadata={"help": "write a scatter plot per benchmark"})

    def __post_init__(self):
        if not self.benchmarks:
            raise ValueError("give at least one benchmark (a built-in card name or a YAML card)")
        if self.bootstrap < 0:
            raise ValueError("bootstrap must be >= 0 (0 turns the intervals off)")
