"""Benchmark cards (IQA semantics as data) and the loading of their label files into items on [1, 5].

A card names a label file, the folder its image paths are relative to, the file's format, and the label
file's **fixed** score range and direction. Built-in cards live in ``benchmarks.yaml`` beside this module (the
DeQA-Score test metas of the eight benchmarks of the evaluation protocol); a user card is a YAML file holding
one card (see ``configs/benchmarks/livec_700.yaml``).

Where relative paths resolve
- built-in cards: against ``data_root`` (``--data-root``), the folder holding the DeQA-Score data
  (``Data-DeQA-Score/`` with ``KONIQ/``, ``SPAQ/``, ...). Without it they cannot be located: an error says so.
- user cards: against ``data_root`` when one is given, else against the card file's folder. A card kept beside
  its data needs no flag; a card kept in the repository for data elsewhere is run with ``--data-root``.
- image paths inside the label file are relative to the card's (resolved) ``image_root``; absolute ones are
  kept. Images are not opened here: scoring reports unreadable images one by one.

Label mapping (SPEC "Rewards"), from the card's range, never from the rows loaded:
``s' = 1 + 4 (s - lo) / (hi - lo)``, or ``1 + 4 (hi - s) / (hi - lo)`` for lower-better labels. A label
outside the card's range is an error (a tolerance of 1e-6 of the span absorbs float rounding; such labels are
clipped to [1, 5] after mapping). When every label lies in [1, 5] under a wider card a warning says the labels
look already mapped.

Formats
- ``deqa``: a JSON list of objects ``{"id", "images": [path] or "image": path, "gt_score", ...}`` (extra keys
  ignored; ``score_column`` picks the score key, ``image_column`` the image key when it is neither default).
- ``csv``: a pyiqa-style meta CSV with a header; the card names its columns.
- ``jsonl``: one JSON object per line; the card names its keys.
``id_column`` may be null for csv/jsonl files without ids: the image path as written then serves as the id.

Distortion types come from ``type_column`` (a key/column) or ``type_from_filename`` (a regular expression
searched in each image path as written in the label file; its first group is the type), never both. A path the
expression does not match gets no type, and a warning counts such rows.
"""

from __future__ import annotations

import csv
import difflib
import json
import logging
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from qhawkeye import SCORE_MAX, SCORE_MIN
from qhawkeye.registry import lookup

logger = logging.getLogger(__name__)

FORMATS = ("deqa", "csv", "jsonl")
RANGE_TOLERANCE = 1e-6
"""Labels may exceed the card's range by this fraction of its span (float rounding) before it is an error."""
_REQUIRED_KEYS = ("name", "label_file", "image_root", "format", "mos_range", "lower_better")
_DATA_ROOT_HINT = (
    "pass --data-root pointing at the folder holding the DeQA-Score data "
    "(Data-DeQA-Score/, with KONIQ/, SPAQ/, ... inside)"
)


def map_label(score: float, mos_range: tuple[float, float], lower_better: bool) -> float:
    """Map a label from its file's fixed range ``[lo, hi]`` to [1, 5], higher better (pure, no clipping).

    ``1 + 4 (s - lo) / (hi - lo)``; for lower-better labels ``1 + 4 (hi - s) / (hi - lo)``.
    """
    lo, hi = mos_range
    span = SCORE_MAX - SCORE_MIN
    if lower_better:
        return SCORE_MIN + span * (hi - score) / (hi - lo)
    return SCORE_MIN + span * (score - lo) / (hi - lo)


# ---------------------------------------------------------------------------------------------- cards


