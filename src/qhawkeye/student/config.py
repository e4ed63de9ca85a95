"""``qhawkeye distill`` settings (no torch import: the CLI builds its flags from this)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DistillConfig:
    """Everything that decides a student. Recorded in its ``student.json``."""

    out: str = field(metadata={"help": "student folder to write (must not exist, or be empty)"})
    labels: list[str] = field(
        default_factory=list,
        metadata={"help": "benchmark cards with human labels (built-in names or YAML files)"},
    )
    data_root: str | None = field(
        default=None, metadata={"help": "folder the cards' relative paths resolve against"}
    )
    teacher_scores: list[str] = field(
        default_factory=list,
        metadata={"help": "teacher score files: `qhawkeye score` output (.jsonl or .csv), any model"},
    )
    teacher_image_root: str | None = field(
        default=None,
        metadata={
            "help": "folder the teacher files' relative image paths resolve against (default: the current folder)"
        },
    )
    uncertainty_weighting: bool = field(
        default=True,
        metadata={
            "help": "weigh teacher rows by 1 - u, u their normalised variance (UADO's; from uncertainty or std)"
        },
    )
    min_weight: float = field(default=0.05, metadata={"help": "floor of a teacher row's weight"})
    max_pixels: int = field(
        default=131_072,
        metadata={"help": "images with more pixels are scaled down to this many (aspect kept); 0 = native"},
    )
    folds: int = field(default=5, metadata={"help": "cross-validation folds that choose the ridge penalty"})
    seed: int = field(default=0, metadata={"help": "seed of the cross-validation folds"})
    batch_size: int = field(
        default=2,
        metadata={"help": "images per backbone call (same-size images batch; 2 is fastest on a CPU)"},
    )
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's)"})
    limit: int | None = field(default=None, metadata={"help": "use only the first N rows (a smoke run)"})

    def __post_init__(self):
        if not self.labels and not self.teacher_scores:
            raise ValueError("nothing to learn from: give --labels (benchmark cards) and/or --teacher-scores")
        if not 0 <= self.min_weight <= 1:
            raise ValueError(f"min_weight must be in [0, 1], got {self.min_weight}")
        if self.max_pixels < 0 or 0 < self.max_pixels < 1024:
            raise ValueError(f"max_pixels must be 0 (native) or >= 1024, got {self.max_pixels}")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
