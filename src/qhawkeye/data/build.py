"""`qhawkeye data build`: one Hugging Face training dataset from one or more stage manifests.

Columns: ``image`` (the original), ``degraded_image`` (its partner), ``gt_score`` (the original's label on
[1, 5]; a degraded copy never gets a label), ``group_id``, ``degradation``, ``source``, ``id`` and
``prompt``; image bytes are embedded, so the dataset does not depend on the pipeline's folders. Several
sources (each ingested with its own card) build into one set.

Which pairs go in:
- a pair never flagged by the filter (or built before any filter ran): kept;
- a flagged pair the reviewers confirmed *perceptible*: kept as it is;
- a pair confirmed *imperceptible*: kept only once redegraded (``first_degraded`` set), else dropped;
- a flagged pair nobody reviewed, the reviewers tied, or the filter could not decide (``flagged: null``):
  the explicit ``unreviewed`` choice: ``keep`` or ``drop``. There is no default that hides this.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from qhawkeye import prompts
from qhawkeye.data.manifest import STAGE_FIELDS, check_contained, read_records
from qhawkeye.images import portable_bytes
from qhawkeye.provenance import umask_mode

logger = logging.getLogger(__name__)


def selection(record: dict, unreviewed: str) -> str:
    """``"keep"`` or the reason to drop the pair (see the module docstring)."""
    decision = (record.get("review") or {}).get("decision")
    if record.get("first_degraded"):
        return "keep"  # redegraded: a second, stronger degradation on top of the first
    if decision == "imperceptible":
        return "drop: confirmed imperceptible, not redegraded"
    if decision == "perceptible":
        return "keep"
    if (record.get("filter") or {"flagged": False}).get("flagged") is False:
        return "keep"
    return "keep" if unreviewed == "keep" else "drop: flagged or undecided, not reviewed (--unreviewed drop)"


def _rows(records: list[dict]):
    messages = prompts.build_messages()
    for r in records:
        image, image_name = portable_bytes(
            r["image"]
        )  # 16-bit, CMYK, EXIF-rotated: as the degrade stage saw it
        degraded, degraded_name = portable_bytes(r["degraded"])
        yield {
            "image": {"bytes": image, "path": image_name},
            "degraded_image": {"bytes": degraded, "path": degraded_name},
            "gt_score": float(r["gt_score"]),
            "group_id": r["group_id"],
            "degradation": r["degradation"],
            "source": r["source"],
            "id": str(r["id"]),
            "prompt": messages,
        }


def run_build(
    inputs: list[str | Path], out: str | Path, unreviewed: str | None, dry_run: bool = False
) -> dict:
    """Select pairs from every input manifest and save the dataset to ``out`` (atomically)."""
    if unreviewed not in ("keep", "drop"):
        raise ValueError("choose --unreviewed keep or --unreviewed drop: what to do with flagged pairs nobody "
                         "reviewed (or reviewers tied on, or the filter could not decide)")  # fmt: skip
    records, reasons = [], Counter()
    for source in inputs:
        rows = read_records(source, need=STAGE_FIELDS["degrade"])  # build from the degrade stage or later
        check_contained(rows, source)  # only images under the folders the stages recorded are embedded
        for r in rows:
            verdict = selection(r, unreviewed)
            reasons[verdict] += 1
            if verdict == "keep":
                records.append(r)
    _check_groups(records)
    summary = _summary(records, reasons, unreviewed)
    if dry_run:
        return {**summary, "dry_run": True}
    if not records:
        raise ValueError(f"no pairs selected from {list(map(str, inputs))}: {dict(reasons)}")
    _save(records, Path(out))
    return summary


def _check_groups(records: list[dict]) -> None:
    seen = set()
    for r in records:
        if r["group_id"] in seen:
            raise ValueError(
                f"group id {r['group_id']!r} appears twice across the inputs; build each source once"
            )
        seen.add(r["group_id"])


def _summary(records: list[dict], reasons: Counter, unreviewed: str) -> dict:
    return {
        "pairs": len(records),
        "per_source": dict(Counter(r["source"] for r in records)),
        "per_degradation": dict(sorted(Counter(r["degradation"] for r in records).items())),
        "filtered": sum(bool((r.get("filter") or {}).get("flagged")) for r in records),
        "reviewed": sum((r.get("review") or {}).get("decision") is not None for r in records),
        "redegraded": sum("first_degraded" in r for r in records),
        "selection": dict(reasons),
        "unreviewed": unreviewed,
    }


def _save(records: list[dict], out: Path) -> None:
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new folder (outputs are never overwritten)")
    text = {"content": Value("string"), "role": Value("string")}
    features = Features({
        "image": ImageFeature(), "degraded_image": ImageFeature(), "gt_score": Value("float32"),
        "group_id": Value("string"), "degradation": Value("string"), "source": Value("string"),
        "id": Value("string"), "prompt": [text],
    })  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    os.chmod(tmp, umask_mode(directory=True))
    try:
        data = Dataset.from_generator(_rows, gen_kwargs={"records": records}, features=features,
                                      cache_dir=str(tmp / "cache"))  # fmt: skip
        data.save_to_disk(str(tmp / "data"))
        os.replace(tmp / "data", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built %d pairs into %s", len(records), out)
