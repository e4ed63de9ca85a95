"""Stage manifests: the one record format every `qhawkeye data` stage reads and writes.

A stage reads the previous stage's ``manifest.jsonl`` and writes a **new** folder with its own
``manifest.jsonl`` (one JSON object per pair) and ``stage.json`` (which stage, its parameters, the input
manifest's path and sha256, counts). Nothing is edited in place; a stage refuses to write into a folder that
holds another stage's output.

Record fields, by the stage that adds them:

- ingest: ``id``, ``group_id`` (pairs the original with its degraded copy), ``source`` (dataset name),
  ``image`` (absolute path of the original), ``mos`` (the label as written), ``mos_range``, ``lower_better``,
  ``gt_score`` (the label mapped to [1, 5] from the fixed range).
- degrade: ``degraded`` (absolute path of the degraded copy), ``degradation`` (e.g. ``"noise"``),
  ``degradation_seed``.
- filter: ``filter`` = ``{"mode", "flagged", "raw", ...}``: ``flagged`` True when the pair looked
  imperceptible; ``raw`` is the model's answer(s) as received.
- review: ``review`` = ``{"decision": "imperceptible" | "perceptible" | null, "votes": {reviewer: decision}}``.
- redegrade: ``degraded`` points to the new file, ``first_degraded`` to the first one, ``degradation``
  becomes ``"first+second"`` (e.g. ``"noise+blur"``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from pathlib import Path

from qhawkeye import SCORE_MAX, SCORE_MIN
from qhawkeye.atomic import atomic_file, write_json_atomic

MANIFEST = "manifest.jsonl"
STAGE = "stage.json"


def manifest_path(path: str | Path) -> Path:
    """A stage folder or a manifest file -> the manifest file."""
    path = Path(path)
    return path / MANIFEST if path.is_dir() else path


_NUMBER = (int, float)
RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,), "group_id": (str,), "source": (str,), "image": (str,), "mos": _NUMBER,
    "mos_range": (list,), "lower_better": (bool,), "gt_score": _NUMBER, "degraded": (str,),
    "degradation": (str,), "degradation_seed": (int,), "filter": (dict,), "review": (dict,),
    "first_degraded": (str,),
}  # fmt: skip
"""The record schema: every known field's JSON type. Unknown fields are kept as they are."""

REQUIRED = ("id", "group_id", "image", "gt_score")
"""Fields every stage's records carry (ingest writes them)."""

STAGE_FIELDS = {
    "ingest": REQUIRED,
    "degrade": (*REQUIRED, "degraded", "degradation"),
    "redegrade": (*REQUIRED, "degraded", "degradation", "first_degraded"),
    "filter": (*REQUIRED, "degraded", "degradation", "filter"),
    "review": (*REQUIRED, "degraded", "degradation", "review"),
}
"""What a reader may rely on after each stage (``first_degraded`` only on redegraded pairs)."""


def read_records(path: str | Path, need: tuple[str, ...] = REQUIRED) -> list[dict]:
    """The records of a stage manifest, validated: one JSON object per line, every field in
    :data:`RECORD_FIELDS` of its type, the fields in ``need`` present, ``gt_score`` finite and in [1, 5],
    ids and group ids unique. Any problem is one ``ValueError`` naming the file, the line and the field."""
    file = manifest_path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"{file}: no stage manifest here (run the previous `qhawkeye data` stage first)"
        )
    if file.suffix.lower() in (".csv", ".txt", ".json", ".yaml", ".yml"):
        raise ValueError(
            f"{file}: this is not a stage manifest ({MANIFEST} in a `qhawkeye data` stage folder); a label file "
            "goes to `qhawkeye data ingest` first"
        )
    records: list[dict] = []
    seen: dict[tuple[str, str], int] = {}
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{file}: not a UTF-8 text file ({err.reason}); is this a stage manifest?") from None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{file}:{n}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{where}: not valid JSON ({err.msg}); was this manifest edited by hand?"
            ) from None
        records.append(check_record(record, where, need))
        for key in ("id", "group_id"):
            value = record[key]
            if (key, value) in seen:
                raise ValueError(
                    f"{where}: duplicate {key} {value!r} (first on line {seen[(key, value)]}); every pair needs its "
                    f"own {key}, or pairs join an image to another image's degraded copy"
                )
            seen[(key, value)] = n
    return records


def check_record(record, where: str, need: tuple[str, ...] = REQUIRED) -> dict:
    """One manifest record against :data:`RECORD_FIELDS`; returns it or raises ``ValueError`` at ``where``."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    missing = [key for key in need if key not in record]
    if missing:
        raise ValueError(
            f"{where}: record {record.get('id')!r} lacks {missing}; was it made by an earlier stage than the "
            "one this step reads (or edited by hand)?"
        )
    for key, value in record.items():
        kinds = RECORD_FIELDS.get(key)
        if kinds is None or (value is None and key in ("filter", "review")):
            continue
        bad = not isinstance(value, kinds) or (kinds == _NUMBER and isinstance(value, bool))
        if bad:
            names = " or ".join(k.__name__ for k in kinds)
            raise ValueError(f"{where}: field {key!r} must be {names}, got {type(value).__name__} {value!r}")
    score = record.get("gt_score")
    if score is not None and not (math.isfinite(score) and SCORE_MIN <= score <= SCORE_MAX):
        raise ValueError(f"{where}: field 'gt_score' must be a finite number in [1, 5], got {score!r}")
    return record


def read_stage_info(folder: str | Path) -> dict:
    """A stage folder's ``stage.json``, checked: a JSON object with a string ``stage`` and a ``params`` object."""
    info = Path(folder) / STAGE
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{info}: not valid JSON ({err}); remove the folder or restore the file") from None
    if not isinstance(data, dict) or not isinstance(data.get("stage"), str):
        raise ValueError(f"{info}: not a qhawkeye stage record (no 'stage' name); choose another folder")
    if not isinstance(data.get("params", {}), dict):
        raise ValueError(f"{info}: field 'params' must be an object")
    return data


