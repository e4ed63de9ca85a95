"""A KADID-10K-style synthetic IQA set from the bundled photos, labelled by SSIM: **not human opinion**.

Each bundled photo (:mod:`qhawkeye.sample_data`) is distorted by each type at ``levels`` graded strengths
with the functions of :mod:`qhawkeye.data.degradations`, and every distorted image is labelled by SSIM
(Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to structural
similarity", IEEE TIP 2004) against its own original, mapped to [1, 5]:

    gt_score = 1 + 4 * clip((ssim - S0) / (1 - S0), 0, 1),   S0 = 0.15 (fixed).

S0 was read once off the default set (32 photos x 4 types x 4 levels, seed 0): the 1st percentile of its
SSIM values is 0.169, rounded down to 0.15, so about 1% of the images sit at the floor of 1.0. It is a
constant, never fitted to the images of a run, so labels of different builds are on one scale.

Level k of n (k = 1 mildest .. n strongest) interpolates each type's parameter geometrically from its mild
end to its strong end, ``p_k = mild * (strong / mild) ** ((k - 1) / (n - 1))``, kept to two significant
digits (JPEG quality rounded to an integer). For the default n = 4, with the SSIM seen on the 32 photos:

    type    parameter (degradations.DegradationParams)   level 1  level 2  level 3  level 4
    noise   noise_std (Gaussian, per channel, 0-255)         3.0      8.1      22       60
    blur    blur_radius (Pillow GaussianBlur)                0.5      1.1      2.6      6.0
    jpeg    jpeg_quality (Pillow, one pass)                  60       22       8        3
    darken  darken_factor (Pillow Brightness)                0.9      0.55     0.33     0.2
    median SSIM (noise / blur / jpeg / darken), level 1: 0.98 / 0.99 / 0.95 / 0.99; level 4: 0.25 / 0.51 /
    0.59 / 0.24

Noise is drawn from a generator seeded by (seed, photo name), the same draw at every level, so a stronger
level is the same noise pattern scaled up. On all 32 photos SSIM falls strictly from level to level for every
(photo, type) at n = 4.

The pristine photos are **not** in the set. Labels measure fidelity to the source photo, and the sources were
chosen to span the whole LIVE-Wild MOS range (3 to 91 of 100): a pristine item would have to be labelled 5.0
whatever its human MOS, which would teach a model that a photo people rated 3/100 is excellent. Within one
source the labels rank the distortions; across sources they compare fidelity, not absolute quality.

The split is by source photo (a photo's images are all in train or all in test), drawn by ``seed``. The
output folder holds ``images/*.png``, ``train.json`` and ``test.json`` (DeQA-Score meta format plus
``source_photo``, ``dist_type``, ``level``, ``ssim``), ``card_test.yaml`` (a benchmark card for the test
split), ``README.md`` (what the labels are, the photos' origin and the acknowledgement they require), the
LIVE-Wild copyright notice, and ``synthetic.json`` (parameters and summary).
"""

from __future__ import annotations

import json
import logging
import shutil
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from qhawkeye import sample_data
from qhawkeye.atomic import atomic_dir, write_json_atomic
from qhawkeye.data.degradations import FIRST, DegradationParams, degrade
from qhawkeye.registry import lookup

logger = logging.getLogger(__name__)

S0 = 0.15
"""SSIM mapped to the label floor 1.0 (fixed; see the module docstring)."""
LUMA = np.array([0.299, 0.587, 0.114])
"""ITU-R BT.601 luma weights (as Pillow's ``convert("L")``, without its rounding to integers)."""
SSIM_SETTINGS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255}
"""Wang et al.'s settings: 11x11 Gaussian window (sigma 1.5), population statistics, K1 0.01, K2 0.03."""
MIN_SIDE = 11
"""The Gaussian window is 11x11: smaller images have no SSIM."""
LEVEL_RANGES: dict[str, tuple[str, float, float]] = {
    "noise": ("noise_std", 3.0, 60.0),
    "blur": ("blur_radius", 0.5, 6.0),
    "jpeg": ("jpeg_quality", 60, 3),
    "darken": ("darken_factor", 0.9, 0.2),
}
"""Type -> (DegradationParams field, mildest value, strongest value)."""
MAX_LEVELS = 8
META = "synthetic.json"
LABEL_KINDS = ("ssim", "level")


