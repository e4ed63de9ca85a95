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
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from qhawkeye.provenance import umask_mode, write_json_atomic

MANIFEST = "manifest.jsonl"
STAGE = "stage.json"


def manifest_path(path: str | Path) -> Path:
    """A stage folder or a manifest file -> the manifest file."""
    path = Path(path)
    return path / MANIFEST if path.is_dir() else path


def read_records(path: str | Path) -> list[dict]:
    """The records of a stage manifest; errors name the file and line."""
    file = manifest_path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"{file}: no stage manifest here (run the previous `qhawkeye data` stage first)"
        )
    records = []
    for n, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{file}:{n}: not valid JSON ({err.msg}); was this manifest edited by hand?"
            ) from err
    return records


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
        previous = json.loads(info.read_text()).get("stage")
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
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{MANIFEST}.", suffix=".tmp")
    os.chmod(tmp, umask_mode())
    try:
        with os.fdopen(fd, "w") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    info = {"stage": stage, "params": params, "summary": summary or {}}
    if source is not None:
        src = manifest_path(source)
        info["input"] = {"manifest": str(src.resolve()), "sha256": file_sha256(src)}
    write_json_atomic(out / STAGE, info)
    return out / MANIFEST


def begin_stage(out: str | Path, stage: str, params: dict) -> Path:
    """Prepare ``out`` and record the stage's parameters before any file is written.

    A rerun into the same folder resumes only with the same parameters; other parameters are refused, so
    files made under two settings never mix.
    """
    out = prepare_stage_dir(out, stage)
    info = out / STAGE
    if info.is_file():
        previous = json.loads(info.read_text()).get("params")
        if previous != json.loads(json.dumps(params)):
            raise FileExistsError(
                f"{out} was started with other {stage} parameters ({previous}); use a new folder, or the same "
                "parameters to resume"
            )
        return out
    write_json_atomic(info, {"stage": stage, "params": params, "status": "running"})
    return out