@dataclass(frozen=True)
class BenchmarkCard:
    """One benchmark: its label file, image folder, format and the label file's fixed scale.

    name: lowercase name. label_file / image_root: paths, relative ones resolved as the module docstring says.
    format: "deqa", "csv" or "jsonl". mos_range: ``(lo, hi)``, the label FILE's fixed scale (not the rows'
    min/max). lower_better: True for DMOS-like labels. id_column / image_column / score_column / type_column:
    keys or columns of the label file (image_column None in a deqa card means "images" or "image").
    type_from_filename: regex whose first group is the distortion type. aliases: other names for a built-in.
    base_dir: the folder relative paths resolve against when no data root is given (a user card's folder;
    None for built-in cards). description / citation: where the card's facts come from, and what to cite.
    """

    name: str
    label_file: Path
    image_root: Path
    format: str
    mos_range: tuple[float, float]
    lower_better: bool
    description: str = ""
    citation: str = ""
    id_column: str | None = "id"
    image_column: str | None = None
    score_column: str = "gt_score"
    type_column: str | None = None
    type_from_filename: str | None = None
    aliases: tuple[str, ...] = ()
    base_dir: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = f"benchmark card {self.name!r}"
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"benchmark card: 'name' must be a non-empty string, got {self.name!r}")
        try:
            lookup({f: f for f in FORMATS}, str(self.format), "benchmark format")
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        for key in ("label_file", "image_root"):
            value = getattr(self, key)
            if not isinstance(value, str | Path) or not str(value).strip():
                raise ValueError(f"{where}: {key} must be a path (relative or absolute), got {value!r}")
            object.__setattr__(self, key, Path(value))
        object.__setattr__(self, "mos_range", _check_range(where, self.mos_range))
        object.__setattr__(self, "aliases", tuple(self.aliases))
        if not isinstance(self.lower_better, bool):
            raise ValueError(f"{where}: lower_better must be true or false, got {self.lower_better!r}")
        if self.format != "deqa" and not self.image_column:
            raise ValueError(
                f"{where}: a {self.format} card needs image_column (the column with image paths)"
            )
        _check_type_source(where, self.type_column, self.type_from_filename)

    def resolved(self, data_root: str | Path | None = None) -> BenchmarkCard:
        """A copy with absolute label_file and image_root: relative paths joined to ``data_root`` if given,
        else to ``base_dir``; ValueError telling the user to pass --data-root when neither exists."""
        root = _absolute(data_root) if data_root is not None else self.base_dir
        return replace(
            self,
            label_file=self._under(root, self.label_file, "label_file"),
            image_root=self._under(root, self.image_root, "image_root"),
        )

    def _under(self, root: Path | None, path: Path, what: str) -> Path:
        if path.is_absolute():
            return path
        if root is None:
            raise ValueError(f"benchmark {self.name!r}: {what} {str(path)!r} is relative; {_DATA_ROOT_HINT}")
        return root / path


def _absolute(path: str | Path) -> Path:
    """Absolute and normalised (``a/../b`` -> ``b``), so paths in messages and results read cleanly."""
    return Path(os.path.abspath(Path(path).expanduser()))


