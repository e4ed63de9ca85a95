"""Which pairs of a filter-stage manifest a human reviews, checked and indexed by pair id.

A pair is reviewed when the filter flagged it as looking imperceptible (``filter.flagged`` true) or could not
decide (``filter.flagged`` null): exactly the pairs ``qhawkeye data build`` would otherwise treat with
``--unreviewed``. Pairs the filter passed (``flagged`` false) are not shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qhawkeye.data.manifest import check_contained, manifest_path, read_records


@dataclass(frozen=True)
class ReviewPair:
    """One pair to review; ``original`` and ``degraded`` are the only files the review app serves for it."""

    id: str
    group_id: str
    degradation: str
    original: Path
    degraded: Path

    def to_dict(self) -> dict:
        return {"id": self.id, "group_id": self.group_id, "degradation": self.degradation}


def needs_review(record: dict) -> bool:
    """True for a pair the filter flagged (``flagged`` true) or could not judge (``flagged`` null)."""
    return record["filter"].get("flagged") is not False


def _check(record: dict, where: str) -> None:
    if not isinstance(record.get("filter"), dict):
        raise ValueError(
            f"{where}: no 'filter' field: review reads a filter-stage folder (run `qhawkeye data filter` first)"
        )
    for name in ("id", "image", "degraded"):
        if record.get(name) in (None, ""):
            raise ValueError(f"{where}: field {name!r} is missing; was this manifest edited by hand?")


def select_pairs(records: list[dict], where: str | Path) -> list[ReviewPair]:
    """The pairs to review among ``records`` (read from ``where``, named in errors), in manifest order."""
    pairs, seen = [], set()
    for n, record in enumerate(records, start=1):
        _check(record, f"{where}: record {n}")
        pair_id = str(record["id"])
        if pair_id in seen:
            raise ValueError(f"{where}: record {n}: id {pair_id!r} appears twice; ids must be unique")
        seen.add(pair_id)
        if needs_review(record):
            pairs.append(
                ReviewPair(
                    id=pair_id,
                    group_id=str(record.get("group_id", pair_id)),
                    degradation=str(record.get("degradation", "")),
                    original=Path(record["image"]),
                    degraded=Path(record["degraded"]),
                )
            )
    return pairs


def review_pairs(stage_dir: str | Path) -> list[ReviewPair]:
    """The pairs to review in the filter stage ``stage_dir`` (a folder or its manifest), in manifest order.
    Every image path must lie under the folders the stage chain recorded (the app serves nothing else)."""
    file = manifest_path(stage_dir)
    records = read_records(file, need=("id", "group_id", "image", "gt_score", "degraded"))
    pairs = select_pairs(records, file)
    check_contained(records, file)
    return pairs