@dataclass(frozen=True)
class SetSpec:
    """What a synthetic set holds: distortion types, levels per type, how items are labelled, and whether
    each undistorted photo is an item too (``pristine``, label 5.0; only with ``level`` labels)."""

    types: tuple[str, ...] = ("noise", "blur", "jpeg", "darken")
    levels: int = 4
    labels: str = "ssim"
    pristine: bool = False


def ssim(a: Image.Image, b: Image.Image) -> float:
    """SSIM of two same-size images on their luminance (BT.601 luma of RGB, 0-255 floats).

    skimage's ``structural_similarity`` with :data:`SSIM_SETTINGS`; 1.0 for identical images.
    """
    if a.size != b.size:
        raise ValueError(f"SSIM needs images of one size, got {a.size} and {b.size}")
    if min(a.size) < MIN_SIDE:
        raise ValueError(f"SSIM needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels, got {a.size}")
    from skimage.metrics import structural_similarity  # imported here: keeps `import qhawkeye` light

    return float(structural_similarity(_luma(a), _luma(b), **SSIM_SETTINGS))


def _luma(img: Image.Image) -> np.ndarray:
    """(H, W) float64 luma of an image's RGB values."""
    return np.asarray(img.convert("RGB"), dtype=np.float64) @ LUMA


def ssim_to_label(value: float) -> float:
    """``1 + 4 * clip((ssim - S0) / (1 - S0), 0, 1)``, rounded to 4 decimals."""
    return round(1.0 + 4.0 * float(np.clip((value - S0) / (1.0 - S0), 0.0, 1.0)), 4)


def level_values(dist_type: str, levels: int) -> list[float]:
    """The ``levels`` parameter values of ``dist_type``, mildest first (see the module docstring)."""
    _, mild, strong = lookup(LEVEL_RANGES, dist_type, "distortion type")
    steps = [mild * (strong / mild) ** (k / (levels - 1)) for k in range(levels)]
    values = [round(v) if dist_type == "jpeg" else float(f"{v:.2g}") for v in steps]
    if len(set(values)) != levels:
        raise ValueError(f"{levels} levels of {dist_type} give repeated values {values}; use fewer levels")
    return values


def level_params(dist_type: str, levels: int) -> list[DegradationParams]:
    """DegradationParams per level: the pipeline's first-pass settings with this type's field graded."""
    values = level_values(dist_type, levels)
    name = LEVEL_RANGES[dist_type][0]
    return [replace(FIRST, jpeg_passes=1, **{name: v}) for v in values]


