"""Typed configuration for `qhawkeye train`: model, data and the GRPO + Q-Hawkeye hyperparameters.

:class:`QHawkeyeConfig` subclasses TRL's ``GRPOConfig``. Every algorithm hyperparameter whose TRL default
has changed between releases (beta, loss_type, scale_rewards, epsilon, G, temperature, lengths) is
re-declared here with our own default and help, so nothing is inherited silently from the installed TRL.
A YAML recipe is one flat mapping over the fields of the three dataclasses; unknown keys are an error.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from transformers import HfArgumentParser
from trl import GRPOConfig

from qhawkeye import SCORE_MAX, SCORE_MIN
from qhawkeye.registry import lookup
from qhawkeye.rewards import OUT_OF_RANGE_POLICIES, REWARDS
from qhawkeye.train.uado import UNPARSED_POLICIES

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo")


@dataclass
class ModelArguments:
    """Which model to train and how to load it."""

    model_name_or_path: str = field(
        default="tiny",
        metadata={
            "help": "Local Qwen2.5-VL folder, or an embedded offline model built on first use: 'tiny' (default), "
            "'tiny-format' (tiny + image-blind format warm start), 'small', 'small-format'."
        },
    )
    dtype: str = field(
        default="float32",
        metadata={"help": "Weights dtype at load: float32, bfloat16, float16 or auto (the folder's own)."},
    )
    attn_implementation: str = field(default="sdpa", metadata={"help": "eager, sdpa or flash_attention_2."})
    min_pixels: int | None = field(
        default=None, metadata={"help": "Image processor's min_pixels (None: the model folder's own)."}
    )
    max_pixels: int | None = field(
        default=None,
        metadata={
            "help": "Image processor's max_pixels (None: the folder's own; the released recipe uses 786432)."
        },
    )
    freeze_vision_tower: bool = field(
        default=False,
        metadata={"help": "Freeze the vision encoder (and its merger): train the language model only."},
    )
    use_peft: bool = field(
        default=False, metadata={"help": "Train LoRA adapters (PEFT) instead of all weights."}
    )
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "Module names LoRA adapts (the language model's linear layers by default)."},
    )

    def __post_init__(self):
        if self.dtype not in ("float32", "bfloat16", "float16", "auto"):
            raise ValueError(f"dtype must be float32, bfloat16, float16 or auto, got {self.dtype!r}")
        if self.lora_r <= 0:
            raise ValueError(f"lora_r must be > 0, got {self.lora_r}")


@dataclass
class DataArguments:
    """Where the training data is: a Hugging Face dataset saved with ``save_to_disk``."""

    dataset_path: str | None = field(
        default=None,
        metadata={
            "help": "Folder written by datasets' save_to_disk (a Dataset, or a DatasetDict with dataset_split)."
        },
    )
    dataset_split: str = field(
        default="train", metadata={"help": "Split to train on when the folder is a DatasetDict."}
    )
    eval_dataset_path: str | None = field(
        default=None, metadata={"help": "Optional held-out dataset folder."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N rows (smoke runs)."}
    )
    image_column: str = field(default="image", metadata={"help": "Column with the original image."})
    score_column: str = field(
        default="gt_score", metadata={"help": "Column with the label, already on [1, 5]."}
    )
    check_images: bool = field(
        default=True, metadata={"help": "Decode every image once before training, naming the first bad row."}
    )

    def __post_init__(self):
        if self.max_train_samples is not None and self.max_train_samples <= 0:
            raise ValueError(f"max_train_samples must be > 0, got {self.max_train_samples}")


@dataclass
class QHawkeyeConfig(GRPOConfig):
    """GRPO configuration with the Q-Hawkeye additions. Defaults follow the released recipe (SPEC.md)."""

    # ---- GRPO hyperparameters re-declared so that no default comes from the installed TRL version ----
    num_generations: int | None = field(default=4, metadata={"help": "G, rollouts per image (recipe: 4)."})
    temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature of the rollouts (recipe: 1.0)."}
    )
    max_completion_length: int | None = field(
        default=2048, metadata={"help": "Maximum completion tokens per rollout (recipe: 2048)."}
    )
    beta: float = field(
        default=0.04, metadata={"help": "KL coefficient to the reference model (recipe: 0.04)."}
    )
    loss_type: str = field(
        default="grpo",
        metadata={
            "help": f"TRL loss aggregation, one of {LOSS_TYPES} (recipe: grpo; TRL 1.16's default is dapo)."
        },
    )
    scale_rewards: str = field(
        default="group", metadata={"help": "Advantage scaling: group (recipe), batch or none."}
    )
    epsilon: float = field(default=0.2, metadata={"help": "Lower clipping range of the ratio (recipe: 0.2)."})
    epsilon_high: float | None = field(
        default=0.28, metadata={"help": "Upper clipping range of the ratio (recipe: 0.28)."}
    )
    num_iterations: int = field(
        default=1, metadata={"help": "Policy updates per generation batch (recipe: 1)."}
    )
    mask_truncated_completions: bool = field(
        default=False, metadata={"help": "Exclude truncated completions from the loss (recipe: False)."}
    )
    entropy_coef: float = field(
        default=0.0,
        metadata={
            "help": "TRL's own entropy bonus; keep 0: Q-Hawkeye's entropy terms are pao_eta1/pao_eta2."
        },
    )
    learning_rate: float = field(default=5e-6, metadata={"help": "Peak learning rate (recipe: 5e-6)."})

    # ---- rewards ----
    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy", "format"],
        metadata={
            "help": f"Reward names, summed: any of {sorted(REWARDS)} (released recipe adds 'repetition')."
        },
    )
    accuracy_tau: float = field(
        default=0.30, metadata={"help": "tau of the accuracy reward exp(-|err|/tau)."}
    )
    accuracy_out_of_range: str = field(
        default="clip",
        metadata={
            "help": "A parsed score outside [1, 5]: clip (scored as the nearest bound; SPEC, the release) or "
            "zero (no accuracy reward; closes the '1911 reads as 5' loophole a policy can learn)."
        },
    )

    # ---- UADO ----
    use_uado: bool = field(
        default=True, metadata={"help": "Scale each image's advantages by exp(-alpha * u)."}
    )
    uado_alpha: float = field(
        default=0.2, metadata={"help": "UADO strength alpha (recipe: 0.2; w in [0.82, 1])."}
    )
    uado_score_min: float = field(
        default=SCORE_MIN, metadata={"help": "Lowest score; var_max = (max - min)^2 / 4."}
    )
    uado_score_max: float = field(default=SCORE_MAX, metadata={"help": "Highest score."})
    uado_unparsed_policy: str = field(
        default="max_uncertainty",
        metadata={
            "help": "Groups with fewer than two parseable scores: max_uncertainty (u = 1, our default: "
            "unparseable rollouts are the least stable) or full_weight (u = 0, the release's behaviour)."
        },
    )

    # ---- PAO ----
    use_pao: bool = field(
        default=True,
        metadata={"help": "Implicit perception loss on the original/degraded pair (needs the column)."},
    )
    degraded_image_column: str = field(
        default="degraded_image",
        metadata={"help": "Dataset column holding each original's degraded partner."},
    )
    pao_gamma: float = field(default=1e-4, metadata={"help": "gamma, the perception-KL weight at epoch 0."})
    pao_gamma_zero_epoch: float = field(
        default=5.0, metadata={"help": "E0: gamma decays by a half cosine to 0 at this (fractional) epoch."}
    )
    pao_eta1: float = field(
        default=1e-3, metadata={"help": "eta1, weight of the original-image entropy (minimised)."}
    )
    pao_eta2: float = field(
        default=0.0,
        metadata={
            "help": "eta2, weight of the degraded-image entropy; needs pao_grad_through_degraded (recipe: 1e-3)."
        },
    )
    pao_grad_through_degraded: bool = field(
        default=False,
        metadata={
            "help": "Forward the degraded image with gradient at every step (costly). Off: its log-probs are "
            "computed once per generation batch without gradient, as in the release."
        },
    )

    quality_eval_steps: int = field(
        default=0,
        metadata={
            "help": "Every N optimizer steps, score a held-out set and log SRCC/PLCC as quality_eval/* (0 = off). "
            "The set is quality_eval_benchmark if given, else eval_dataset_path."
        },
    )
    quality_eval_benchmark: str | None = field(
        default=None, metadata={"help": "Benchmark card name or YAML card for the quality evaluation."}
    )
    quality_eval_data_root: str | None = field(
        default=None, metadata={"help": "Folder the benchmark card's paths are relative to."}
    )
    quality_eval_max_samples: int = field(
        default=200, metadata={"help": "Score at most this many held-out images (the first N)."}
    )
    quality_eval_mode: str = field(
        default="greedy",
        metadata={
            "help": "Decoding for the quality evaluation: greedy, sample or expected (see qhawkeye score)."
        },
    )
    scoring_mode: str = field(
        default="greedy",
        metadata={
            "help": "The decoding `qhawkeye score`, evaluate and serve use for the trained model when no --mode "
            "is given (greedy, sample or expected); recorded in qhawkeye_run.json."
        },
    )
    quality_eval_num_samples: int = field(
        default=4, metadata={"help": "Draws per image when quality_eval_mode is sample (mean is the score)."}
    )
    quality_eval_max_new_tokens: int = field(
        default=512, metadata={"help": "Generation limit per answer in the quality evaluation."}
    )
    quality_eval_batch_size: int = field(
        default=16, metadata={"help": "Sequences per generate call in the quality evaluation."}
    )

    def __post_init__(self):
        super().__post_init__()
        self._validate_qhawkeye()

    def _validate_qhawkeye(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        for name in self.reward_funcs:
            lookup(REWARDS, name, "reward in reward_funcs")
        if self.accuracy_out_of_range not in OUT_OF_RANGE_POLICIES:
            raise ValueError(
                f"accuracy_out_of_range must be one of {OUT_OF_RANGE_POLICIES}, got {self.accuracy_out_of_range!r}"
            )
        if self.accuracy_tau <= 0:
            raise ValueError(f"accuracy_tau must be > 0, got {self.accuracy_tau}")
        if self.uado_alpha < 0:
            raise ValueError(f"uado_alpha must be >= 0, got {self.uado_alpha}")
        if self.uado_score_max <= self.uado_score_min:
            raise ValueError("uado_score_max must be greater than uado_score_min")
        if self.uado_unparsed_policy not in UNPARSED_POLICIES:
            raise ValueError(
                f"uado_unparsed_policy must be one of {UNPARSED_POLICIES}, got {self.uado_unparsed_policy!r}"
            )
        if self.pao_gamma < 0 or self.pao_eta1 < 0 or self.pao_eta2 < 0:
            raise ValueError("pao_gamma, pao_eta1 and pao_eta2 must be >= 0")
        if self.pao_gamma_zero_epoch <= 0:
            raise ValueError(f"pao_gamma_zero_epoch must be > 0, got {self.pao_gamma_zero_epoch}")
        if self.use_pao and self.pao_eta2 != 0 and not self.pao_grad_through_degraded:
            raise ValueError(
                f"pao_eta2={self.pao_eta2} has no effect without gradient through the degraded branch: the degraded "
                "log-probs are computed without gradient by default, so the H_deg term would be a constant (the "
                "authors' release has this dead term). Set pao_grad_through_degraded: true, or pao_eta2: 0."
            )
        if self.use_vllm and (self.use_uado or self.use_pao):
            raise ValueError(
                "use_vllm=True is not supported with use_uado/use_pao yet: qhawkeye's UADO and PAO hooks have not "
                "been validated on TRL's vLLM path, and the release's vLLM trainer silently drops both. "
                "Set use_vllm: false (generation then uses model.generate)."
            )
        if self.quality_eval_steps < 0 or self.quality_eval_max_samples < 3:
            raise ValueError(
                "quality_eval_steps must be >= 0 and quality_eval_max_samples >= 3 (correlations)"
            )
        if self.scoring_mode not in ("greedy", "sample", "expected"):
            raise ValueError(f"scoring_mode must be greedy, sample or expected, got {self.scoring_mode!r}")
        if self.quality_eval_mode not in ("greedy", "sample", "expected"):
            raise ValueError(
                f"quality_eval_mode must be greedy, sample or expected, got {self.quality_eval_mode!r}"
            )
        if self.entropy_coef != 0:
            raise ValueError(
                "entropy_coef is TRL's entropy *bonus*; Q-Hawkeye's double entropy regularisation is pao_eta1/"
                "pao_eta2. Set entropy_coef: 0."
            )


CONFIG_CLASSES = (ModelArguments, DataArguments, QHawkeyeConfig)


def known_keys() -> set[str]:
    return {f.name for cls in CONFIG_CLASSES for f in fields(cls) if f.init}


def parse_config(
    path: str | Path, overrides: dict | None = None
) -> tuple[ModelArguments, DataArguments, QHawkeyeConfig]:
    """Read a flat YAML recipe (plus ``overrides``) into the three config dataclasses.

    Raises:
        FileNotFoundError: the YAML file does not exist.
        ValueError: a key is not a config field (with a did-you-mean), or a value is invalid.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} not found")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        raise ValueError(f"{path}: not valid YAML{line}: {getattr(err, 'problem', None) or err}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file ({err.reason}); a recipe is a YAML file") from None
    if values is None:
        raise ValueError(f"{path}: the file is empty; start from a recipe in configs/train/")
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a training config must be a YAML mapping of field: value")
    values.update(overrides or {})
    return parse_dict(values, source=str(path))


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _field_types() -> dict[str, object]:
    hints = {}
    for cls in CONFIG_CLASSES:
        hints.update(typing.get_type_hints(cls))
    return hints


