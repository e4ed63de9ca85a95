"""`qhawkeye score PATHS...`: score images, folders or manifests into a resumable JSONL/CSV file."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from qhawkeye.scoring.io import InputItem, ResultFile, collect_inputs
from qhawkeye.scoring.scorer import Scorer, ScorerConfig, load_scorer

logger = logging.getLogger(__name__)


def score_items(
    scorer: Scorer, items: Sequence[InputItem], out: ResultFile | None, progress: bool = True
) -> Counter:
    """Score the items not yet in ``out`` (all of them when ``out`` is None, printing JSONL to stdout)."""
    todo = [item for item in items if out is None or item.id not in out.done]
    counts = Counter(skipped=len(items) - len(todo))
    paths = {item.id: item.path for item in todo}
    chunk = max(1, scorer.config.batch_size // scorer.config.draws)
    with tqdm(total=len(todo), desc="scoring", unit="img", disable=not progress) as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            results = scorer.score_batch([i.path for i in part], [i.id for i in part])
            counts.update(r.status for r in results)
            if out is not None:
                out.append(results, paths)
            else:
                for r in results:
                    sys.stdout.write(json.dumps({"id": r.id, "path": str(paths[r.id]), **r.to_dict()}) + "\n")
                sys.stdout.flush()
            bar.update(len(part))
    return counts


def run(
    paths: Sequence[str],
    config: ScorerConfig,
    out: str | None = None,
    fmt: str | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    """Collect inputs, load the model once, score what is not done yet; returns a summary."""
    items = collect_inputs(paths)
    if not items:
        raise ValueError(f"no images found in {list(paths)} (looked for image files, folders and manifests)")
    if limit is not None:
        items = items[:limit]
    start = time.perf_counter()
    scorer = load_scorer(config)
    result_file = ResultFile(out, scorer.describe(), fmt) if out else None
    counts = score_items(scorer, items, result_file, progress)
    seconds = time.perf_counter() - start
    scored = sum(counts[s] for s in ("ok", "parse_failure", "unreadable"))
    summary = {
        "images": len(items),
        "already_done": counts["skipped"],
        "scored_now": scored,
        "ok": counts["ok"],
        "parse_failures": counts["parse_failure"],
        "unreadable": counts["unreadable"],
        "seconds": round(seconds, 2),
        "output": str(out) if out else None,
        "model": scorer.describe()["model"],
        "model_description": scorer.describe().get("description"),
    }
    if result_file is not None:  # the whole file, this run and earlier ones
        statuses = Counter(row["status"] for row in result_file.done.values())
        summary["file_totals"] = dict(statuses)
    logger.info("score summary: %s", summary)
    return summary


def write_summary(summary: dict, stream=None) -> None:
    """The human-readable end-of-run lines (to stderr by default)."""
    stream = stream or sys.stderr
    stream.write(
        f"{summary['images']} images: {summary['already_done']} already done, {summary['scored_now']} scored now "
        f"({summary['ok']} ok, {summary['parse_failures']} parse failures, {summary['unreadable']} unreadable) "
        f"in {summary['seconds']} s\n"
    )
    if summary.get("model"):
        about = f" ({summary['model_description']})" if summary.get("model_description") else ""
        stream.write(f"scored by: {summary['model']}{about}\n")
    if summary["output"]:
        stream.write(f"results: {Path(summary['output']).resolve()}\n")