def distort(photo: Image.Image, name: str, dist_type: str, params: DegradationParams, seed: int):
    """One distorted copy; the noise draw depends on (seed, photo name) only, not on the level."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return degrade(photo, dist_type, rng, params)


# ---------------------------------------------------------------------------------------------- building


def split_photos(names: list[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """``(train, test)`` source photo names, each sorted; ``round(test_fraction * n)`` (at least 1) in test."""
    order = np.random.default_rng(seed).permutation(len(names))
    n_test = min(max(1, round(test_fraction * len(names))), len(names) - 1)
    test = {names[i] for i in order[:n_test]}
    return [n for n in names if n not in test], [n for n in names if n in test]


def level_label(level: int, levels: int) -> float:
    """``5 - 4 * level / levels``: the pristine photo (level 0) is 5.0, the strongest level 1.0."""
    return round(5.0 - 4.0 * level / levels, 4)


def _items(path: Path, spec: SetSpec, seed: int, images: Path) -> list[dict]:
    """Distort one photo by every type and level, save the images, return their meta entries."""
    photo = Image.open(path).convert("RGB")
    items = []
    if spec.pristine:
        item_id = f"{path.stem}_pristine_0"
        photo.save(images / f"{item_id}.png")
        items.append({"id": item_id, "images": [f"images/{item_id}.png"], "gt_score": 5.0,
                      "source_photo": path.name, "dist_type": "pristine", "level": 0, "ssim": 1.0})  # fmt: skip
    for dist_type in spec.types:
        for level, params in enumerate(level_params(dist_type, spec.levels), start=1):
            item_id = f"{path.stem}_{dist_type}_{level}"
            out = distort(photo, path.name, dist_type, params, seed)
            out.save(images / f"{item_id}.png")
            value = round(ssim(photo, out), 6)
            label = ssim_to_label(value) if spec.labels == "ssim" else level_label(level, spec.levels)
            items.append({
                "id": item_id, "images": [f"images/{item_id}.png"], "gt_score": label,
                "source_photo": path.name, "dist_type": dist_type, "level": level, "ssim": value,
            })  # fmt: skip
    return items


LABEL_DESCRIPTIONS = {
    "ssim": f"SSIM against the original mapped to [1, 5] by 1 + 4 clip((ssim - {S0}) / (1 - {S0}), 0, 1)",
    "level": "the distortion level: 5 - 4 k / n for level k of n (the undistorted photo, k = 0, is 5.0)",
}


def _card(name: str, spec: SetSpec) -> dict:
    return {
        "name": name,
        "label_file": "test.json",
        "image_root": ".",
        "format": "deqa",
        "score_column": "gt_score",
        "type_column": "dist_type",
        "mos_range": [1, 5],
        "lower_better": False,
        "description": (
            "Synthetic IQA test split built by qhawkeye.sample_data.synthetic: LIVE-Wild photos with graded "
            f"{', '.join(spec.types)}. Labels are SYNTHETIC: {LABEL_DESCRIPTIONS[spec.labels]}; not human "
            "opinion scores."
        ),
        "citation": (
            "Wang, Bovik, Sheikh, Simoncelli. Image quality assessment: from error visibility to structural "
            "similarity. IEEE TIP 2004. Photos: Ghadiyaram, Bovik. Massive online crowdsourced study of "
            "subjective and objective picture quality. IEEE TIP 2016; LIVE In the Wild Image Quality "
            "Challenge Database, 2015 (LIVE, UT Austin)."
        ),
    }


def _stats(items: list[dict]) -> dict:
    def describe(values: list[float]) -> dict:
        return {"n": len(values), "min": min(values), "median": float(np.median(values)), "max": max(values)}

    by_type: dict[str, list[float]] = {}
    for item in items:
        by_type.setdefault(item["dist_type"], []).append(item["gt_score"])
    labels = [item["gt_score"] for item in items]
    return {"all": describe(labels), **{t: describe(v) for t, v in by_type.items()}}


def _params(spec: SetSpec, test_fraction, seed, names: list[str]) -> dict:
    table = {t: {"field": LEVEL_RANGES[t][0], "values": level_values(t, spec.levels)} for t in spec.types}
    params = {
        "types": list(spec.types), "levels": spec.levels, "test_fraction": test_fraction, "seed": seed,
        "photos": names, "level_params": table, "s0": S0, "ssim_settings": SSIM_SETTINGS,
        "luma": LUMA.tolist(), "pristine_included": spec.pristine,
    }  # fmt: skip
    if spec.labels != "ssim":  # sets built before label kinds existed keep their recorded parameters
        params["labels"] = spec.labels
    return params


def _check(spec: SetSpec, test_fraction: float, n_photos: int) -> None:
    if not spec.types:
        raise ValueError(f"types is empty; choose from {sorted(LEVEL_RANGES)}")
    for t in spec.types:
        lookup(LEVEL_RANGES, t, "distortion type")
    if len(set(spec.types)) != len(spec.types):
        raise ValueError(f"types {list(spec.types)} repeats a type")
    if not 2 <= spec.levels <= MAX_LEVELS:
        raise ValueError(f"levels must be in [2, {MAX_LEVELS}], got {spec.levels}")
    if spec.labels not in LABEL_KINDS:
        raise ValueError(f"labels must be one of {LABEL_KINDS}, got {spec.labels!r}")
    if spec.pristine and spec.labels != "level":
        raise ValueError(
            "pristine items need labels='level' (under SSIM labels every pristine photo would be 5.0)"
        )
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if not 2 <= n_photos <= len(sample_data.photos()):
        raise ValueError(f"photos must be in [2, {len(sample_data.photos())}] (the bundled photos)")


def _write(tmp: Path, params: dict, spec: SetSpec, test_fraction, seed, paths: list[Path]) -> dict:
    """Build the whole set into the empty folder ``tmp``; returns the summary."""
    (tmp / "images").mkdir()
    train_names, test_names = split_photos([p.name for p in paths], test_fraction, seed)
    items = {p.name: _items(p, spec, seed, tmp / "images") for p in paths}
    splits = {
        "train": [i for n in train_names for i in items[n]],
        "test": [i for n in test_names for i in items[n]],
    }
    for split, rows in splits.items():
        (tmp / f"{split}.json").write_text(json.dumps(rows, indent=1) + "\n")
    card = _card(f"synthetic_{spec.labels}_test_seed{seed}", spec)
    (tmp / "card_test.yaml").write_text(yaml.safe_dump(card, sort_keys=False, width=100))
    shutil.copyfile(sample_data.license_path(), tmp / sample_data.LICENSE)
    summary = {
        "photos": {"train": train_names, "test": test_names},
        "items": {split: len(rows) for split, rows in splits.items()},
        "labels": _stats(splits["train"] + splits["test"]),
    }
    (tmp / "README.md").write_text(_readme(params, summary, spec))
    write_json_atomic(tmp / META, {"params": params, "summary": summary})
    return summary


def _result(out: Path, summary: dict, reused: bool) -> dict:
    files = {k: out / f for k, f in [("train", "train.json"), ("test", "test.json"),
                                     ("card_test", "card_test.yaml"), ("readme", "README.md")]}  # fmt: skip
    return {"out_dir": out, **files, "reused": reused, "summary": summary}


def _existing(out: Path, params: dict) -> dict | None:
    """The summary of a complete set with ``params`` in ``out``; None when ``out`` is absent or empty."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    meta = out / META
    if not meta.is_file():
        raise FileExistsError(f"{out} exists and holds no {META}: choose a new folder for the synthetic set")
    previous = json.loads(meta.read_text())
    if previous.get("params") != json.loads(json.dumps(params)):
        raise FileExistsError(
            f"{out} holds a synthetic set built with other parameters ({out / META}); use a new folder, or "
            "the same parameters to reuse it"
        )
    return previous["summary"]


