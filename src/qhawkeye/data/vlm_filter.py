"""`qhawkeye data filter`: flag the original/degraded pairs whose difference is imperceptible.

Reads a degrade-stage folder and writes a new stage folder whose manifest holds every input record plus
``filter = {"mode", "flagged", "raw", ...}``. ``flagged`` is True when the pair looked imperceptible, False
when the difference was seen, and None when no decision could be read from the answer: then ``error`` says
why. The filter never makes a decision up; review and ``qhawkeye data build --unreviewed`` decide those.

Three modes (:class:`FilterConfig`):

- ``vlm``: the release's pairwise question (AMAP-ML/Q-Hawkeye, src/Dataset/Degradation_Dataset/VLM_filter.py)
  through any OpenAI-compatible ``POST {base_url}/v1/chat/completions`` (vLLM, a hosted API, ``qhawkeye
  serve``), both images inline as data URLs. ``raw`` is the answer text. It must be ``yes`` (flagged) or
  ``no`` once whitespace, case and one trailing full stop are set aside; anything else is undecided. The
  release compared ``strip().lower()`` with 'yes'/'no' in the same way, but re-asked up to three times at
  temperature 0.3; we ask once at temperature 0 (a re-ask would get the same answer) and record it.
- ``score``: both images scored by a quality model, by the local :class:`~qhawkeye.scoring.scorer.Scorer`
  (no ``base_url``; batched) or by a ``qhawkeye serve`` at ``POST {base_url}/v1/score``. ``raw`` is the two
  answers ``[original, degraded]``, ``scores`` their scores and ``difference`` original minus degraded;
  flagged when ``|difference| < threshold``. A score that does not parse leaves the pair undecided.
- ``ssim``: a cheap full-reference pre-filter, no model and no HTTP: SSIM of the degraded image against the
  original on their luminance (Wang et al. 2004, 11x11 Gaussian window;
  :func:`qhawkeye.sample_data.synthetic.ssim`), computed here one pair after another. ``raw`` and ``ssim``
  are the value (6 decimals); flagged when ``ssim >= ssim_threshold``. Images of different sizes, or smaller
  than 11x11, fail the pair. SSIM answers go through the same checkpoint as model answers: a few ms a pair at
  demo sizes but seconds on large photos, and a rerun with another ``ssim_threshold`` re-decides without
  recomputing.

In the two model modes requests run on a thread pool of ``concurrency`` workers, each with ``timeout_s`` and ``retries`` (exponential
backoff with jitter) on connection errors, 429 and 5xx; any other 4xx fails the pair at once. Every answer is
appended (flushed and fsynced) to ``<out>/filter_answers.jsonl`` the moment it arrives, and a rerun into the
same folder asks only the pairs not in it: a killed run loses nothing that was answered, and on Ctrl-C the
requests in flight finish (without further retries) and are kept. A pair whose
request failed is recorded in the manifest as undecided but not in that file, so a rerun asks it again.
Decisions are made from the stored answers when the manifest is written, so a rerun with another
``threshold`` re-decides without asking; the answer settings (mode, endpoint, model, prompt, temperature,
max_tokens) are the stage's parameters and a rerun with others is refused. The manifest is written
(atomically) only once every pair has an answer or a failure. Inputs are only read.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import logging
import mimetypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from qhawkeye.cli_args import add_dataclass_arguments
from qhawkeye.data.filter_answers import AnswerLog, Collector
from qhawkeye.data.http_client import RequestFailed, post_json, with_retries
from qhawkeye.data.manifest import begin_stage, read_records, write_records

logger = logging.getLogger(__name__)

ANSWERS = "filter_answers.jsonl"
API_KEY_ENV = "QHAWKEYE_API_KEY"

# The release's system turn and question (VLM_filter.py), whitespace tidied; the degraded image comes first.
RELEASE_SYSTEM = (
    "You are an expert at comparing image quality. Your task is to determine if two images appear virtually "
    "identical to human perception, despite one being a processed/degraded version of the other."
)
RELEASE_QUESTION = (
    "\n\nQuestion: Are these two images virtually indistinguishable to human perception?\n"
    "Consider aspects like:\n- Overall visual quality\n- Sharpness and detail\n- Color accuracy\n"
    "- Noise levels\n- Compression artifacts\n- Any other visible differences\n\n"
    "If the differences are so subtle that most people wouldn't notice them in normal viewing conditions, "
    "answer 'yes'.\nIf there are noticeable quality differences that would be apparent to most viewers, "
    "answer 'no'.\n\nIMPORTANT: Reply with ONLY 'yes' or 'no' (lowercase, no other text)."
)
SHORT_QUESTION = "Are these two images virtually indistinguishable in quality? Answer yes or no."


@dataclass
class FilterConfig:
    """How pairs are judged, where the model is, and how hard to try."""

    mode: Literal["score", "vlm", "ssim"] = field(
        metadata={
            "help": "score: compare two quality scores; vlm: ask a chat model the pairwise question; ssim: "
            "flag pairs whose SSIM (full-reference, no model) is at least --ssim-threshold"
        }
    )
    base_url: str | None = field(
        default=None,
        metadata={
            "help": "server root, e.g. http://127.0.0.1:8000 (a trailing /v1 is accepted); required for vlm; "
            "in score mode a `qhawkeye serve` (/v1/score), or none to load the model here"
        },
    )
    api_key: str | None = field(
        default=None,
        repr=False,
        metadata={
            "help": f"sent as 'Authorization: Bearer KEY' (CLI: ${API_KEY_ENV} when absent); never saved"
        },
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": "vlm: the model id sent in each request (default: none sent); score without --base-url: "
            "the model folder to load (required); score with --base-url: must be unset (the server's model)"
        },
    )
    threshold: float = field(
        default=0.5,
        metadata={
            "help": "score mode: flag a pair when |original - degraded| < threshold on [1, 5]. 0.5 is an "
            "eighth of the scale; first-pass degradations usually cost a good model more than a point"
        },
    )
    ssim_threshold: float = field(
        default=0.95,
        metadata={
            "help": "ssim mode: flag a pair when SSIM(original, degraded) >= this. On the bundled photos the "
            "mildest graded distortions (noise std 3, blur radius 0.5, JPEG quality 60, 10% darker) score 0.91 "
            "to 0.999, while the pipeline's first-pass degradations score medians of 0.2 to 0.84 on LIVE-Wild "
            "photos at 192 and 500 px (blur up to 0.95 on smooth ones): 0.95 flags pairs that changed about "
            "as little as the mildest distortions. A pre-filter, not a calibrated perceptual threshold: "
            "review decides"
        },
    )
    prompt: Literal["release", "short"] = field(
        default="release",
        metadata={"help": "vlm: the release's question (degraded image first) or a one-line yes/no question"},
    )
    temperature: float = field(
        default=0.0,
        metadata={"help": "vlm: sampling temperature; 0 gives reproducible answers (release: 0.3)"},
    )
    max_tokens: int | None = field(
        default=None,
        metadata={
            "help": "answer length limit; default 16 in vlm mode (yes/no; release: 10), 512 for the local "
            "scorer; unset with score --base-url (the server's --max-new-tokens applies)"
        },
    )
    concurrency: int = field(default=4, metadata={"help": "requests in flight at once (release: 3)"})
    timeout_s: float = field(default=120.0, metadata={"help": "per-request timeout in seconds"})
    retries: int = field(
        default=4, metadata={"help": "retries after the first attempt, on connection errors, 429 and 5xx"}
    )
    backoff_s: float = field(
        default=1.0, metadata={"help": "first retry delay in seconds; doubles per retry, with jitter"}
    )
    max_backoff_s: float = field(
        default=60.0, metadata={"help": "longest retry delay in seconds (also caps a server's Retry-After)"}
    )
    batch_size: int = field(
        default=8, metadata={"help": "local scorer: pairs per model call (2 images each)"}
    )
    max_pairs: int | None = field(
        default=None, metadata={"help": "ask at most this many pairs in this run; a rerun asks the rest"}
    )

    def __post_init__(self):
        if self.mode not in ("score", "vlm", "ssim"):
            raise ValueError(f"mode must be 'score', 'vlm' or 'ssim', got {self.mode!r}")
        if self.prompt not in ("release", "short"):
            raise ValueError(f"prompt must be 'release' or 'short', got {self.prompt!r}")
        self._check_backend()
        if self.max_tokens is None and self.mode != "ssim" and not self.uses_server_scorer:
            self.max_tokens = 16 if self.mode == "vlm" else 512
        checks = {"concurrency": 1, "retries": 0, "batch_size": 1, "max_tokens": 1, "max_pairs": 0}
        for name, low in checks.items():
            value = getattr(self, name)
            if value is not None and value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if self.threshold <= 0 or self.timeout_s <= 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("threshold and timeout_s must be > 0, backoff_s and max_backoff_s >= 0")
        if not 0 < self.ssim_threshold <= 1:
            raise ValueError(
                f"ssim_threshold must be in (0, 1] (SSIM of identical images is 1), got {self.ssim_threshold}"
            )
        if not 0 <= self.temperature <= 2:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")

    def _check_backend(self) -> None:
        if self.mode == "ssim":
            if self.base_url is not None or self.model is not None or self.max_tokens is not None:
                raise ValueError(
                    "ssim mode computes SSIM here, with no model: leave out --base-url, --model and --max-tokens"
                )
            return
        if self.base_url is not None:
            if not self.base_url.startswith(("http://", "https://")):
                raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
            self.base_url = self.base_url.rstrip("/").removesuffix("/v1")
        if self.mode == "vlm" and self.base_url is None:
            raise ValueError("vlm mode asks a chat endpoint: pass --base-url (e.g. http://127.0.0.1:8000)")
        if self.mode == "score" and self.base_url is None and not self.model:
            raise ValueError(
                "score mode without --base-url loads a model here: pass --model (a folder or 'tiny')"
            )
        if self.uses_server_scorer and (self.model is not None or self.max_tokens is not None):
            raise ValueError(
                "score mode with --base-url uses the server's model and --max-new-tokens: leave out "
                "--model and --max-tokens (or drop --base-url to score here)"
            )

    @property
    def uses_server_scorer(self) -> bool:
        return self.mode == "score" and self.base_url is not None

    def endpoint(self) -> str:
        """Where the answers come from."""
        if self.mode == "ssim":
            return "local: SSIM, luminance, 11x11 Gaussian window (sigma 1.5)"
        if self.base_url is None:
            return f"local scorer: {self.model}"
        return f"{self.base_url}/v1/" + ("score" if self.mode == "score" else "chat/completions")

    def answer_settings(self) -> dict:
        """The settings that decide an answer: the stage's parameters (a rerun must repeat them)."""
        out = {
            "mode": self.mode,
            "endpoint": self.endpoint(),
            "model": self.model,
            "max_tokens": self.max_tokens,
        }
        if self.mode == "vlm":
            out.update(prompt=self.prompt, temperature=self.temperature)
        return out


