"""Small-scale ablation of the paper's two additions: plain GRPO, +UADO, +PAO, +both, over several seeds.

    python benchmarks/ablation.py [--seeds 5] [--steps 100] [--settings recipe strong] [--out runs/ablation]

Every arm gets the same budget (optimizer steps, rollouts, data) on the demo's task: the tiny warm-started
model, the SSIM-labelled synthetic set built from the bundled photos (synthetic labels, not human scores),
split by photo with the seed, evaluated on the held-out photos (mean of 4 sampled answers per image).
Settings:

- ``recipe``: the paper's values, UADO alpha 0.2 (weights within [0.82, 1]) and PAO gamma 1e-4 -- at which
  little difference is expected;
- ``strong`` (labelled as such): alpha 2.0 (weights within [0.14, 1]) and gamma 1e-2, to see whether the
  mechanisms move anything when they are given weight.

``--data livec`` repeats it on the real LIVE-Wild subset (human MOS 0-100) in ../shared/data/livec: 300
training and 150 test images per seed, split by image. Runs are cached under ``--out/<data>/`` (a rerun only
does the missing ones). Prints a markdown table of the mean
SRCC/PLCC over seeds with a 95% t-interval, parse failures and the training time each arm used.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ARMS = {"GRPO": (False, False), "+UADO": (True, False), "+PAO": (False, True), "+UADO+PAO": (True, True)}
SETTINGS = {"recipe": (0.2, 1e-4), "strong": (2.0, 1e-2)}


LIVEC = Path(__file__).resolve().parents[2] / "shared" / "data" / "livec"


def livec_sample(out: Path, seed: int, n_train: int, n_test: int) -> dict:
    """A split by image of the real LIVE-Wild subset (human MOS 0-100): DeQA train file and a test card."""
    import random

    import yaml

    from qhawkeye.provenance import write_json_atomic

    rows = json.loads((LIVEC / "meta.json").read_text())
    random.Random(seed).shuffle(rows)
    train, test = rows[:n_train], rows[n_train : n_train + n_test]
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "train.json", train)
    write_json_atomic(out / "test.json", test)
    card = {"name": f"livec_test_seed{seed}", "label_file": str((out / "test.json").resolve()), "image_root": str(LIVEC),
            "format": "deqa", "mos_range": [0, 100], "lower_better": False}  # fmt: skip
    (out / "card_test.yaml").write_text(yaml.safe_dump(card))
    return {"train": out / "train.json", "card_test": out / "card_test.yaml", "mos_range": (0.0, 100.0),
            "image_root": str(LIVEC), "name": "livec"}  # fmt: skip


def one_run(setting: str, arm: str, seed: int, steps: int, root: Path, data: str = "synthetic") -> dict:
    """Train and evaluate one arm on one seed (cached in ``root/<setting>/<arm>/seed<k>/result.json``)."""
    from qhawkeye.demo import DemoConfig, build_sample, build_training_set, evaluate_model, train_model
    from qhawkeye.provenance import write_json_atomic

    run_dir = root / setting / arm.strip("+").replace("+", "_") / f"seed{seed}"
    cached = run_dir / "result.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    uado, pao = ARMS[arm]
    alpha, gamma = SETTINGS[setting]
    cfg = DemoConfig(out=str(root / f"data-{data}" / f"seed{seed}"), steps=steps, seed=seed, use_uado=uado, use_pao=pao,
                     uado_alpha=alpha, pao_gamma=gamma)  # fmt: skip
    data_root = Path(cfg.out)
    if data == "livec":
        sample = livec_sample(data_root / "sample", seed, n_train=300, n_test=150)
    else:
        sample = build_sample(cfg, data_root)
    dataset = build_training_set(cfg, sample, data_root)
    start = time.perf_counter()
    history = train_model(cfg, dataset, run_dir / "model")
    train_s = time.perf_counter() - start
    results = evaluate_model(cfg, str(run_dir / "model"), Path(sample["card_test"]), run_dir / "eval")
    bench = next(iter(results["benchmarks"].values()))
    steps_logged = [h for h in history if "loss" in h]
    result = {
        "data": data, "setting": setting, "arm": arm, "seed": seed, "steps": steps, "train_s": round(train_s, 1),
        "srcc": bench["metrics"]["srcc"], "plcc": bench["metrics"]["plcc"], "n": bench["n"],
        "n_total": bench["n_total"], "mean_step_s": statistics.mean(h["step_time"] for h in steps_logged),
        "final_reward": statistics.mean(h["reward"] for h in steps_logged[-10:]),
    }  # fmt: skip
    write_json_atomic(cached, result)
    return result


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval (scipy's t quantile) of the finite values."""
    from scipy import stats

    xs = [v for v in values if v is not None and math.isfinite(v)]
    if len(xs) < 2:
        return (xs[0] if xs else math.nan), math.nan, math.nan
    mean, sem = statistics.mean(xs), statistics.stdev(xs) / math.sqrt(len(xs))
    half = stats.t.ppf(0.975, len(xs) - 1) * sem
    return mean, mean - half, mean + half


def table(results: list[dict]) -> str:
    lines = ["| setting | arm | seeds | SRCC mean [95% CI] | PLCC mean [95% CI] | parsed | train s/run | s/step |",
             "|---|---|---:|---|---|---:|---:|---:|"]  # fmt: skip
    for setting in SETTINGS:
        for arm in ARMS:
            rows = [r for r in results if r["setting"] == setting and r["arm"] == arm]
            if not rows:
                continue
            s, p = t_interval([r["srcc"] for r in rows]), t_interval([r["plcc"] for r in rows])
            parsed = statistics.mean(r["n"] / r["n_total"] for r in rows)
            lines.append(
                f"| {setting} | {arm} | {len(rows)} | {s[0]:.3f} [{s[1]:.3f}, {s[2]:.3f}] | "
                f"{p[0]:.3f} [{p[1]:.3f}, {p[2]:.3f}] | {parsed:.0%} | "
                f"{statistics.mean(r['train_s'] for r in rows):.0f} | {statistics.mean(r['mean_step_s'] for r in rows):.2f} |"
            )  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument(
        "--data",
        choices=["synthetic", "livec"],
        default="synthetic",
        help="the demo's SSIM-labelled set, or the real LIVE-Wild subset in ../shared/data/livec",
    )
    args = parser.parse_args()
    root = Path(args.out)
    results = []
    for seed in range(args.seeds):  # seeds outermost: a partial run still covers every arm
        for setting in args.settings:
            for arm in ARMS:
                results.append(one_run(setting, arm, seed, args.steps, root / args.data, args.data))
                print(json.dumps(results[-1]), flush=True)
    labels = "synthetic SSIM labels" if args.data == "synthetic" else "LIVE-Wild human MOS, split by image"
    print(f"\n{args.steps} GRPO steps per run, tiny-format model, {labels}, {args.seeds} seeds\n")
    print(table(results))


if __name__ == "__main__":
    main()
