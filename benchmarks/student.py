"""The student scorer (issue 12): cross-validated accuracy on the 700 LIVE-Wild images, speed against the tiny
VLM scorer, and distillation from a teacher's score file.

    python benchmarks/student.py [--seeds 0 1 2 3 4] [--threads 2] [--out runs/bench_student] [--skip-speed]

Accuracy: 5-fold cross-validation split by image (every LIVE-Wild image is its own photo), repeated over the
seeds; each fold fits on 4/5 and scores the held-out 1/5 (the ridge penalty chosen by an inner 5-fold CV on the
training part only). Reported: the SRCC/PLCC of the pooled out-of-fold predictions per seed, mean and 95%
t-interval over seeds, and the paired difference against the frozen linear head. Arms:
- ``laplacian``: variance of the Laplacian of the grey image (a classic sharpness score; no fitting);
- ``linear head``: ridge on the backbone's final 1,280 pooled features of the image resized to 224x224 (the
  ImageNet recipe: the frozen-feature linear probe), and the same at native resolution;
- ``student``: ridge on all 8 taps' means and standard deviations (4,128 features), at several pixel budgets
  (``max_pixels``; native = 500x500 here).
Speed: images per second of ``StudentScorer.score_batch`` on 512x384 JPEG files (batched, from disk, decoding
included) against the tiny VLM scorer (``Scorer``, greedy, the same files) in the same run, with their ratio.
Distillation: per seed, a teacher student is fitted on the labels of 350 images; it scores 250 other images
through ``qhawkeye score`` into a JSONL file; a new student is distilled from that file alone (no labels); on the
100 remaining images, never seen by either, SRCC(student, teacher) and both against the human scores.
Needs ../shared/data/livec. Results: stdout and <out>/results.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
LIVEC = ROOT.parent / "shared" / "data" / "livec"
BUDGETS = {"native": None, "131k (default)": 131_072, "98k": 98_304}


def t_interval(xs: list[float]) -> tuple[float, float, float]:
    from scipy import stats

    mean = statistics.mean(xs)
    if len(xs) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return mean, mean - half, mean + half


def laplacian_variance(image) -> float:
    from scipy import ndimage

    grey = np.asarray(image.convert("L"), dtype=np.float64)
    return float(ndimage.laplace(grey).var())


def features(images, spec, threads: int) -> np.ndarray:
    import torch

    from qhawkeye.student.features import FeatureExtractor

    torch.set_num_threads(threads)
    return FeatureExtractor(spec, batch_size=8)(images)


def cv_predictions(x: np.ndarray, y: np.ndarray, seed: int, folds: int = 5) -> np.ndarray:
    from qhawkeye.student.head import fit_ridge

    n = len(y)
    fold = np.random.default_rng(1000 + seed).permutation(n) % folds
    pred = np.zeros(n)
    for f in range(folds):
        tr, te = fold != f, fold == f
        fit = fit_ridge(x[tr], y[tr], np.ones(tr.sum()), [str(i) for i in np.flatnonzero(tr)], seed=seed)
        pred[te] = fit.predict(x[te])
    return pred


def accuracy(seeds: list[int], threads: int) -> dict:
    from PIL import Image
    from scipy.stats import pearsonr, spearmanr

    from qhawkeye.labels import load_items, resolve_card
    from qhawkeye.student.features import FeatureSpec

    items = load_items(resolve_card(str(ROOT / "configs/benchmarks/livec_700.yaml"), LIVEC), LIVEC)
    images = [Image.open(i.image).convert("RGB") for i in items]
    y = np.array([i.label for i in items])
    arms: dict[str, np.ndarray | None] = {"laplacian": None}
    t = time.perf_counter()
    head_dim = 2 * 1280
    small = [im.resize((224, 224), Image.BICUBIC) for im in images]
    arms["linear head (224x224)"] = features(small, FeatureSpec(max_pixels=None), threads)[:, -head_dim:-1280]
    timings = {}
    for name, budget in BUDGETS.items():
        start = time.perf_counter()
        f = features(images, FeatureSpec(max_pixels=budget), threads)
        timings[name] = round(time.perf_counter() - start, 1)
        if name == "native":
            arms["linear head (native)"] = f[:, -head_dim:-1280]
        arms[f"student ({name})"] = f
    print(f"features in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    lap = np.array([laplacian_variance(im) for im in images])
    out = {}
    for name, x in arms.items():
        per_seed = []
        for seed in seeds:
            pred = lap if x is None else cv_predictions(x, y, seed)
            per_seed.append((float(spearmanr(pred, y).statistic), float(pearsonr(pred, y).statistic)))
        out[name] = {"srcc": [s for s, _ in per_seed], "plcc": [p for _, p in per_seed]}
        print(name, _fmt(out[name]["srcc"]), file=sys.stderr)
    base = out["linear head (224x224)"]["srcc"]
    for name in out:
        out[name]["srcc_minus_linear_head"] = [a - b for a, b in zip(out[name]["srcc"], base, strict=True)]
    out["_feature_seconds_700"] = timings
    return out


def _fmt(xs) -> str:
    m, lo, hi = t_interval(list(xs))
    return f"{m:.3f}" + ("" if math.isnan(lo) else f" [{lo:.3f}, {hi:.3f}]")


def speed(threads: int, n: int, out: Path) -> dict:
    import torch
    from PIL import Image

    from qhawkeye.scoring import create_scorer

    torch.set_num_threads(threads)
    folder = out / "speed_images"
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted((LIVEC / "images").iterdir())[:n]
    paths = []
    for f in files:
        p = folder / (f.stem + ".jpg")
        if not p.is_file():
            Image.open(f).convert("RGB").resize((512, 384), Image.BICUBIC).save(p, quality=90)
        paths.append(str(p))
    res = {}
    arms = {
        "student (default)": create_scorer("default", batch_size=16),
        "tiny VLM (greedy, 64 tokens)": create_scorer(
            "tiny", batch_size=16, max_new_tokens=64, dtype="float32"
        ),
    }
    for name, scorer in arms.items():
        scorer.score_batch(paths[:4])  # warm-up
        rates = []
        for _ in range(3):
            start = time.perf_counter()
            for i in range(0, len(paths), 16):
                scorer.score_batch(paths[i : i + 16])
            rates.append(len(paths) / (time.perf_counter() - start))
        res[name] = round(statistics.median(rates), 2)
        print(name, res[name], "img/s", file=sys.stderr)
    names = list(res)
    res["ratio"] = round(res[names[0]] / res[names[1]], 1)
    return res


def distillation(seeds: list[int], threads: int, out: Path) -> dict:
    from scipy.stats import spearmanr

    from qhawkeye.atomic import write_json_atomic
    from qhawkeye.scoring.config import ScorerConfig
    from qhawkeye.scoring.main import run as score_run
    from qhawkeye.scoring.scorer import create_scorer
    from qhawkeye.student.config import DistillConfig
    from qhawkeye.student.distill import distill

    rows = json.loads((LIVEC / "meta.json").read_text())
    res = []
    for seed in seeds:
        base = out / f"distill_seed{seed}"
        order = np.random.default_rng(seed).permutation(len(rows))
        teach, unlabelled, held = order[:350], order[350:600], order[600:]
        write_json_atomic(base / "teacher_labels.json", [rows[i] for i in teach])
        card = {"name": f"livec_teacher_seed{seed}", "label_file": "teacher_labels.json", "image_root": str(LIVEC),
                "format": "deqa", "score_column": "gt_score", "mos_range": [0, 100], "lower_better": False}  # fmt: skip
        (base / "card.yaml").write_text(json.dumps(card))
        if not (base / "teacher" / "student.json").is_file():
            distill(DistillConfig(out=str(base / "teacher"), labels=[str(base / "card.yaml")], threads=threads),
                    progress=False)  # fmt: skip
        scores = base / "teacher_scores.jsonl"
        if not scores.is_file():
            score_run([str(LIVEC / rows[i]["images"][0]) for i in unlabelled],
                      ScorerConfig(model=str(base / "teacher")), out=str(scores), progress=False)  # fmt: skip
        if not (base / "student" / "student.json").is_file():
            distill(DistillConfig(out=str(base / "student"), teacher_scores=[str(scores)], threads=threads),
                    progress=False)  # fmt: skip
        held_paths = [str(LIVEC / rows[i]["images"][0]) for i in held]
        human = [rows[i]["gt_score"] for i in held]
        t = [r.score for r in create_scorer(str(base / "teacher")).score_batch(held_paths)]
        s = [r.score for r in create_scorer(str(base / "student")).score_batch(held_paths)]
        entry = {"seed": seed, "srcc_student_teacher": float(spearmanr(s, t).statistic),
                 "srcc_teacher_human": float(spearmanr(t, human).statistic),
                 "srcc_student_human": float(spearmanr(s, human).statistic)}  # fmt: skip
        print(entry, file=sys.stderr)
        res.append(entry)
    return {"per_seed": res}


def main() -> int:
    from qhawkeye import allocator

    allocator.tune()  # as the qhawkeye command does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--speed-images", type=int, default=64)
    parser.add_argument("--out", default="runs/bench_student")
    parser.add_argument("--skip", nargs="*", default=[], choices=["accuracy", "speed", "distillation"])
    args = parser.parse_args()
    if not (LIVEC / "meta.json").is_file():
        print(f"{LIVEC} not found: this benchmark needs the LIVE-Wild subset", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"threads": args.threads, "seeds": args.seeds}
    if "accuracy" not in args.skip:
        results["accuracy"] = accuracy(args.seeds, args.threads)
    if "speed" not in args.skip:
        results["speed"] = speed(args.threads, args.speed_images, out)
    if "distillation" not in args.skip:
        results["distillation"] = distillation(args.seeds[:3], args.threads, out)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(report(results))
    return 0


def report(results: dict) -> str:
    lines = []
    if "accuracy" in results:
        lines += [
            "| arm | SRCC [95% CI over seeds] | PLCC | SRCC - linear head (224) [95% CI] |",
            "|---|---|---|---|",
        ]
        for name, r in results["accuracy"].items():
            if name.startswith("_"):
                continue
            lines.append(
                f"| {name} | {_fmt(r['srcc'])} | {_fmt(r['plcc'])} | {_fmt(r['srcc_minus_linear_head'])} |"
            )
        lines.append(f"feature extraction, 700 images: {results['accuracy']['_feature_seconds_700']} s")
    if "speed" in results:
        lines.append(f"speed at 512x384: {results['speed']}")
    if "distillation" in results:
        d = results["distillation"]["per_seed"]
        for key in ("srcc_student_teacher", "srcc_teacher_human", "srcc_student_human"):
            lines.append(f"{key}: {_fmt([e[key] for e in d])}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
