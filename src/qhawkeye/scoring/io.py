"""What `qhawkeye score` reads and writes: inputs from files, folders and manifests; resumable result files.

Inputs: image files, folders (searched recursively, sorted, for the suffixes in :data:`IMAGE_SUFFIXES`) and
JSON/JSONL manifests (the DeQA-Score list ``{"id", "images": [path]}``, or objects with ``image``/``path``;
relative paths are relative to the manifest's folder). An image's id is its manifest id, its path relative
to the folder it was found in, or the path as given.

Outputs: JSONL (one object per image) or CSV, appended as results arrive and flushed per batch. A sidecar
``<out>.run.json`` records the model, prompt preset and decoding; a rerun with the same settings skips the ids
already in the file (a partial last line left by a killed run is cut off first), and a rerun with different
settings is refused rather than mixing two models' scores in one file.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from qhawkeye.images import IMAGE_SUFFIXES, display_name
from qhawkeye.provenance import write_json_atomic
from qhawkeye.scoring.scorer import ScoreResult

CSV_COLUMNS = [
    "id", "path", "score", "status", "parsed", "std", "uncertainty", "n_parsed", "n_draws", "clipped", "error",
    "text",
]  # fmt: skip


@dataclass(frozen=True)
class InputItem:
    id: str
    path: Path


def collect_inputs(paths: Sequence[str | Path]) -> list[InputItem]:
    """Expand files, folders and manifests into items; a duplicate id is an error naming both sources."""
    items: list[InputItem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            items += [InputItem(display_name(p.relative_to(path)), p) for p in files]
        elif path.suffix.lower() in (".json", ".jsonl"):
            items += read_manifest(path)
        elif path.suffix.lower() in IMAGE_SUFFIXES or path.exists():
            items.append(
                InputItem(display_name(raw), path)
            )  # a missing file is reported per image as unreadable
        else:
            raise FileNotFoundError(f"{raw}: no such file or folder")
    seen: dict[str, Path] = {}
    for item in items:
        if item.id in seen:
            raise ValueError(
                f"duplicate image id {item.id!r} ({seen[item.id]} and {item.path}); ids must be unique"
            )
        seen[item.id] = item.path
    return items


def read_manifest(path: Path) -> list[InputItem]:
    """Items of a JSON list or JSONL manifest (see the module docstring for the accepted row shapes).

    Errors name the file and the row (JSON: "row N", counted from 1) or the line (JSONL: "line N" of the file).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}: not a UTF-8 text file ({err.reason}); a manifest is JSON or JSONL"
        ) from None
    if path.suffix.lower() != ".json":
        return [_manifest_item(path, where, row) for where, row in _jsonl_rows(path, text)]
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of objects")
    return [_manifest_item(path, f"row {n}", row) for n, row in enumerate(rows, start=1)]


def _jsonl_rows(path: Path, text: str) -> list[tuple[str, object]]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"line {lineno}", json.loads(line)))
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path}: line {lineno} is not valid JSON ({err.msg}, column {err.colno})"
            ) from err
    return rows


def _manifest_item(path: Path, where: str, row) -> InputItem:
    if not isinstance(row, dict):
        raise ValueError(f"{path}: {where} is not an object")
    image = row.get("images", [None])[0] if isinstance(row.get("images"), list) else None
    image = image or row.get("image") or row.get("path")
    if not isinstance(image, str):
        raise ValueError(f'{path}: {where} has no image path (give "images": [path], "image" or "path")')
    file = Path(image) if Path(image).is_absolute() else path.parent / image
    return InputItem(str(row.get("id", image)), file)


class ResultFile:
    """An append-only, resumable JSONL or CSV file of :class:`ScoreResult` rows."""

    def __init__(self, path: str | Path, run: dict, fmt: str | None = None):
        self.path = Path(path)
        self.fmt = fmt or ("csv" if self.path.suffix.lower() == ".csv" else "jsonl")
        if self.fmt not in ("jsonl", "csv"):
            raise ValueError(f"output format must be jsonl or csv, got {self.fmt!r}")
        self.sidecar = self.path.with_name(self.path.name + ".run.json")
        self._check_run(run)
        self.done = self._load_done()

    def _check_run(self, run: dict) -> None:
        if self.path.exists() and self.sidecar.is_file():
            try:
                previous = json.loads(self.sidecar.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(
                    f"{self.sidecar}: not valid JSON ({err}); it records how {self.path} was made: restore it, or "
                    "move both aside and rerun"
                ) from None
            if previous != run:
                diff = sorted(k for k in set(previous) | set(run) if previous.get(k) != run.get(k))
                raise FileExistsError(
                    f"{self.path} holds scores made with other settings ({', '.join(diff)} differ, see "
                    f"{self.sidecar}); choose another output file or delete that one to start over"
                )
        elif self.path.exists() and self.path.stat().st_size > 0:
            raise FileExistsError(
                f"{self.path} exists but was not written by qhawkeye score; choose another file"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.sidecar, run)

    def _load_done(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        if self.fmt == "csv":
            _cut_partial_csv_record(self.path)
        else:
            _cut_partial_line(self.path)
        with self.path.open(newline="", encoding="utf-8") as f:
            if self.fmt == "csv":
                rows = list(csv.DictReader(f))
            else:
                rows = [row for _, row in _jsonl_rows(self.path, f.read())]
        done: dict[str, dict] = {}
        first: dict[str, int] = {}
        for n, row in enumerate(rows, start=1):
            if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not row["id"]:
                raise ValueError(
                    f"{self.path}: record {n} has no id: not a qhawkeye score file, or damaged; move it aside "
                    "and rerun (the sidecar .run.json goes with it)"
                )
            if row["id"] in first:
                raise ValueError(
                    f"{self.path}: record {n} repeats the id {row['id']!r} of record {first[row['id']]}: the file "
                    "was edited or two runs were joined; keep one row per id, or move it aside and rerun"
                )
            first[row["id"]] = n
            done[row["id"]] = row
        return done

    def append(self, results: Iterable[ScoreResult], paths: dict[str, Path]) -> None:
        """Append rows and flush them to disk (a crash loses at most the batch being written)."""
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="", encoding="utf-8") as f:
            if self.fmt == "csv":
                writer = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
                if new:
                    writer.writeheader()
            for result in results:
                row = {"id": result.id, "path": display_name(paths.get(result.id, "")), **result.to_dict()}
                if self.fmt == "csv":
                    writer.writerow(row)
                else:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                self.done[result.id] = row
            f.flush()
            os.fsync(f.fileno())


def _cut_partial_line(path: Path) -> None:
    """Truncate a file to its last newline (a killed writer can leave half a line)."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _cut_partial_csv_record(path: Path) -> None:
    """Truncate a CSV file after its last complete record. A record ends at a newline *outside* quotes: an
    answer text may hold newlines, so a writer killed inside a quoted field leaves a newline that is not a
    record's end (cutting at it would leave half a row to be read as a scored image, or to swallow the next)."""
    data = path.read_bytes()
    inside, end = False, 0
    for i, byte in enumerate(data):  # UTF-8 never uses the bytes of '"' or '\n' inside a character
        if byte == 0x22:
            inside = not inside  # an escaped quote ("") toggles twice
        elif byte == 0x0A and not inside:
            end = i + 1
    if end < len(data):
        with path.open("r+b") as f:
            f.truncate(end)
