"""The Scorer: load a quality model once, then score images in batches.

In the spirit of pyiqa's ``create_metric``::

    from qhawkeye.scoring import create_scorer
    scorer = create_scorer()        # the embedded student; or a Qwen2.5-VL folder, a checkpoint, LoRA adapters
    result = scorer.score("photo.jpg")                  # ScoreResult: score in [1, 5], higher is better
    results = scorer.score_batch(["a.jpg", "b.png"])
    results = scorer.score_folder("photos/")

Scores lie in ``scorer.score_range`` = (1, 5) and ``scorer.lower_better`` is False. The prompt and the
parser are the ones training uses (``prompt_preset="qhawkeye"``); another preset evaluates someone else's
checkpoint with its own prompt. Decoding is explicit:

- ``greedy``: deterministic; one answer per image.
- ``expected``: deterministic; the greedy answer, scored by the expected value of the model's distribution
  over its first digit (1..5), as Q-Align reads its level tokens: continuous, so far fewer ranking ties than
  greedy; ``std``/``uncertainty`` are that distribution's spread and ``digit_probs`` the distribution
  (:mod:`qhawkeye.scoring.expected`).
- ``sample``: ``num_samples`` draws per image at ``temperature``; the score is the mean of the parsed draws,
  ``std`` their population standard deviation and ``uncertainty`` the normalised variance UADO uses
  (``var / var_max`` with ``var_max = (5 - 1)^2 / 4``). Draws are seeded by the run seed and a hash
  of the image's pixels (see :mod:`qhawkeye.scoring.generation`), so the same image gets the same draws under
  any name, in any batch, in any call (up to float noise in the logits from a different batch shape).

A parse failure is reported (``parsed=False``, ``score=None``, the reason in ``error``), never replaced by
a number. An unreadable image gives ``status="unreadable"`` and the rest of the batch is still scored.
The generation settings come from :class:`ScorerConfig` only: the model folder's ``generation_config.json``
(Qwen2.5-VL-7B-Instruct's sets temperature 0.1, top_k 1 and repetition_penalty 1.05) is not inherited,
apart from its end-of-sequence and padding token ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from qhawkeye import SCORE_MAX, SCORE_MIN, prompts
from qhawkeye.images import UnreadableImage, check_size, display_name, load_image, to_rgb
from qhawkeye.modeling import load_model, load_processor, resolve_model_path
from qhawkeye.parsing import normalised_uncertainty
from qhawkeye.scoring.config import ScorerConfig
from qhawkeye.scoring.expected import ScoreDigits, expected_score
from qhawkeye.scoring.generation import Generation, GenerationRequest, generate_batch, row_seed

logger = logging.getLogger(__name__)

RUN_INFO = "qhawkeye_run.json"  # written by qhawkeye.train.main into trained folders


@dataclass
class Draw:
    """One generated answer."""

    text: str
    score: float | None
    error: str | None
    clipped: bool = False


@dataclass
class ScoreResult:
    """The score of one image.

    Attributes:
        id: the image's id (its path unless given).
        score: in [1, 5], higher is better; the greedy answer's, or the mean of the parsed draws; None when
            no answer parsed or the image could not be read.
        std, uncertainty: spread of the parsed draws (sample mode with >= 2 parsed draws), else None.
        status: "ok", "parse_failure" or "unreadable".
        text: the answer (the first draw's in sample mode); "" for an unreadable image.
        error: why there is no score (parse failure reason or the image error).
        n_parsed, n_draws: parsed answers out of the draws made.
        clipped: some parsed value lay outside [1, 5] and was clipped.
        draws: every draw in sample mode (text, score, error).
        digit_probs: expected mode: the probabilities of the first digit 1..5 the score averages.
    """

    id: str
    score: float | None
    status: str
    text: str = ""
    error: str | None = None
    std: float | None = None
    uncertainty: float | None = None
    n_parsed: int = 0
    n_draws: int = 0
    clipped: bool = False
    draws: list[Draw] | None = None
    digit_probs: list[float] | None = None

    @classmethod
    def unreadable(cls, id: str, error: str) -> ScoreResult:  # noqa: A002
        """The result for an image that could not be read (no score, the reason in ``error``)."""
        return cls(id, None, "unreadable", error=error)

    @property
    def parsed(self) -> bool:
        return self.score is not None

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["parsed"] = self.parsed
        for key in ("draws", "digit_probs"):
            if out[key] is None:
                out.pop(key)
        return out


def content_key(image: Image.Image) -> str:
    """A hash of the decoded pixels: sampled draws are seeded by what the image is, not by its name."""
    digest = hashlib.sha256(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()[:32]


def summarise_draws(key: str, draws: list[Draw], parser_score_range=(SCORE_MIN, SCORE_MAX)) -> ScoreResult:
    """Combine one image's draws into a :class:`ScoreResult` (mean, population std, UADO uncertainty)."""
    scores = [d.score for d in draws if d.score is not None]
    clipped = any(d.clipped for d in draws)
    if not scores:
        return ScoreResult(
            key,
            None,
            "parse_failure",
            draws[0].text,
            draws[0].error,
            n_draws=len(draws),
            clipped=clipped,
            draws=draws if len(draws) > 1 else None,
        )
    mean = sum(scores) / len(scores)
    std = uncertainty = None
    if len(draws) > 1 and len(scores) >= 2:
        var = sum((s - mean) ** 2 for s in scores) / len(scores)
        lo, hi = parser_score_range
        std, uncertainty = math.sqrt(var), normalised_uncertainty(var, lo, hi)
    first = draws[0]
    return ScoreResult(
        key,
        mean,
        "ok",
        first.text,
        None if first.score is not None else first.error,
        std,
        uncertainty,
        len(scores),
        len(draws),
        clipped,
        draws if len(draws) > 1 else None,
    )


def decode_batch(
    images: Sequence[str | Path | Image.Image], ids: Sequence[str] | None, limits
) -> tuple[list[str], list[ScoreResult | None], list[int], list[Image.Image]]:
    """Ids, a result slot per image (filled for the unreadable ones), the indices that decoded, their RGB images.

    Shared by every scorer: ids default to the paths (``image-<n>`` for PIL images), sizes are checked from the
    header before decoding, and an unreadable image becomes its ``unreadable`` result, never an exception."""
    keys = (
        list(ids)
        if ids is not None
        else [
            display_name(x) if not isinstance(x, Image.Image) else f"image-{n}" for n, x in enumerate(images)
        ]
    )
    if len(keys) != len(images):
        raise ValueError(f"{len(images)} images but {len(keys)} ids")
    results: list[ScoreResult | None] = [None] * len(images)
    good: list[int] = []
    decoded: list[Image.Image] = []
    for n, item in enumerate(images):
        try:
            if isinstance(item, Image.Image):
                check_size(item.size, keys[n], limits)
                decoded.append(to_rgb(item))
            else:
                decoded.append(load_image(item, limits))
            good.append(n)
        except UnreadableImage as err:
            results[n] = ScoreResult.unreadable(keys[n], str(err))
    return keys, results, good, decoded


class BatchScoring:
    """What every scorer offers on top of its ``score_batch``: one image, a folder, a lazy stream."""

    def _chunk(self) -> int:
        raise NotImplementedError

    def score_batch(self, images, ids=None) -> list[ScoreResult]:
        raise NotImplementedError

    def score(self, image: str | Path | Image.Image, id: str | None = None) -> ScoreResult:  # noqa: A002
        """Score one image."""
        return self.score_batch([image], None if id is None else [id])[0]

    def score_folder(self, folder: str | Path) -> list[ScoreResult]:
        """Score every image under ``folder`` (recursive, sorted); ids are paths relative to it."""
        from qhawkeye.scoring.io import collect_inputs

        items = collect_inputs([folder])
        return list(self.iter_scores((item.id, item.path) for item in items))

    def iter_scores(
        self, items: Iterable[tuple[str, str | Path]], chunk: int | None = None
    ) -> Iterator[ScoreResult]:
        """Score ``(id, path)`` pairs lazily, ``chunk`` images at a time (default: one model call's worth)."""
        chunk = chunk or self._chunk()
        pending: list[tuple[str, str | Path]] = []
        for item in items:
            pending.append(item)
            if len(pending) == chunk:
                yield from self.score_batch([p for _, p in pending], [i for i, _ in pending])
                pending = []
        if pending:
            yield from self.score_batch([p for _, p in pending], [i for i, _ in pending])


def _is_adapter_folder(path: Path) -> bool:
    return (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


class Scorer(BatchScoring):
    """A loaded quality model. Build it with :func:`create_scorer`."""

    score_range = (SCORE_MIN, SCORE_MAX)
    lower_better = False

    def __init__(self, config: ScorerConfig):
        self.config = config
        self.preset = prompts.get_preset(config.prompt_preset)
        self.device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model_path, self.model, self.processor = self._load(config)
        if config.mode is None:  # the training run's scoring_mode, else greedy; recorded as resolved
            self.config = config = dataclasses.replace(config, mode=self._recorded_mode(self.model_path))
        self.generation_config = self._generation_config()
        self.digits = self._score_digits()

    @staticmethod
    def _recorded_mode(folder: Path) -> str:
        info = folder / RUN_INFO
        if info.is_file():
            mode = json.loads(info.read_text()).get("config", {}).get("training", {}).get("scoring_mode")
            if mode in ("greedy", "sample", "expected"):
                logger.info("scoring in %s mode, the scoring_mode %s was trained with", mode, folder)
                return mode
        return "greedy"

    @classmethod
    def from_loaded(cls, model, processor, config: ScorerConfig, name: str = "(in memory)") -> Scorer:
        """A scorer over a model already in memory (the training callback); the caller owns train/eval mode."""
        if config.mode is None:
            config = dataclasses.replace(config, mode="greedy")
        scorer = cls.__new__(cls)
        scorer.config, scorer.preset = config, prompts.get_preset(config.prompt_preset)
        scorer.model, scorer.processor, scorer.model_path = model, processor, name
        scorer.device = next(model.parameters()).device
        scorer.generation_config = scorer._generation_config()
        scorer.digits = scorer._score_digits()
        return scorer

    def _score_digits(self) -> ScoreDigits | None:
        if self.config.mode != "expected":
            return None
        return ScoreDigits.for_range(self.processor.tokenizer, *self.score_range)

    def _load(self, config: ScorerConfig):
        """(folder, model, processor); LoRA adapters are merged into their base model."""
        folder = Path(config.model).expanduser()
        adapter = folder if _is_adapter_folder(folder) else None
        if adapter is None:
            folder = base = resolve_model_path(config.model)
        else:
            base = resolve_model_path(config.base_model or self._adapter_base(adapter))
        has_processor = (folder / "preprocessor_config.json").is_file()
        processor = load_processor(folder if has_processor else base, *self._pixel_limits(folder))
        model = load_model(base, dtype=config.dtype, attn_implementation=config.attn_implementation)
        if adapter is not None:
            model = self._with_adapter(model, adapter)
        model.to(self.device).eval()
        return folder, model, processor

    @staticmethod
    def _adapter_base(adapter: Path) -> str:
        base = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base:
            raise ValueError(f"{adapter}/adapter_config.json names no base model: pass base_model explicitly")
        return base

    @staticmethod
    def _with_adapter(model, adapter: Path):
        try:
            from peft import PeftModel
        except ImportError as err:
            raise ImportError("LoRA adapters need peft: pip install 'qhawkeye[train]'") from err
        return PeftModel.from_pretrained(model, adapter).merge_and_unload()

    def _pixel_limits(self, folder: Path) -> tuple[int | None, int | None]:
        """Explicit config first, then the training run's recorded limits, then the folder's own."""
        recorded: dict = {}
        info = folder / RUN_INFO
        if info.is_file():
            recorded = json.loads(info.read_text()).get("config", {}).get("model", {})
        return (
            self.config.min_pixels if self.config.min_pixels is not None else recorded.get("min_pixels"),
            self.config.max_pixels if self.config.max_pixels is not None else recorded.get("max_pixels"),
        )

    def _generation_config(self):
        from transformers import GenerationConfig

        own = self.model.generation_config
        pad = own.pad_token_id if own.pad_token_id is not None else self.processor.tokenizer.pad_token_id
        return GenerationConfig(
            do_sample=False,  # sampling, when asked for, happens in RowSeededSampler
            max_new_tokens=self.config.max_new_tokens,
            eos_token_id=own.eos_token_id,
            pad_token_id=pad,
            repetition_penalty=1.0,
        )

    def describe(self) -> dict:
        """What produced the scores: recorded in output files."""
        return {
            "model": str(self.model_path),
            "prompt_preset": self.preset.name,
            "decoding": self.config.decoding(),
            "score_range": list(self.score_range),
            "lower_better": self.lower_better,
        }

    def generate(
        self, requests: Sequence[GenerationRequest], return_logprobs: bool = False
    ) -> list[Generation]:
        """Answer chat requests (any messages, any number of images) in one batch; see :mod:`.generation`."""
        return generate_batch(self.model, self.processor, requests, self.generation_config, return_logprobs)

    def _generate_chunked(
        self, requests: Sequence[GenerationRequest], watch_token_ids=None
    ) -> list[Generation]:
        """``generate_batch`` over ``batch_size`` requests at a time."""
        out: list[Generation] = []
        for start in range(0, len(requests), self.config.batch_size):
            chunk = requests[start : start + self.config.batch_size]
            out += generate_batch(self.model, self.processor, chunk, self.generation_config,
                                  watch_token_ids=watch_token_ids)  # fmt: skip
        return out

    def request(self, image: Image.Image, seed: int | None = None) -> GenerationRequest:
        """The scoring request for one image under this scorer's preset and decoding settings."""
        cfg = self.config
        return GenerationRequest(
            self.preset.messages(), [image], cfg.max_new_tokens, seed, cfg.temperature, cfg.top_p, cfg.top_k
        )

    def _draws(self, keys: Sequence[str], images: Sequence[Image.Image]) -> list[list[Draw]]:
        """All draws for a group of images (greedy: one each), chunked into generate calls."""
        k = self.config.draws
        rows = [(i, j) for i in range(len(images)) for j in range(k)]
        greedy = self.config.mode == "greedy"
        requests = [
            self.request(images[i], None if greedy else row_seed(self.config.seed, keys[i], j))
            for i, j in rows
        ]
        texts = [g.text for g in self._generate_chunked(requests)]
        out: list[list[Draw]] = [[] for _ in images]
        for (i, _), text in zip(rows, texts, strict=True):
            parsed = self.preset.parser(text)
            out[i].append(Draw(text, parsed.score, parsed.error, parsed.clipped))
        return out

    def score_batch(
        self, images: Sequence[str | Path | Image.Image], ids: Sequence[str] | None = None
    ) -> list[ScoreResult]:
        """Score several images (paths or PIL images); results in input order."""
        keys, results, good, decoded = decode_batch(images, ids, self.config.image_limits)
        if self.config.mode == "expected":
            for n, result in zip(good, self._expected([keys[n] for n in good], decoded), strict=True):
                results[n] = result
            return results  # type: ignore[return-value]
        for n, draws in zip(good, self._draws([content_key(im) for im in decoded], decoded), strict=True):
            results[n] = summarise_draws(keys[n], draws, self.score_range)
        return results  # type: ignore[return-value]

    def _expected(self, keys: Sequence[str], images: Sequence[Image.Image]) -> list[ScoreResult]:
        """Expected mode: greedy answers, scored by their first digit's distribution."""
        requests = [self.request(image) for image in images]
        generations = self._generate_chunked(requests, watch_token_ids=self.digits.ids)
        results = []
        tokenizer = self.processor.tokenizer
        for key, gen in zip(keys, generations, strict=True):
            parsed = self.preset.parser(gen.text)
            exp = expected_score(
                parsed, gen.text, gen.token_ids, gen.watched_logprobs, self.digits, tokenizer
            )
            if exp.score is None:
                results.append(ScoreResult(key, None, "parse_failure", gen.text, exp.error, n_draws=1))
                continue
            results.append(
                ScoreResult(
                    key,
                    exp.score,
                    "ok",
                    gen.text,
                    None,
                    exp.std,
                    exp.uncertainty,
                    1,
                    1,
                    parsed.clipped,
                    digit_probs=list(exp.probs),
                )  # fmt: skip
            )
        return results

    def _chunk(self) -> int:
        return max(1, self.config.batch_size // self.config.draws)


def load_scorer(config: ScorerConfig):
    """The scorer for ``config.model``: a :class:`~qhawkeye.student.scorer.StudentScorer` for a student folder
    (or ``"default"``, the embedded student), else a VLM :class:`Scorer`."""
    from qhawkeye.student import student_folder

    folder = student_folder(config.model)
    if folder is None:
        return Scorer(config)
    from qhawkeye.student.scorer import StudentScorer

    return StudentScorer(config, folder)


def create_scorer(model: str = "default", **kwargs):
    """Load a model once for scoring; ``kwargs`` are :class:`ScorerConfig` fields. ``"default"`` is the embedded
    student (a fast CPU scorer); ``"tiny"`` the tiny test VLM; else a model or student folder."""
    return load_scorer(ScorerConfig(model=model, **kwargs))