def make_synthetic_iqa(
    out_dir: str | Path,
    types: tuple[str, ...] = ("noise", "blur", "jpeg", "darken"),
    levels: int = 4,
    test_fraction: float = 0.25,
    seed: int = 0,
    photos: int | None = None,
    labels: str = "ssim",
    pristine: bool = False,
) -> dict:
    """Build (or reuse) the synthetic SSIM-labelled IQA set in ``out_dir``.

    ``photos``: use only the first N bundled photos (default all 32). ``labels``: ``ssim`` (fidelity to the
    source photo, which a no-reference model cannot see) or ``level`` (the distortion's severity, visible in
    the image: the learnability ladder's positive controls); ``pristine`` adds each undistorted photo. The set is built in a hidden temporary
    folder beside ``out_dir`` and renamed into place when complete, so ``out_dir`` never holds half a set; a
    complete set with the same parameters is reused, one with other parameters is refused.

    Returns ``{"out_dir", "train", "test", "card_test", "readme"}`` (paths), ``reused`` and ``summary``
    (photos per split, items per split, label min/median/max overall and per type).
    """
    out = Path(out_dir)
    spec = SetSpec(tuple(types), levels, labels, pristine)
    paths = sample_data.photos()
    _check(spec, test_fraction, len(paths) if photos is None else photos)
    paths = paths[:photos] if photos is not None else paths
    params = _params(spec, test_fraction, seed, [p.name for p in paths])
    summary = _existing(out, params)
    if summary is not None:
        logger.info("synthetic set: reusing %s", out)
        return _result(out, summary, reused=True)
    with atomic_dir(out) as tmp:  # ``out`` is absent or empty (checked above)
        summary = _write(tmp, params, spec, test_fraction, seed, paths)
    logger.info("synthetic set: %s items in %s", summary["items"], out)
    return _result(out, summary, reused=False)


