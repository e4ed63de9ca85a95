"""``qhawkeye distill``: fit a student on human labels, a teacher's scores, or both.

Rows: every labelled image of the given benchmark cards (target: the card's label mapped to [1, 5], weight 1)
and every ``ok`` row of the given teacher score files (target: the teacher's score; weight ``1 - u`` with ``u``
the row's normalised variance, the uncertainty UADO uses, floored at ``min_weight``; rows without a spread
weigh 1). An image named by both gives two rows. Teacher files are ``qhawkeye score`` output of any model, a
7B Q-Hawkeye on a GPU included: its ``.run.json`` sidecar, when present, is recorded as the teacher.

Features are cached under ``<out>.work/`` in parts written atomically, keyed by the image file's sha256 and the
feature settings: an interrupted run resumes where it stopped, and a rerun with other head settings reuses
them. The student folder is written atomically at the end with its record (sources, rows, cross-validation,
timing, versions) and identity (:func:`qhawkeye.student.head.identity`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qhawkeye.data.manifest import file_sha256
from qhawkeye.images import UnreadableImage, load_image
from qhawkeye.parsing import normalised_uncertainty
from qhawkeye.student.config import DistillConfig
from qhawkeye.student.features import FeatureSpec
from qhawkeye.student.head import DEFAULT_ALPHAS, fit_ridge, identity, save_student

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    image: Path
    target: float
    weight: float
    source: str  # "labels:<card>" or "teacher:<file name>"
    id: str


# ---------------------------------------------------------------------------------------------- rows


def label_rows(config: DistillConfig) -> tuple[list[Row], list[dict]]:
    from qhawkeye.labels import load_items, resolve_card

    rows, sources = [], []
    for name in config.labels:
        card = resolve_card(name, config.data_root)
        items = load_items(card, config.data_root)
        rows += [Row(item.image, float(item.label), 1.0, f"labels:{card.name}", item.id) for item in items]
        resolved = card.resolved(config.data_root)
        sources.append({"kind": "labels", "card": card.name, "label_file": str(resolved.label_file),
                        "label_file_sha256": file_sha256(resolved.label_file), "rows": len(items)})  # fmt: skip
    return rows, sources


def _read_score_file(path: Path) -> list[tuple[str, object]]:
    from qhawkeye.scoring.io import _jsonl_rows

    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        return [(f"row {n}", row) for n, row in enumerate(csv.DictReader(text.splitlines()), start=2)]
    return _jsonl_rows(path, text)


def _number(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def teacher_rows(config: DistillConfig) -> tuple[list[Row], list[dict]]:
    rows, sources = [], []
    root = Path(config.teacher_image_root) if config.teacher_image_root else Path.cwd()
    for name in config.teacher_scores:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"teacher score file {path} not found")
        sidecar = path.with_name(path.name + ".run.json")
        teacher = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else None
        kept = skipped = 0
        for where, record in _read_score_file(path):
            if not isinstance(record, dict) or "id" not in record or "score" not in record:
                raise ValueError(
                    f"{path}: {where} has no id/score: not a `qhawkeye score` output (needs id, path, score, status)"
                )
            score = _number(record.get("score"))
            if record.get("status", "ok") != "ok" or score is None:
                skipped += 1
                continue
            if not 1.0 <= score <= 5.0:
                raise ValueError(
                    f"{path}: {where}: score {score} is outside [1, 5]; teacher scores are on [1, 5]"
                )
            if not record.get("path"):
                raise ValueError(f"{path}: {where} (id {record['id']!r}) has no image path")
            image = Path(record["path"])
            image = image if image.is_absolute() else root / image
            if not image.is_file():
                raise FileNotFoundError(
                    f"{path}: {where}: image {image} not found; pass --teacher-image-root (the folder the file's "
                    "relative paths start from)"
                )
            weight = 1.0
            if config.uncertainty_weighting:
                u = _number(record.get("uncertainty"))
                std = _number(record.get("std"))
                if u is None and std is not None:
                    u = normalised_uncertainty(std * std)
                if u is not None:
                    weight = max(1.0 - min(max(u, 0.0), 1.0), config.min_weight)
            rows.append(Row(image, score, weight, f"teacher:{path.name}", str(record["id"])))
            kept += 1
        if kept == 0:
            raise ValueError(f"{path}: no row with status ok and a score: nothing to learn from it")
        sources.append({"kind": "teacher", "file": str(path), "file_sha256": file_sha256(path), "rows": kept,
                        "skipped_not_ok": skipped, "teacher": teacher})  # fmt: skip
    return rows, sources


# ---------------------------------------------------------------------------------------------- features


class FeatureCache:
    """Features by image sha256 under ``folder``, appended in atomically written parts."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.features: dict[str, np.ndarray] = {}
        self.parts = 0
        for part in sorted(folder.glob("part-*.npz")):
            with np.load(part) as data:
                for key, row in zip(data["keys"], data["features"], strict=True):
                    self.features[str(key)] = row
            self.parts += 1

    def add(self, keys: list[str], features: np.ndarray) -> None:
        from qhawkeye.atomic import atomic_file

        with atomic_file(self.folder / f"part-{self.parts:05d}.npz", "wb") as f:
            np.savez(f, keys=np.array(keys), features=features)
        self.parts += 1
        self.features.update(zip(keys, features, strict=True))