def _strict(name: str, value, hint, source: str):
    """``value`` checked (and a YAML-1.1 string like "1e-4" made a float) against a simple field type; other
    types (enums, dicts, unions of several kinds) are left to HfArgumentParser."""
    args = (
        set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else {hint}
    )
    if value is None and type(None) in args:
        return value
    simple = args - {type(None)}
    if len(simple) != 1:
        return value
    (kind,) = simple

    def fail(what: str):
        raise ValueError(
            f"{source}: field {name!r} must be {what}, got {value!r} ({type(value).__name__}). Write it without "
            "quotes, e.g. `--set use_pao=false` or `learning_rate: 1.0e-4`; see `qhawkeye train --list-fields`."
        )

    if kind is bool:
        return value if isinstance(value, bool) else fail("true or false")
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else fail("an integer")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):  # YAML 1.1 reads 1e-4 as a string
            return float(value)
        return fail("a number")
    if kind is str:
        return value if isinstance(value, str) else fail("a string")
    if typing.get_origin(kind) is list and typing.get_args(kind) in ((str,), (float,)):
        item = typing.get_args(kind)[0]
        if not isinstance(value, list):
            return fail(f"a list of {item.__name__}")
        return [_strict(f"{name}[{n}]", v, item, source) for n, v in enumerate(value)]
    return value


def check_types(values: dict, source: str = "config") -> dict:
    """Every value of a simple field type checked at parse time (a wrong type names the field)."""
    hints = _field_types()
    return {k: _strict(k, v, hints[k], source) if k in hints else v for k, v in values.items()}


def parse_dict(values: dict, source: str = "config") -> tuple[ModelArguments, DataArguments, QHawkeyeConfig]:
    """Like :func:`parse_config`, from a dict."""
    keys = known_keys()
    unknown = [k for k in values if k not in keys]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, keys, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"{source}: unknown config field(s): {', '.join(hints)}. See `qhawkeye train --list-fields`."
        )
    parser = HfArgumentParser(CONFIG_CLASSES)
    return parser.parse_dict(check_types(values, source), allow_extra_keys=False)