def _check_range(where: str, mos_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in mos_range)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: mos_range must be [lo, hi] (two numbers), got {mos_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(
            f"{where}: mos_range [{lo}, {hi}] needs finite lo < hi: set it to the label file's fixed scale, "
            "e.g. [0, 100] for LIVE-Wild MOS (use lower_better for DMOS, never a reversed range)"
        )
    return lo, hi


def _check_type_source(where: str, type_column: str | None, pattern: str | None) -> None:
    if type_column and pattern:
        raise ValueError(f"{where}: set type_column or type_from_filename, not both")
    if pattern is None:
        return
    try:
        groups = re.compile(pattern).groups
    except re.error as err:
        raise ValueError(f"{where}: type_from_filename {pattern!r} is not a valid regex ({err})") from None
    if groups < 1:
        raise ValueError(f"{where}: type_from_filename {pattern!r} needs a group, e.g. 'I\\d+_(\\d+)_\\d+'")


_CARD_KEYS = {f.name: f.name for f in fields(BenchmarkCard) if f.name != "base_dir"}


def _card_from_mapping(data, source: str, base_dir: Path | None) -> BenchmarkCard:
    """Build a card from YAML data, rejecting unknown keys (did-you-mean) and naming ``source`` in errors."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a benchmark card is a mapping of keys, got {type(data).__name__}")
    for key in data:
        try:
            lookup(_CARD_KEYS, str(key), "benchmark card key")
        except ValueError as err:
            raise ValueError(f"{source}: {err} (a card file holds exactly one card)") from None
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        raise ValueError(f"{source}: benchmark card lacks {missing}; every card sets {list(_REQUIRED_KEYS)}")
    name = data["name"]
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise ValueError(
            f"{source}: card name {name!r} must be letters, digits, '.', '_' or '-' (not starting with '.'): it "
            "names files under --out (predictions/<name>.jsonl, plots/<name>.png)"
        )
    return BenchmarkCard(**data, base_dir=base_dir)


_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


@lru_cache(maxsize=1)
def _builtin_registry() -> dict[str, BenchmarkCard]:
    """Built-in cards by name and by alias (read once from the package's benchmarks.yaml)."""
    text = resources.files("qhawkeye").joinpath("benchmarks.yaml").read_text(encoding="utf-8")
    registry: dict[str, BenchmarkCard] = {}
    for name, data in yaml.safe_load(text).items():
        card = _card_from_mapping({"name": name, **data}, f"built-in benchmark {name!r}", None)
        for key in (card.name, *card.aliases):
            registry[key] = card
    return registry


def builtin_cards() -> dict[str, BenchmarkCard]:
    """The built-in cards by name (aliases left out)."""
    return {name: card for name, card in _builtin_registry().items() if card.name == name}


def get_card(name: str) -> BenchmarkCard:
    """The built-in card called ``name`` (or one of its aliases, any case); did-you-mean error otherwise."""
    return lookup(_builtin_registry(), name.lower(), "benchmark")


def load_card_file(path: str | Path) -> BenchmarkCard:
    """A user card from a YAML file holding one card; its relative paths resolve against the file's folder
    unless a data root is given later (see :meth:`BenchmarkCard.resolved`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"benchmark card file {path} not found; pass a card YAML or a built-in name "
            f"{sorted(builtin_cards())}"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    return _card_from_mapping(data, str(path), _absolute(path.parent))


def resolve_card(name_or_path: str | Path, data_root: str | Path | None = None) -> BenchmarkCard:
    """A card with absolute paths: a path ending .yaml/.yml is a user card, anything else a built-in name.

    Built-in cards need ``data_root`` (the DeQA-Score data folder); user cards use it when given.
    """
    text = str(name_or_path)
    if text.lower().endswith((".yaml", ".yml")):
        return load_card_file(text).resolved(data_root)
    try:
        card = get_card(text)
    except ValueError as err:
        raise ValueError(f"{err} (or pass a card file ending in .yaml)") from None
    return card.resolved(data_root)


# ---------------------------------------------------------------------------------------------- items


@dataclass(frozen=True)
class BenchmarkItem:
    """One labelled image: ``label_raw`` as in the file, ``label`` mapped to [1, 5] (higher better)."""

    id: str
    image: Path
    label_raw: float
    label: float
    dist_type: str | None = None


def load_items(card: BenchmarkCard, data_root: str | Path | None = None) -> list[BenchmarkItem]:
    """Every row of the card's label file as a :class:`BenchmarkItem`, in file order.

    Errors name the file and the row (entry index or line, and id): missing file, key or column, duplicate
    id, non-numeric score, label outside the card's range, empty file.
    """
    card = card.resolved(data_root)
    if not card.label_file.is_file():
        raise FileNotFoundError(
            f"benchmark {card.name!r}: label file {card.label_file} not found; check --data-root "
            "or the card's label_file"
        )
    items, first_seen = [], {}
    for where, row in _READERS[card.format](card):
        item = _item(card, where, row)
        if item.id in first_seen:
            raise ValueError(
                f"{card.label_file}: {where}: duplicate id {item.id!r} (first at {first_seen[item.id]}); "
                "ids must be unique: fix the file or point id_column at a unique key"
            )
        first_seen[item.id] = where
        items.append(item)
    if not items:
        raise ValueError(f"{card.label_file}: no rows; is this the right label file for {card.name!r}?")
    _warn_if_premapped(card, items)
    _warn_if_types_unmatched(card, items)
    logger.info("benchmark %s: %d items from %s", card.name, len(items), card.label_file)
    return items


def checked_rows(
    card: BenchmarkCard, data_root: str | Path | None = None
) -> Iterator[tuple[str, BenchmarkItem | ValueError]]:
    """``(where, item or the row's error)`` for every row, so a caller can report every bad row at once.

    File-level problems (missing file, not JSON, missing CSV column) still raise immediately.
    """
    card = card.resolved(data_root)
    if not card.label_file.is_file():
        raise FileNotFoundError(f"label file {card.label_file} not found; check --data-root or the card")
    for where, row in _READERS[card.format](card):
        try:
            yield where, _item(card, where, row)
        except ValueError as err:
            yield where, err


def _item(card: BenchmarkCard, where: str, row: dict) -> BenchmarkItem:
    image_text = _image_text(card, where, row)
    ident = (
        image_text if card.id_column is None else str(_field(card, where, row, card.id_column, "id_column"))
    )
    at = f"{card.label_file}: {where} (id {ident!r})"
    raw = _score(at, row, card.score_column, _field(card, where, row, card.score_column, "score_column"))
    lo, hi = card.mos_range
    tol = RANGE_TOLERANCE * (hi - lo)
    if not lo - tol <= raw <= hi + tol:
        raise ValueError(
            f"{at}: label {raw} lies outside the card's mos_range [{lo:g}, {hi:g}]; mos_range must be the "
            "label file's fixed scale: fix it in the card (or fix the row)"
        )
    label = min(max(map_label(raw, card.mos_range, card.lower_better), SCORE_MIN), SCORE_MAX)
    image = Path(image_text)
    if not image.is_absolute() and ".." in image.parts:
        root = Path(card.image_root).resolve()
        if not (root / image).resolve().is_relative_to(root):
            raise ValueError(
                f"{at}: image path {image_text!r} leads outside the card's image_root {str(root)!r}; "
                "write it relative to image_root without leaving it (or as an absolute path)"
            )
    return BenchmarkItem(
        id=ident,
        image=image if image.is_absolute() else card.image_root / image,
        label_raw=raw,
        label=label,
        dist_type=_dist_type(card, where, row, image_text),
    )


def _field(card: BenchmarkCard, where: str, row: dict, key: str, role: str):
    if key not in row:
        raise ValueError(
            f"{card.label_file}: {where}: no {key!r} key/column, which card {card.name!r} names as its "
            f"{role}; {_keys_hint(key, row)} Fix the card's {role} or the file"
        )
    return row[key]


def _keys_hint(key: str, keys) -> str:
    keys = sorted(str(k) for k in keys)
    lowered = {k.lower(): k for k in keys}  # case-insensitive: "MOS" should suggest "mos"
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1)
    return f"it has {keys}." + (f" Did you mean {lowered[close[0]]!r}?" if close else "")


def _image_text(card: BenchmarkCard, where: str, row: dict) -> str:
    """The row's image path as written in the file (one image per row)."""
    key = card.image_column
    if key is None:  # deqa default: "images": [path], or "image": path
        key = "images" if "images" in row or "image" not in row else "image"
    value = _field(card, where, row, key, "image_column")
    if isinstance(value, list):
        if len(value) != 1:
            raise ValueError(
                f"{card.label_file}: {where}: {key!r} holds {len(value)} paths; give one per row"
            )
        value = value[0]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{card.label_file}: {where}: {key!r} must be an image path, got {value!r}")
    return value.strip()


def _score(at: str, row: dict, key: str, value) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError
        score = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        score = math.nan
    if not math.isfinite(score):
        raise ValueError(
            f"{at}: non-numeric score {value!r} in {key!r}; fix the row or the card's score_column"
        )
    return score


def _dist_type(card: BenchmarkCard, where: str, row: dict, image_text: str) -> str | None:
    if card.type_column:
        value = _field(card, where, row, card.type_column, "type_column")
        return None if value is None or str(value).strip() == "" else str(value).strip()
    if card.type_from_filename:
        match = re.search(card.type_from_filename, image_text.replace("\\", "/"))
        return match.group(1) if match else None
    return None


def _warn_if_premapped(card: BenchmarkCard, items: list[BenchmarkItem]) -> None:
    lo, hi = card.mos_range
    wider = lo <= SCORE_MIN and hi >= SCORE_MAX and hi - lo > SCORE_MAX - SCORE_MIN
    if wider and all(SCORE_MIN <= item.label_raw <= SCORE_MAX for item in items):
        squeezed = sorted(map_label(s, card.mos_range, card.lower_better) for s in (SCORE_MIN, SCORE_MAX))
        logger.warning(
            "%s: every label lies in [1, 5] but card %r says the file's range is [%g, %g]: labels look "
            "already mapped; if so set mos_range: [1, 5] (mapped again they shrink to [%.2f, %.2f])",
            card.label_file,
            card.name,
            lo,
            hi,
            *squeezed,
        )


def _warn_if_types_unmatched(card: BenchmarkCard, items: list[BenchmarkItem]) -> None:
    unmatched = [item for item in items if item.dist_type is None]
    if card.type_from_filename and unmatched:
        logger.warning(
            "%s: %d of %d image paths do not match type_from_filename %r (first: %s); they get no type",
            card.label_file,
            len(unmatched),
            len(items),
            card.type_from_filename,
            unmatched[0].image.name,
        )


# ---------------------------------------------------------------------------------------------- readers
# Each yields (where, row): a human row locator ("entry 3", "line 7") and the row as a dict.


def _read_deqa(card: BenchmarkCard) -> Iterator[tuple[str, dict]]:
    data = _load_json(card.label_file)
    if not isinstance(data, list):
        raise ValueError(
            f"{card.label_file}: expected a JSON list of {{'id', 'images': [path], 'gt_score'}} objects "
            f"(DeQA-Score meta format), got a {type(data).__name__}; use format csv or jsonl for other files"
        )
    for index, row in enumerate(data):
        yield f"entry {index}", _as_row(card, f"entry {index}", row)


def _read_jsonl(card: BenchmarkCard) -> Iterator[tuple[str, dict]]:
    with card.label_file.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{card.label_file}: line {lineno}: not valid JSON ({err})") from None
            yield f"line {lineno}", _as_row(card, f"line {lineno}", row)


def _read_csv(card: BenchmarkCard) -> Iterator[tuple[str, dict]]:
    # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the first column's name; the
    # delimiter is sniffed among comma, semicolon and tab (European spreadsheets write semicolons)
    with card.label_file.open(encoding="utf-8-sig", newline="") as handle:
        sample = handle.read(65536)
        handle.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample.splitlines()[0] if sample else "", delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(handle, delimiter=dialect.delimiter)
        header = reader.fieldnames or []
        for role, key in _csv_columns(card):
            if key not in header:
                raise ValueError(
                    f"{card.label_file}: header has no {key!r} column, which card {card.name!r} names as its "
                    f"{role}; {_keys_hint(key, header)} Fix the card's {role} (id_column may be null: the "
                    "image path is then the id) or the file"
                )
        for row in reader:
            yield f"line {reader.line_num}", row


def _csv_columns(card: BenchmarkCard) -> list[tuple[str, str]]:
    named = [("id_column", card.id_column), ("image_column", card.image_column)]
    named += [("score_column", card.score_column), ("type_column", card.type_column)]
    return [(role, key) for role, key in named if key]


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def _as_row(card: BenchmarkCard, where: str, row) -> dict:
    if not isinstance(row, dict):
        raise ValueError(
            f"{card.label_file}: {where}: expected an object with keys, got {type(row).__name__}"
        )
    return row


_READERS = {"deqa": _read_deqa, "csv": _read_csv, "jsonl": _read_jsonl}
