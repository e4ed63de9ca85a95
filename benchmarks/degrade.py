"""Images per second of the parallel degrade stage against a sequential loop on the same images.

    python benchmarks/degrade.py [--images 120] [--workers 2] [--rounds 3]

Both arms run :func:`qhawkeye.data.pairs.run_degrade` on the same ingest manifest with the same seed (so
they write byte-identical files, checked), into fresh folders: ``workers=1`` (in-process loop) and
``workers=N`` (process pool). Rounds are interleaved; medians and the ratio are printed as markdown.
Images: the LIVE-Wild subset in ../shared/data/livec when present (500x500 photos), else generated ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

LIVEC = Path(__file__).resolve().parents[2] / "shared" / "data" / "livec"


def make_source(folder: Path, n: int) -> tuple[Path, str]:
    """An ingest-stage folder over ``n`` images."""
    from qhawkeye.data.manifest import write_records

    if (LIVEC / "meta.json").is_file():
        rows = json.loads((LIVEC / "meta.json").read_text())[:n]
        paths = [LIVEC / r["images"][0] for r in rows]
        what = f"{len(paths)} LIVE-Wild photos (500x500)"
    else:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(n):
            paths.append(folder / f"img{i}.png")
            Image.fromarray((rng.random((500, 500, 3)) * 255).astype("uint8")).save(paths[-1])
        what = f"{n} generated 500x500 images"
    records = [{"id": p.stem, "group_id": f"bench/{p.stem}", "source": "bench", "image": str(p), "mos": 3.0,
                "mos_range": [1, 5], "lower_better": False, "gt_score": 3.0} for p in paths]  # fmt: skip
    write_records(folder / "ingest", records, "ingest", {})
    return folder / "ingest", what


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        h.update(p.read_bytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from qhawkeye.data.pairs import DegradeConfig, run_degrade

    with tempfile.TemporaryDirectory() as tmp:
        source, what = make_source(Path(tmp), args.images)
        arms = {"sequential loop (workers=1)": 1, f"process pool (workers={args.workers})": args.workers}
        times: dict[str, list[float]] = {name: [] for name in arms}
        digests = set()
        for r in range(args.rounds):
            for name, workers in arms.items():
                out = Path(tmp) / f"out-{r}-{workers}"
                start = time.perf_counter()
                run_degrade(source, out, DegradeConfig(workers=workers), progress=False)
                times[name].append(time.perf_counter() - start)
                digests.add(digest(out / "images"))
    base = statistics.median(times[next(iter(arms))])
    print(f"\n{what}, {args.rounds} interleaved rounds; {platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| arm | median s | images/s | ratio vs sequential |\n|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {args.images / median:.1f} | **{base / median:.2f}x** |")
    print(f"\nidentical output files in every run: {len(digests) == 1}")


if __name__ == "__main__":
    main()
