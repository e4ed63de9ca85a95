"""`qhawkeye data ingest`: read a label file through a benchmark card, validate every row, write the first manifest.

The label file is described by a card (:mod:`qhawkeye.labels`: a built-in name or a YAML card),
or ad hoc by ``--labels FILE --mos-range LO HI [--lower-better]``. Every row is checked: the label parses and
lies in the card's fixed range, the id is unique, the image exists and decodes. All problems are reported
with their row; if any row is bad nothing is written, unless ``skip_bad`` is set, which drops and lists them.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from qhawkeye.data.manifest import begin_stage, file_sha256, write_records
from qhawkeye.labels import BenchmarkCard, BenchmarkItem, checked_rows, resolve_card

logger = logging.getLogger(__name__)


@dataclass
class IngestConfig:
    """Where the labels are and how to read them."""

    card: str | None = field(
        default=None, metadata={"help": "benchmark card: a built-in name or a YAML card"}
    )
    data_root: str | None = field(default=None, metadata={"help": "folder the card's paths are relative to"})
    labels: str | None = field(
        default=None, metadata={"help": "label file (DeQA JSON, JSONL or CSV) instead of a card"}
    )
    mos_range: tuple[float, float] | None = field(
        default=None, metadata={"help": "the label file's fixed range LO HI (with --labels)"}
    )
    lower_better: bool = field(default=False, metadata={"help": "labels are lower-better (with --labels)"})
    name: str | None = field(
        default=None, metadata={"help": "source name (default: the card's or the file's)"}
    )
    skip_bad: bool = field(default=False, metadata={"help": "drop bad rows (listed) instead of stopping"})
    workers: int = field(default=4, metadata={"help": "threads decoding images for the check"})

    def resolve(self) -> BenchmarkCard:
        if self.card and self.labels:
            raise ValueError("give either --card or --labels, not both")
        if self.card:
            return resolve_card(self.card, self.data_root)
        if not self.labels or self.mos_range is None:
            raise ValueError(
                "give --card CARD, or --labels FILE with --mos-range LO HI (the file's fixed range)"
            )
        path = Path(self.labels)
        fmt = {".csv": "csv", ".jsonl": "jsonl"}.get(path.suffix.lower(), "deqa")
        return BenchmarkCard(
            name=self.name or path.stem, label_file=str(path.resolve()),
            image_root=str(Path(self.data_root or path.parent).resolve()), format=fmt,
            mos_range=tuple(self.mos_range), lower_better=self.lower_better,
            image_column="image" if fmt != "deqa" else None,
        )  # fmt: skip


def _check_image(item: BenchmarkItem) -> str | None:
    from qhawkeye.images import UnreadableImage, load_image

    try:
        load_image(item.image)
    except UnreadableImage as err:
        return f"image unreadable: {err}"
    return None


def validate(
    card: BenchmarkCard, workers: int = 4, progress: bool = True
) -> tuple[list[BenchmarkItem], list[str]]:
    """All rows that pass, and one message per problem (file, row, id, what to do)."""
    items, problems, seen = [], [], {}
    for where, got in checked_rows(card):
        if isinstance(got, ValueError):
            problems.append(str(got))
        elif got.id in seen:
            problems.append(f"{card.label_file}: {where}: duplicate id {got.id!r} (first at {seen[got.id]})")
        else:
            seen[got.id] = where
            items.append(got)
    with ThreadPoolExecutor(workers) as pool:
        checks = tqdm(
            pool.map(_check_image, items), total=len(items), desc="checking images", disable=not progress
        )
        bad_images = {item.id: msg for item, msg in zip(items, checks, strict=True) if msg}
    problems += [f"{card.label_file}: id {i!r}: {msg}" for i, msg in bad_images.items()]
    return [item for item in items if item.id not in bad_images], problems


def image_roots(card: BenchmarkCard, items: list[BenchmarkItem]) -> list[str]:
    """The folders the stage's originals lie in: the card's image root, plus the folder of each absolute image
    path outside it. Later stages (review, build) read originals only from under these."""
    root = Path(card.image_root).resolve()
    roots = [root]
    for item in items:
        folder = Path(item.image).resolve().parent
        if not folder.is_relative_to(root) and folder not in roots:
            roots.append(folder)
    return [str(r) for r in roots]


def record(card: BenchmarkCard, item: BenchmarkItem) -> dict:
    return {
        "id": item.id,
        "group_id": f"{card.name}/{item.id}",
        "source": card.name,
        "image": str(Path(item.image).resolve()),
        "mos": item.label_raw,
        "mos_range": list(card.mos_range),
        "lower_better": card.lower_better,
        "gt_score": item.label,
    }


def run_ingest(config: IngestConfig, out: str | Path, progress: bool = True, dry_run: bool = False) -> dict:
    """Validate and write the ingest manifest; returns the summary (also written to stage.json)."""
    card = config.resolve().resolved(config.data_root)
    items, problems = validate(card, config.workers, progress)
    summary = {
        "source": card.name,
        "rows": len(items) + len(problems),
        "kept": len(items),
        "bad": len(problems),
    }
    if problems and not config.skip_bad:
        listing = "\n  ".join(problems[:50]) + (
            f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        )
        raise ValueError(
            f"{len(problems)} bad rows in {card.label_file}; nothing was written. Fix them, or pass --skip-bad "
            f"to drop them:\n  {listing}"
        )
    if problems:
        summary["skipped"] = problems
        logger.warning("skipping %d bad rows:\n  %s", len(problems), "\n  ".join(problems))
    if not items:
        what = "holds no rows" if not problems else "has no usable row (every row was bad and skipped)"
        raise ValueError(f"{card.label_file} {what}: nothing to ingest. Point --labels at the label file of "
                         "the images (DeQA-Score JSON, JSONL or CSV with a score column).")  # fmt: skip
    if dry_run:
        return {**summary, "dry_run": dry_run}
    params = {"card": card.name, "label_file": str(card.label_file), "mos_range": list(card.mos_range),
              "lower_better": card.lower_better, "image_roots": image_roots(card, items),
              "label_file_sha256": file_sha256(card.label_file), "skip_bad": config.skip_bad}  # fmt: skip
    begin_stage(out, "ingest", params)  # a rerun into the same folder must come from the same labels
    write_records(out, (record(card, item) for item in items), "ingest", params, summary=summary)
    return summary