def _readme(params: dict, summary: dict, spec: SetSpec) -> str:
    table = "\n".join(
        f"| {t} | {p['field']} | {', '.join(f'{v:g}' for v in p['values'])} |"
        for t, p in params["level_params"].items()
    )
    stats = "\n".join(
        f"| {t} | {s['n']} | {s['min']:.2f} | {s['median']:.2f} | {s['max']:.2f} |"
        for t, s in summary["labels"].items()
    )
    return _README.format(
        labels=_LABEL_TEXT[spec.labels].format(s0=S0, n_photos=len(params["photos"])),
        s0=S0, table=table, stats=stats, seed=params["seed"], n_photos=len(params["photos"]),
        train=", ".join(summary["photos"]["train"]), test=", ".join(summary["photos"]["test"]),
        n_train=summary["items"]["train"], n_test=summary["items"]["test"],
    )  # fmt: skip


_LABEL_TEXT = {
    "ssim": """# Synthetic IQA set (SSIM labels)

**The labels are synthetic, not human opinion scores.** Each image is one of {n_photos} real photographs
(LIVE-Wild, see below and `LICENSE-LIVE-Challenge.txt`) distorted by a known type at a known level, and
its label `gt_score` is the SSIM (Wang et al., IEEE TIP 2004; luminance, 11x11 Gaussian window, sigma 1.5)
between the distorted image and its original, mapped to [1, 5] (higher better) by
`1 + 4 * clip((ssim - {s0}) / (1 - {s0}), 0, 1)`. SSIM measures fidelity to the source photo: the sources
themselves range from poor to excellent in human ratings, and a label says nothing about that. Use this set
to try the tools offline, not to report quality-assessment results.""",
    "level": """# Synthetic IQA set (distortion-level labels)

**The labels are synthetic, not human opinion scores.** Each image is one of {n_photos} real photographs
(LIVE-Wild, see below and `LICENSE-LIVE-Challenge.txt`) distorted by a known type at a known level, and
its label `gt_score` is that level: `5 - 4 k / n` for level k of n, the undistorted photo (k = 0, if
included) 5.0. Unlike SSIM against the source, the level is visible in the image itself, so a no-reference
model can learn it: a positive control for training, not a quality benchmark.""",
}

_README = """\
{labels}

Built by `qhawkeye.sample_data.synthetic.make_synthetic_iqa` (seed {seed}); parameters in `synthetic.json`.

## Distortions (level 1 mildest)

| type | parameter | values by level |
|---|---|---|
{table}

## Files

- `images/<photo>_<type>_<level>.png`, 192x192.
- `train.json` ({n_train} images) and `test.json` ({n_test} images): DeQA-Score meta format, a list of
  `{{"id", "images": [path relative to this folder], "gt_score", "source_photo", "dist_type", "level",
  "ssim"}}`. Split by source photo: no photo is on both sides.
- `card_test.yaml`: a benchmark card for `test.json` (`qhawkeye evaluate --benchmarks card_test.yaml`).

Train photos: {train}.
Test photos: {test}.

## Labels

| type | images | min | median | max |
|---|---|---|---|---|
{stats}

## Source photos and licence

The photos are from the LIVE In the Wild Image Quality Challenge Database, Laboratory for Image and Video
Engineering (LIVE, http://live.ece.utexas.edu), The University of Texas at Austin, resized to 192x192 and
bundled with qhawkeye (`qhawkeye/sample_data/NOTICE.md` names the original of each); the images here are
further modified copies. They are used under the database's copyright notice, `LICENSE-LIVE-Challenge.txt`
in this folder, which must accompany every copy. Research that uses them must acknowledge LIVE (UT Austin)
and cite:

- D. Ghadiyaram and A.C. Bovik, "Massive Online Crowdsourced Study of Subjective and Objective Picture
  Quality," IEEE Transactions on Image Processing, vol. 25, no. 1, pp. 372-387, 2016.
- D. Ghadiyaram and A.C. Bovik, "LIVE In the Wild Image Quality Challenge Database," Online:
  http://live.ece.utexas.edu/research/ChallengeDB/index.html, 2015.
"""