# ---------------------------------------------------------------------------------------------- answers


def parse_yes_no(text: str | None) -> tuple[bool | None, str | None]:
    """``(flagged, error)`` for a vlm answer: ``yes`` -> True, ``no`` -> False, anything else -> None."""
    word = (text or "").strip().lower()
    word = word[:-1] if word.endswith(".") else word
    if word in ("yes", "no"):
        return word == "yes", None
    return None, f"answer is not 'yes' or 'no': {(text or '')[:80]!r}"


def decide(answer: dict | None, config: FilterConfig, failure: str | None = None) -> dict:
    """The ``filter`` field of one record from its stored answer, or from the reason it has none."""
    if answer is None:
        return {"mode": config.mode, "flagged": None, "raw": None, "error": failure}
    if config.mode == "ssim":
        value, threshold = answer["ssim"], config.ssim_threshold
        return {
            "mode": "ssim",
            "flagged": value >= threshold,
            "raw": value,
            "ssim": value,
            "threshold": threshold,
        }
    if config.mode == "vlm":
        flagged, error = parse_yes_no(answer["raw"])
        out = {"mode": "vlm", "flagged": flagged, "raw": answer["raw"]}
        return out if error is None else {**out, "error": error}
    scores = answer["scores"]
    out = {"mode": "score", "flagged": None, "raw": answer["raw"], "scores": scores}
    if None in scores:
        sides = zip(("original", "degraded"), scores, answer["errors"], strict=True)
        return {**out, "error": "; ".join(f"{side}: {err}" for side, s, err in sides if s is None)}
    difference = round(scores[0] - scores[1], 6)  # 3.3 - 2.8 is 0.5, not 0.4999999999999996
    out.update(flagged=abs(difference) < config.threshold, difference=difference, threshold=config.threshold)
    return out


