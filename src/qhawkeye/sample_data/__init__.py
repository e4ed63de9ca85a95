"""32 real photographs bundled with the package, for the offline demo and tests.

They come from the LIVE In the Wild Image Quality Challenge Database (LIVE, UT Austin), chosen to spread over
its MOS range and resized to 192x192 PNG by ``scripts/make_sample_data.py``; ``NOTICE.md`` beside this module
says which original each comes from and what to acknowledge and cite, and ``LICENSE-LIVE-Challenge.txt`` is
the database's notice, which must travel with every copy. ``photos.json`` holds each file's human MOS (of the
original, full-size photo; 0-100, higher better).

:mod:`qhawkeye.sample_data.synthetic` builds a synthetic IQA set (graded distortions, SSIM labels) from them.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHOTOS_JSON = "photos.json"
LICENSE = "LICENSE-LIVE-Challenge.txt"
NOTICE = "NOTICE.md"
MOS_RANGE = (0.0, 100.0)
"""The fixed scale of the bundled MOS (the LIVE-Wild slider), higher better."""


@lru_cache(maxsize=1)
def _entries() -> tuple[dict, ...]:
    """``photos.json``: ``{"file", "source_file", "mos"}`` per photo, in file order."""
    path = HERE / PHOTOS_JSON
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: this qhawkeye install lacks its sample data; reinstall the package"
        )
    return tuple(json.loads(path.read_text(encoding="utf-8")))


def photos() -> list[Path]:
    """The bundled photos (192x192 RGB PNG), in ``photos.json`` order (by source file number)."""
    return [HERE / entry["file"] for entry in _entries()]


def photo_mos() -> dict[str, float]:
    """File name (e.g. ``"livec_33.png"``) -> the human MOS of its original photo (0-100, higher better)."""
    return {entry["file"]: float(entry["mos"]) for entry in _entries()}


def license_path() -> Path:
    """The LIVE-Wild copyright notice that must accompany the photos (and anything made from them)."""
    return HERE / LICENSE


def notice_path() -> Path:
    """What the photos are, where each comes from, and the acknowledgement and citation required."""
    return HERE / NOTICE
