"""One-off: build the bundled sample photos in src/qhawkeye/sample_data/ from the LIVE-Wild subset.

    python scripts/make_sample_data.py --livec ../shared/data/livec

Reproducible: the same input folder gives byte-identical files. What it does:

1. reads ``scores.csv`` (image, MOS on the 0-100 slider, std) of the 700-image LIVE-Wild subset;
2. picks 32 photos spread evenly over the MOS range: 32 targets evenly spaced from the lowest to the highest
   MOS, each taking the unused photo whose MOS is nearest (ties: the smaller MOS, then the file name);
3. centre-crops each to a square (all but one are 500x500 already), resizes it to 192x192 with Lanczos
   (Pillow ``Image.LANCZOS``) and saves it as an optimised PNG named ``livec_<source stem>.png``;
4. copies ``LICENSE-LIVE-Challenge.txt`` verbatim and writes ``photos.json`` (file, source_file, mos) and
   ``NOTICE.md``.

The MOS recorded is the human score of the ORIGINAL full-size photo; see NOTICE.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

N_PHOTOS = 32
SIZE = 192
LICENSE = "LICENSE-LIVE-Challenge.txt"
OUT = Path(__file__).resolve().parents[1] / "src" / "qhawkeye" / "sample_data"

NOTICE = """\
# Bundled sample photographs (LIVE-Wild)

The {n} PNG files in this folder are photographs from the **LIVE In the Wild Image Quality Challenge
Database** (LIVE-Wild, also called LIVE-C), Laboratory for Image and Video Engineering (LIVE,
http://live.ece.utexas.edu), The University of Texas at Austin. They ship with qhawkeye so that its offline
demo and tests have real photographs; they are used under the database's copyright notice, reproduced in
full in `LICENSE-LIVE-Challenge.txt` beside this file, which must accompany every copy.

**Modified**: each photo was resized to {size}x{size} pixels with Lanczos resampling{crop}, then
saved as PNG.

`photos.json` lists, for every file, the original file it comes from (`source_file`) and `mos`: the
database's mean opinion score of the **original, full-size** photo (crowdsourced ratings on a 0-100 slider,
higher is better). Source names are those of the database, except that its BMP files are named `.png` here
(they were read from a copy in which the BMPs had been converted to PNG losslessly, pixel-identical; the
database's `54.bmp` is `54.png` in the table). Resizing changes how visible some distortions are (noise and
blur look milder at {size} px), so the MOS describes the original, not necessarily this copy.

The photos were chosen to spread evenly over the MOS range ({lo:.2f} to {hi:.2f} here) and were produced by
`scripts/make_sample_data.py` in the qhawkeye repository (`python scripts/make_sample_data.py --livec
<folder with the database's images and scores.csv>`), which gives byte-identical files from the same input.

## Acknowledgement and citation

These images come from the LIVE In the Wild Image Quality Challenge Database of the Laboratory for Image and
Video Engineering (LIVE) at The University of Texas at Austin. Any publication reporting research that uses
them must acknowledge LIVE (UT Austin) and cite:

- D. Ghadiyaram and A.C. Bovik, "Massive Online Crowdsourced Study of Subjective and Objective Picture
  Quality," IEEE Transactions on Image Processing, vol. 25, no. 1, pp. 372-387, 2016.
- D. Ghadiyaram and A.C. Bovik, "LIVE In the Wild Image Quality Challenge Database," Online:
  http://live.ece.utexas.edu/research/ChallengeDB/index.html, 2015.

## Files

| file | source_file | MOS (0-100) |
|---|---|---|
{rows}
"""


def read_scores(livec: Path) -> list[tuple[str, float]]:
    """``(source file, MOS)`` for every row of ``scores.csv``."""
    with (livec / "scores.csv").open(newline="") as f:
        return [(row["image"], float(row["mos"])) for row in csv.DictReader(f)]


def pick(scores: list[tuple[str, float]], n: int) -> list[tuple[str, float]]:
    """``n`` photos nearest to ``n`` MOS targets evenly spaced from the lowest to the highest MOS."""
    mos = [m for _, m in scores]
    chosen: dict[str, float] = {}
    for target in np.linspace(min(mos), max(mos), n):
        free = [(abs(m - target), m, name) for name, m in scores if name not in chosen]
        _, m, name = min(free)
        chosen[name] = m
    return sorted(chosen.items(), key=lambda item: Path(item[0]).stem.zfill(8))


def square(img: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square, then resize to ``size`` x ``size`` with Lanczos."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    box = (left, top, left + side, top + side)
    return img.convert("RGB").resize((size, size), Image.LANCZOS, box=box)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--livec", type=Path, required=True, help="folder with images/ and scores.csv")
    parser.add_argument("--out", type=Path, default=OUT, help="package data folder to (re)write")
    args = parser.parse_args()
    chosen = pick(read_scores(args.livec), N_PHOTOS)
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("livec_*.png"):
        old.unlink()
    photos, cropped = [], []
    for source, mos in chosen:
        with Image.open(args.livec / "images" / source) as img:
            if img.size[0] != img.size[1]:
                cropped.append(f"{source}, {img.size[0]}x{img.size[1]}")
            name = f"livec_{Path(source).stem}.png"
            square(img, SIZE).save(args.out / name, optimize=True)
        photos.append({"file": name, "source_file": source, "mos": mos})
    (args.out / "photos.json").write_text(json.dumps(photos, indent=1) + "\n")
    shutil.copyfile(args.livec / LICENSE, args.out / LICENSE)
    rows = "\n".join(f"| {p['file']} | {p['source_file']} | {p['mos']:.2f} |" for p in photos)
    mos = [p["mos"] for p in photos]
    crop = f" ({'; '.join(cropped)}: first centre-cropped to a square)" if cropped else " (from 500x500)"
    text = NOTICE.format(n=len(photos), crop=crop, size=SIZE, rows=rows, lo=min(mos), hi=max(mos))
    (args.out / "NOTICE.md").write_text(text)
    total = sum(f.stat().st_size for f in args.out.iterdir() if f.is_file())
    print(f"{len(photos)} photos, MOS {min(mos):.2f}..{max(mos):.2f}, {total / 1e6:.2f} MB in {args.out}")  # noqa: T201


if __name__ == "__main__":
    main()