def score_answer(results: list[dict], pair_id: str) -> dict:
    """A score-mode answer from the two results (``ScoreResult.to_dict()``, original first)."""
    for side, result in zip(("original", "degraded"), results, strict=True):
        if result["status"] == "unreadable":
            raise RequestFailed(f"pair {pair_id}: the {side} image is unreadable: {result['error']}")
    return {
        "raw": [r["text"] for r in results],
        "scores": [r["score"] for r in results],
        "errors": [r["error"] for r in results],
    }


# ---------------------------------------------------------------------------------------------- asking


def _base64(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def _data_url(path: str) -> str:
    return f"data:{mimetypes.guess_type(path)[0] or 'image/png'};base64,{_base64(path)}"


def pair_messages(record: dict, prompt: str) -> list[dict]:
    """The chat messages asking whether ``record``'s two images are indistinguishable."""

    def image(path: str) -> dict:
        return {"type": "image_url", "image_url": {"url": _data_url(path)}}

    def text(words: str) -> dict:
        return {"type": "text", "text": words}

    if prompt == "short":
        content = [image(record["image"]), image(record["degraded"]), text(SHORT_QUESTION)]
        return [{"role": "user", "content": content}]
    content = [
        text("Compare these two images carefully:\n\nImage 1 (Degraded version):"),
        image(record["degraded"]),
        text("\n\nImage 2 (Original version):"),
        image(record["image"]),
        text(RELEASE_QUESTION),
    ]
    return [{"role": "system", "content": RELEASE_SYSTEM}, {"role": "user", "content": content}]


def ask_vlm(record: dict, config: FilterConfig, stop: threading.Event) -> dict:
    """One chat completion for the pair; the answer text as received."""
    body = {
        "messages": pair_messages(record, config.prompt),
        "max_tokens": config.max_tokens,
        "temperature": config.temperature,
    }
    if config.model is not None:
        body["model"] = config.model
    url = config.endpoint()
    call = lambda: post_json(url, body, config.api_key, config.timeout_s)  # noqa: E731
    reply = with_retries(call, config, record["id"], stop)
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as err:
        raise RequestFailed(
            f"{url}: no choices[0].message.content in the response: {str(reply)[:200]}"
        ) from err
    return {"raw": content}


def ask_server_scores(record: dict, config: FilterConfig, stop: threading.Event) -> dict:
    """Both images scored by a ``qhawkeye serve`` in one /v1/score request."""
    images = [{"id": side, "data": _base64(record[side])} for side in ("image", "degraded")]
    url = config.endpoint()
    call = lambda: post_json(url, {"images": images}, config.api_key, config.timeout_s)  # noqa: E731
    reply = with_retries(call, config, record["id"], stop)
    if len(reply.get("results") or []) != 2:
        raise RequestFailed(f"{url}: expected 2 results, got {str(reply)[:200]}")
    return score_answer(reply["results"], record["id"])


def ask_ssim(record: dict, config: FilterConfig, stop: threading.Event) -> dict:
    """SSIM of the pair's degraded image against its original, computed here."""
    from qhawkeye.images import load_image
    from qhawkeye.sample_data.synthetic import ssim

    try:  # an unreadable image is a failure of this pair only (UnreadableImage is a ValueError)
        return {"ssim": round(ssim(load_image(record["image"]), load_image(record["degraded"])), 6)}
    except ValueError as err:
        raise RequestFailed(f"pair {record['id']}: {err}") from err


# ---------------------------------------------------------------------------------------------- running


def _outcome(ask: Callable, record: dict, config: FilterConfig, stop: threading.Event):
    """``(answer, None)`` or ``(None, why)``; other exceptions are bugs and propagate."""
    try:
        return ask(record, config, stop), None
    except (RequestFailed, OSError) as err:  # OSError: an image file that cannot be read
        return None, str(err)


def _ask_concurrently(todo: list[dict], config: FilterConfig, sink: Collector) -> None:
    """Ask over HTTP. On an interruption, requests in flight finish and are saved; queued ones never start."""
    ask = ask_vlm if config.mode == "vlm" else ask_server_scores
    pool, stop = ThreadPoolExecutor(config.concurrency, thread_name_prefix="filter"), threading.Event()
    futures = {pool.submit(_outcome, ask, record, config, stop): record for record in todo}
    saved = set()
    try:
        for future in as_completed(futures):
            saved.add(future)
            sink.save(futures[future], *future.result())
            sink.report()
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        for future, record in futures.items():
            if future not in saved and future.done() and not future.cancelled() and not future.exception():
                sink.save(record, *future.result())


def _ask_locally(todo: list[dict], config: FilterConfig, sink: Collector) -> None:
    """Score with a model loaded here, ``batch_size`` pairs per call."""
    from qhawkeye.scoring.scorer import create_scorer

    scorer = create_scorer(config.model, max_new_tokens=config.max_tokens, batch_size=2 * config.batch_size)
    for start in range(0, len(todo), config.batch_size):
        chunk = todo[start : start + config.batch_size]
        paths = [r[side] for r in chunk for side in ("image", "degraded")]
        results = [r.to_dict() for r in scorer.score_batch(paths, ids=paths)]
        for n, record in enumerate(chunk):
            try:
                sink.save(record, score_answer(results[2 * n : 2 * n + 2], record["id"]), None)
            except RequestFailed as err:
                sink.save(record, None, str(err))
            sink.report()


def _compute_ssim(todo: list[dict], config: FilterConfig, sink: Collector) -> None:
    """SSIM pair by pair; an unreadable image or a size mismatch fails that pair only."""
    stop = threading.Event()
    for record in todo:
        sink.save(record, *_outcome(ask_ssim, record, config, stop))
        sink.report()


def _runner(config: FilterConfig) -> Callable[[list[dict], FilterConfig, Collector], None]:
    if config.mode == "ssim":
        return _compute_ssim
    return _ask_locally if config.base_url is None else _ask_concurrently


def _summary(filters: dict[str, dict], failed: int, config: FilterConfig, **counts) -> dict:
    flags = [f["flagged"] for f in filters.values()]
    decided = {"flagged": flags.count(True), "not_flagged": flags.count(False)}
    undecided = {"undecided": flags.count(None) - failed, "failed": failed}
    return {"mode": config.mode, "endpoint": config.endpoint(), **counts, **decided, **undecided}


def run_filter(
    input_dir: str | Path,
    out_dir: str | Path,
    config: FilterConfig,
    progress: bool = True,
    dry_run: bool = False,
) -> dict:
    """Judge every pair of the degrade stage ``input_dir`` into the new stage folder ``out_dir``.

    Returns the summary: pairs, flagged, not_flagged, undecided (answered, no decision), failed (no
    answer; asked again on a rerun), asked_now, from_checkpoint, left (not asked yet: ``max_pairs``),
    complete (the manifest was written).
    """
    records = read_records(input_dir, need=("id", "group_id", "image", "gt_score", "degraded"))
    out, log = Path(out_dir), AnswerLog(Path(out_dir) / ANSWERS)
    answers = log.load(records)
    stored = len(answers)
    todo = [r for r in records if r["id"] not in answers]
    now = todo if config.max_pairs is None else todo[: config.max_pairs]
    if dry_run:
        return {
            "dry_run": True,
            "mode": config.mode,
            "endpoint": config.endpoint(),
            "pairs": len(records),
            "from_checkpoint": stored,
            "to_ask": len(now),
            "left": len(todo) - len(now),
        }
    begin_stage(out, "filter", config.answer_settings(), source=input_dir)
    bar = tqdm(total=len(now), desc=f"filter ({config.mode})", unit="pair", disable=not progress)
    with log, bar:
        sink = Collector(log, answers, bar)
        if now:
            _runner(config)(now, config, sink)
    done = [r["id"] for r in records if r["id"] in answers or r["id"] in sink.failures]
    filters = {i: decide(answers.get(i), config, sink.failures.get(i)) for i in done}
    left = len(records) - len(filters)
    counts = {"pairs": len(records), "asked_now": sink.asked, "from_checkpoint": stored, "left": left}
    summary = _summary(filters, len(sink.failures), config, **counts)
    threshold = {"score": config.threshold, "ssim": config.ssim_threshold}.get(config.mode)
    summary.update(threshold=threshold, complete=left == 0)
    if left == 0:
        new = [{**r, "filter": filters[r["id"]]} for r in records]
        write_records(out, new, "filter", config.answer_settings(), source=input_dir, summary=summary)
    else:
        logger.warning("%d pairs not asked yet: rerun with the same --out to finish (no manifest yet)", left)
    logger.info("filter: %s", summary)
    return summary


# ---------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``INPUT --out DIR`` and a flag per :class:`FilterConfig` field (the caller adds --dry-run, --quiet)."""
    parser.add_argument("input", help="degrade stage folder")
    parser.add_argument("--out", required=True, help="new stage folder (rerun with the same one to resume)")
    add_dataclass_arguments(parser, FilterConfig)


def config_from_args(args: argparse.Namespace) -> FilterConfig:
    """The :class:`FilterConfig` of parsed flags; the API key falls back to ``$QHAWKEYE_API_KEY``."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(FilterConfig)}
    given["api_key"] = given["api_key"] or os.environ.get(API_KEY_ENV) or None
    return FilterConfig(**given)


def run_from_args(args: argparse.Namespace) -> dict:
    """Run the filter for parsed ``qhawkeye data filter`` flags (with ``dry_run`` and ``quiet``)."""
    return run_filter(args.input, args.out, config_from_args(args), not args.quiet, args.dry_run)