def extract(rows_by_key: dict[str, Path], cache: FeatureCache, config: DistillConfig, spec: FeatureSpec,
            progress: bool) -> list[str]:  # fmt: skip
    """Features for every key not cached yet; returns the keys whose image could not be read."""
    from tqdm.auto import tqdm

    from qhawkeye.student.features import MIN_SIDE, FeatureExtractor

    todo = [k for k in rows_by_key if k not in cache.features]
    if not todo:
        return []
    extractor = FeatureExtractor(spec, batch_size=config.batch_size)
    unreadable = []
    chunk = config.batch_size * 4  # images per saved part: an interruption loses at most one part
    with tqdm(total=len(todo), desc="features", unit="img", disable=not progress) as bar:
        for start in range(0, len(todo), chunk):
            keys, images = [], []
            for key in todo[start : start + chunk]:
                try:
                    image = load_image(rows_by_key[key])
                except UnreadableImage as err:
                    logger.warning("skipping %s", err)
                    unreadable.append(key)
                    continue
                if min(image.size) < MIN_SIDE:
                    logger.warning("skipping %s: smaller than %d px", rows_by_key[key], MIN_SIDE)
                    unreadable.append(key)
                    continue
                keys.append(key)
                images.append(image)
            if keys:
                cache.add(keys, extractor(images))
            bar.update(len(todo[start : start + chunk]))
    return unreadable


# ---------------------------------------------------------------------------------------------- run


def rows_fingerprint(rows: list[tuple[str, float, float]]) -> str:
    blob = json.dumps(sorted((k, round(t, 6), round(w, 6)) for k, t, w in rows))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class Plan:
    """What a distill run will fit on: its rows, each image's sha256, the feature spec and head settings."""

    rows: list[Row]
    keys: dict[Path, str]
    spec: FeatureSpec
    head_settings: dict
    sources: list[dict]


def plan(config: DistillConfig) -> Plan:
    """Read every source and hash every image (no features): enough to know the student's identity."""
    label, label_sources = label_rows(config) if config.labels else ([], [])
    teacher, teacher_sources = teacher_rows(config) if config.teacher_scores else ([], [])
    rows = (label + teacher)[: config.limit]
    keys: dict[Path, str] = {}
    for row in rows:
        if row.image not in keys:
            if not row.image.is_file():
                raise FileNotFoundError(f"{row.source}: id {row.id!r}: image {row.image} not found")
            keys[row.image] = file_sha256(row.image)
    head_settings = {"type": "ridge", "alpha_grid": list(DEFAULT_ALPHAS), "folds": config.folds, "seed": config.seed,
                     "uncertainty_weighting": config.uncertainty_weighting, "min_weight": config.min_weight}  # fmt: skip
    spec = FeatureSpec(max_pixels=config.max_pixels or None)
    return Plan(rows, keys, spec, head_settings, label_sources + teacher_sources)


def planned_identity(config: DistillConfig, skip: frozenset = frozenset()) -> str:
    """The identity a student distilled with ``config`` records (images in ``skip``, unreadable ones, left out)."""
    p = plan(config)
    used = [r for r in p.rows if p.keys[r.image] not in skip]
    return identity(
        p.spec, p.head_settings, rows_fingerprint([(p.keys[r.image], r.target, r.weight) for r in used])
    )


def distill(config: DistillConfig, progress: bool = True) -> dict:
    """Fit the student of ``config`` into ``config.out``; returns its record."""
    out = Path(config.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists; choose another --out or remove it")
    if config.threads is not None:
        import torch

        torch.set_num_threads(config.threads)
    start = time.perf_counter()
    p = plan(config)
    rows, keys, spec, head_settings = p.rows, p.keys, p.spec, p.head_settings
    spec_key = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    cache = FeatureCache(Path(f"{out}.work") / f"features-{spec_key}")
    unreadable = set(extract({keys[r.image]: r.image for r in rows}, cache, config, spec, progress))
    used = [r for r in rows if keys[r.image] not in unreadable]
    if not used:
        raise ValueError("no readable image among the rows: nothing to fit")
    x = np.stack([cache.features[keys[r.image]] for r in used])
    y = np.array([r.target for r in used])
    w = np.array([r.weight for r in used])
    groups = [keys[r.image] for r in used]
    fit = fit_ridge(x, y, w, groups, DEFAULT_ALPHAS, config.folds, config.seed)
    ident = identity(
        spec, head_settings, rows_fingerprint([(keys[r.image], r.target, r.weight) for r in used])
    )
    seconds = round(time.perf_counter() - start, 1)
    import torch

    record = {
        "identity": ident,
        "description": _description(p.sources),
        "training": {
            "config": {k: v for k, v in asdict(config).items() if k != "out"},
            "sources": p.sources,
            "rows": len(used),
            "images": len(set(groups)),
            "unreadable": sorted(str(path) for path, k in keys.items() if k in unreadable),
            "head": head_settings,
            "cv": fit.cv,
            "seconds": seconds,
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "numpy": np.__version__,
            },
        },
    }
    save_student(out, spec, fit, record)
    logger.info(
        "student written to %s (cv SRCC %.3f, %d rows, %.0f s)", out, fit.cv["srcc"], len(used), seconds
    )
    return {"out": str(out), "identity": ident, "rows": len(used), "cv_srcc": fit.cv["srcc"],
            "cv_plcc": fit.cv["plcc"], "alpha": fit.alpha, "seconds": seconds}  # fmt: skip


def _description(sources: list[dict]) -> str:
    parts = [f"labels of {s['card']} ({s['rows']} images)" for s in sources if s["kind"] == "labels"]
    for s in (s for s in sources if s["kind"] == "teacher"):
        model = (s["teacher"] or {}).get("model", "an unrecorded model")
        parts.append(f"teacher scores of {model} ({s['rows']} images, {os.path.basename(s['file'])})")
    return "EfficientNet-Lite0 features + ridge head fitted on " + " and ".join(parts)