def stage_roots(folder: str | Path) -> list[Path]:
    """The folders the images of stage ``folder`` may come from, by following its ``stage.json`` input chain
    back to ingest: ingest's recorded ``image_roots``, and the ``images/`` folder of every degrade and redegrade
    stage on the way. A folder whose chain cannot be followed raises ``ValueError`` saying why."""
    roots: list[Path] = []
    current, seen = manifest_path(folder).parent, set()
    while True:
        if current in seen:
            raise ValueError(f"{current}: its {STAGE} inputs form a loop")
        seen.add(current)
        if not (current / STAGE).is_file():
            raise ValueError(
                f"{current}: no {STAGE}; image paths cannot be checked against the stage's folders"
            )
        info = read_stage_info(current)
        if info["stage"] in ("degrade", "redegrade"):
            roots.append((current / "images").resolve())
        if info["stage"] == "ingest":
            recorded = info.get("params", {}).get("image_roots")
            if not isinstance(recorded, list) or not all(isinstance(r, str) for r in recorded):
                raise ValueError(
                    f"{current / STAGE}: no image_roots (made by an older qhawkeye?); run `qhawkeye data ingest` "
                    "again into a new folder"
                )
            return roots + [Path(r) for r in recorded]
        source = (info.get("input") or {}).get("manifest")
        if not isinstance(source, str):
            raise ValueError(f"{current / STAGE}: no input manifest recorded; cannot trace its images")
        current = Path(source).parent


def check_contained(
    records: list[dict], folder: str | Path, keys: tuple[str, ...] = ("image", "degraded")
) -> None:
    """Refuse a record whose image paths (symlinks resolved) lie outside the folders the stage chain recorded
    (:func:`stage_roots`): a hand-edited manifest cannot make the review app or ``build`` read other files."""
    roots = stage_roots(folder)
    for record in records:
        for key in keys:
            if key not in record:
                continue
            path = Path(record[key]).resolve()
            if not any(path.is_relative_to(root) for root in roots):
                raise ValueError(
                    f"{manifest_path(folder)}: record {record.get('id')!r}: {key} {record[key]!r} lies outside the "
                    f"folders its stages recorded ({', '.join(map(str, roots))}); was the manifest edited by hand?"
                )


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_stage_dir(out: str | Path, stage: str) -> Path:
    """Create ``out`` for ``stage``; refuse a folder holding another stage's output or unrelated files."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        info = out / STAGE
        if not info.is_file():
            raise FileExistsError(f"{out} is not empty and holds no {STAGE}: choose an empty or new folder")
        previous = read_stage_info(out).get("stage")
        if previous != stage:
            raise FileExistsError(
                f"{out} holds the output of stage {previous!r}; choose another folder for {stage!r}"
            )
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_records(
    out: str | Path,
    records: Iterable[dict],
    stage: str,
    params: dict,
    source: str | Path | None = None,
    summary: dict | None = None,
) -> Path:
    """Write ``manifest.jsonl`` (atomically) and ``stage.json`` into the stage folder ``out``."""
    out = Path(out)
    with atomic_file(out / MANIFEST, "w") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    info = {"stage": stage, "params": params, "summary": summary or {}}
    if source is not None:
        src = manifest_path(source)
        info["input"] = {"manifest": str(src.resolve()), "sha256": file_sha256(src)}
    write_json_atomic(out / STAGE, info)
    return out / MANIFEST


def begin_stage(out: str | Path, stage: str, params: dict, source: str | Path | None = None) -> Path:
    """Prepare ``out`` and record the stage's parameters and input before any file is written.

    A rerun into the same folder resumes only with the same parameters and the same input manifest (by its
    sha256); anything else is refused, so files made under two settings or from two inputs never mix.
    """
    out = prepare_stage_dir(out, stage)
    info = out / STAGE
    given = None
    if source is not None:
        src = manifest_path(source)
        given = {"manifest": str(src.resolve()), "sha256": file_sha256(src)}
    if info.is_file():
        recorded = read_stage_info(out)
        previous = recorded.get("params")
        if previous != json.loads(json.dumps(params)):
            raise FileExistsError(
                f"{out} was started with other {stage} parameters ({previous}); use a new folder, or the same "
                "parameters to resume"
            )
        before = recorded.get("input")
        if given is not None and isinstance(before, dict) and before.get("sha256") != given["sha256"]:
            raise FileExistsError(
                f"{out} was made from another input ({before.get('manifest')}, sha256 "
                f"{str(before.get('sha256'))[:12]}...), not {given['manifest']} (sha256 {given['sha256'][:12]}...); "
                "use a new folder for this input, or the same input to resume"
            )
        return out
    start = {"stage": stage, "params": params, "status": "running"}
    if given is not None:
        start["input"] = given
    write_json_atomic(info, start)
    return out
