"""The paired training set: loading and validating it, and a small synthetic one for smoke runs.

A training set is a Hugging Face dataset saved with ``save_to_disk`` with the columns
``image`` (original), ``degraded_image`` (its partner, same size), ``gt_score`` (label mapped to [1, 5]),
``group_id``, ``degradation`` and ``prompt`` (added from :mod:`qhawkeye.prompts` when absent).
Validation names the first bad row and what to do; nothing is trained on a placeholder.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from PIL import Image

from qhawkeye import SCORE_MAX, SCORE_MIN, prompts
from qhawkeye.atomic import atomic_dir
from qhawkeye.data.degradations import DEGRADATIONS, degrade

logger = logging.getLogger(__name__)


def load_training_dataset(
    path: str | Path,
    split: str = "train",
    image_column: str = "image",
    score_column: str = "gt_score",
    degraded_column: str | None = None,
    max_samples: int | None = None,
    check_images: bool = True,
):
    """Load a ``save_to_disk`` folder and validate it for training.

    Args:
        degraded_column: required column of degraded partners (pass it when PAO is on).

    Raises:
        FileNotFoundError, ValueError: with the folder, row and column at fault.
    """
    from datasets import DatasetDict, load_from_disk

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"dataset folder {str(path)!r} not found (expected a datasets save_to_disk folder)"
        )
    try:
        data = load_from_disk(str(path))
    except Exception as err:  # datasets raises several types for a folder it cannot read
        raise ValueError(f"{path}: not a Hugging Face dataset saved with save_to_disk ({err})") from err
    if isinstance(data, DatasetDict):
        if split not in data:
            raise ValueError(f"{path}: no split {split!r}; it has {sorted(data)} (set dataset_split)")
        data = data[split]
    if max_samples is not None:
        data = data.select(range(min(max_samples, len(data))))
    _check_columns(data, path, [image_column, score_column] + ([degraded_column] if degraded_column else []))
    _check_scores(data, path, score_column)
    _check_unique(data, path, ("group_id",))  # ids are unique per source; group ids (source/id) overall
    if check_images:
        _check_images(data, path, [image_column] + ([degraded_column] if degraded_column else []))
    if "prompt" not in data.column_names:
        messages = prompts.build_messages()
        data = data.map(lambda _: {"prompt": messages}, desc="adding prompts")
    return data


def _check_columns(data, path: Path, required: list[str]) -> None:
    if len(data) == 0:
        raise ValueError(f"{path}: the dataset is empty; nothing to train on")
    missing = [c for c in required if c not in data.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; it has {data.column_names}")


def _row_name(data, index: int) -> str:
    """ "row 7 (group_id='x')": reads only the id column, so it is safe while a row's image is broken."""
    for key in ("id", "group_id"):
        if key in data.column_names:
            value = data.select_columns([key])[index][key]
            if value is not None:
                return f"row {index} ({key}={value!r})"
    return f"row {index}"


def _check_scores(data, path: Path, column: str) -> None:
    for i, value in enumerate(data[column]):
        if value is None or not math.isfinite(float(value)) or not SCORE_MIN <= float(value) <= SCORE_MAX:
            raise ValueError(
                f"{path}: {_row_name(data, i)}: {column}={value!r} is not on [{SCORE_MIN:g}, {SCORE_MAX:g}]. Labels "
                "must be mapped to [1, 5] from the benchmark card's fixed range (`qhawkeye data build` does this)."
            )


def _check_unique(data, path: Path, columns: tuple[str, ...]) -> None:
    """Each pair once: a repeated id or group id means rows were joined or copied wrongly."""
    for column in columns:
        if column not in data.column_names:
            continue
        first: dict = {}
        for i, value in enumerate(data[column]):
            if value in first:
                raise ValueError(
                    f"{path}: row {i}: {column} {value!r} repeats row {first[value]}'s; every pair needs its own "
                    f"{column} (rebuild the set with `qhawkeye data build`, which builds each source once)"
                )
            first[value] = i


def _check_images(data, path: Path, columns: list[str]) -> None:
    for column in columns:
        only = data.select_columns([column])
        for i in range(len(only)):
            try:
                image = only[i][column]
                if image is None:
                    raise ValueError("no image")
                if not isinstance(image, Image.Image):
                    raise ValueError(f"expected an image, got {type(image).__name__}")
                image.load()
            except Exception as err:
                raise ValueError(
                    f"{path}: {_row_name(data, i)}: column {column!r} has a missing or unreadable image ({err}). "
                    "Fix or drop the row and rebuild the dataset; qhawkeye never trains on placeholders."
                ) from err


# ------------------------------------------------------------------------------------------------ synthetic
def _synthetic_photo(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth random scene: colour gradients plus a few soft discs and sharp rectangles."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(40, 220, size=3)
    slope = rng.uniform(-80, 80, size=(2, 3))
    img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    for _ in range(rng.integers(2, 5)):
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.25)
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < r**2
        img[disc] = rng.uniform(0, 255, size=3)
    for _ in range(rng.integers(1, 3)):
        x0, y0 = rng.integers(0, size // 2, size=2)
        w, h = rng.integers(size // 8, size // 2, size=2)
        img[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 255, size=3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_synthetic_pairs(n: int, seed: int = 0, size: int = 112) -> dict[str, list]:
    """Rows of a small synthetic paired set (labels are synthetic, not human opinion scores).

    Each row's original is a synthetic scene degraded to a random level in [0, 1] by one registry
    degradation (level 0 = clean); its label is ``5 - 4 * level``. Its partner is a further first-strength
    degradation of the original, as in the real pipeline.
    """
    rng = np.random.default_rng(seed)
    names = sorted(DEGRADATIONS)
    columns = {k: [] for k in ("image", "degraded_image", "gt_score", "group_id", "degradation")}
    for i in range(n):
        clean = _synthetic_photo(rng, size)
        level = float(rng.uniform(0, 1))
        original = Image.blend(clean, degrade(clean, names[i % len(names)], rng), level)
        kind = names[int(rng.integers(len(names)))]
        columns["image"].append(original)
        columns["degraded_image"].append(degrade(original, kind, rng))
        columns["gt_score"].append(round(SCORE_MAX - (SCORE_MAX - SCORE_MIN) * level, 4))
        columns["group_id"].append(f"synthetic-{seed}-{i}")
        columns["degradation"].append(kind)
    return columns


def save_synthetic_training_set(out_dir: str | Path, n: int = 16, seed: int = 0, size: int = 112) -> Path:
    """Write a synthetic paired training set with ``save_to_disk``, atomically (build beside, then rename)."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; choose a new folder (inputs are never overwritten)")
    features = Features(
        {
            "image": ImageFeature(),
            "degraded_image": ImageFeature(),
            "gt_score": Value("float32"),
            "group_id": Value("string"),
            "degradation": Value("string"),
        }
    )
    data = Dataset.from_dict(make_synthetic_pairs(n, seed, size), features=features)
    messages = prompts.build_messages()
    data = data.map(lambda _: {"prompt": messages})
    with atomic_dir(out_dir) as tmp:
        data.save_to_disk(str(tmp))
    return out_dir
