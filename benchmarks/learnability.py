"""The learnability ladder: positive controls of rising difficulty, each learnt by a supervised reference, plain
GRPO and Q-Hawkeye (UADO + PAO) from the same format warm start, on held-out photos, over seeds.

    python benchmarks/learnability.py [--rungs exposure blur noise mixed livewild] [--arms sft grpo qhawkeye]
        [--seeds 0 1 2] [--workers 1] [--threads 2] [--out runs/learnability] [--dry-run]

Rungs (every split is by source photo: no photo is on both sides):
- ``exposure``: the bundled photos darkened at 4 levels, plus the undistorted photo; label = the level.
- ``blur``: the same with Gaussian blur (one visible distortion, severity labels, pristine included).
- ``noise``: the same with Gaussian noise (another single distortion; std 3 to 60 on 0-255).
- ``mixed``: noise, blur, JPEG and darkening at 4 levels each, plus the undistorted photo; label = level.
- ``livewild``: the 700 real LIVE-Wild images with human MOS (../shared/data/livec; dev only, skipped when
  absent), resized to 192 px, split by image (one photo each).

Arms: ``sft`` is the supervised reference (true labels as answers: an upper reference, not our method);
``grpo`` is plain GRPO; ``qhawkeye`` adds UADO and PAO at the recipe's values. Both RL arms use the tiny
CPU learning recipe (``configs/train/tiny_learn.yaml``). Every run starts from the same per-seed warm start
(image-blind format targets on the rung's training images) and is scored on the held-out split in the
``expected`` mode (deterministic) and ``greedy``; the warm start itself is the baseline row.

Each run is cached as ``<out>/<rung>/<arm>/seed<k>/result.json`` (a rerun does only what is missing). The
table (mean over seeds with a 95% t-interval, CPU minutes per run) goes to stdout and ``<out>/table.md``.
``--workers N --threads 1`` runs N runs at once (one thread each: never two multi-threaded torch processes
on the same cores). ``--dry-run`` does a whole ladder at toy sizes (a few steps, 4 photos) to check the
plumbing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "train" / "tiny_learn.yaml"
LIVEC = ROOT.parent / "shared" / "data" / "livec"
RUNGS = {  # name -> (distortion types, levels) for the synthetic rungs
    "exposure": (("darken",), 4),
    "blur": (("blur",), 4),
    "noise": (("noise",), 4),
    "mixed": (("noise", "blur", "jpeg", "darken"), 4),
    "livewild": ((), 0),
}
ARMS = ("sft", "grpo", "qhawkeye")


@dataclass(frozen=True)
class Budget:
    """How much each arm gets. The RL arms' steps are GRPO optimizer steps of the recipe's batch."""

    grpo_steps: int = 150
    sft_steps: int = 150
    warm_steps: int = 150
    photos: int | None = None
    livewild_train: int = 525
    max_new_tokens: int = 48


DRY = Budget(grpo_steps=3, sft_steps=2, warm_steps=2, photos=4, livewild_train=6, max_new_tokens=24)


# ---------------------------------------------------------------------------------------------- data


def rung_sample(rung: str, out: Path, seed: int, budget: Budget) -> dict:
    """The rung's image set (train.json, test.json, card_test.yaml) under ``out``; built once."""
    from qhawkeye.sample_data.synthetic import make_synthetic_iqa

    if rung == "livewild":
        return livewild_sample(out, seed, budget)
    types, levels = RUNGS[rung]
    return make_synthetic_iqa(out, types=types, levels=levels, labels="level", pristine=True, seed=seed,
                              photos=budget.photos)  # fmt: skip


def livewild_sample(out: Path, seed: int, budget: Budget) -> dict:
    """LIVE-Wild resized to 192x192 (as the bundled photos), split by image; labels MOS 0-100 -> [1, 5]."""
    import random

    import yaml
    from PIL import Image

    from qhawkeye.provenance import write_json_atomic

    if (out / "card_test.yaml").is_file():
        return {"train": out / "train.json", "test": out / "test.json", "card_test": out / "card_test.yaml"}
    rows = json.loads((LIVEC / "meta.json").read_text())
    random.Random(seed).shuffle(rows)
    n_test = len(rows) // 4 if budget.photos is None else 4
    test, train = rows[:n_test], rows[n_test : n_test + budget.livewild_train]
    (out / "images").mkdir(parents=True, exist_ok=True)
    split = {}
    for name, part in (("train", train), ("test", test)):
        items = []
        for row in part:
            image = out / "images" / (Path(row["images"][0]).stem + ".png")
            if not image.is_file():
                Image.open(LIVEC / row["images"][0]).convert("RGB").resize((192, 192), Image.BICUBIC).save(
                    image
                )
            label = 1 + 4 * float(row["gt_score"]) / 100  # the card's fixed 0-100 range
            items.append({"id": row["id"], "images": [f"images/{image.name}"], "gt_score": round(label, 4),
                          "source_photo": image.name, "dist_type": "authentic"})  # fmt: skip
        write_json_atomic(out / f"{name}.json", items)
        split[name] = out / f"{name}.json"
    card = {"name": f"livewild192_test_seed{seed}", "label_file": "test.json", "image_root": ".", "format": "deqa",
            "score_column": "gt_score", "mos_range": [1, 5], "lower_better": False,
            "description": "LIVE-Wild (700-image subset) resized to 192 px; MOS 0-100 mapped to [1, 5]"}  # fmt: skip
    (out / "card_test.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return {**split, "card_test": out / "card_test.yaml"}


def training_set(sample: dict, out: Path, seed: int) -> Path:
    """Original/degraded pairs of the training split through the real pipeline (the demo's stages)."""
    from qhawkeye.demo import DemoConfig, build_training_set

    return build_training_set(
        DemoConfig(seed=seed), {**sample, "image_root": str(Path(sample["train"]).parent)}, out
    )


def train_images(sample: dict) -> tuple[list, list[float]]:
    from qhawkeye.scoring.scorer import load_image

    root = Path(sample["train"]).parent
    rows = json.loads(Path(sample["train"]).read_text())
    return [load_image(root / r["images"][0]) for r in rows], [float(r["gt_score"]) for r in rows]


# ---------------------------------------------------------------------------------------------- runs


def warm_start(rung_dir: Path, sample: dict, seed: int, budget: Budget) -> Path:
    from qhawkeye.modeling import resolve_model_path
    from qhawkeye.train.warmstart import warm_start_folder

    images, _ = train_images(sample)
    return warm_start_folder(resolve_model_path("tiny"), images, rung_dir / f"warm_start_seed{seed}",
                             steps=budget.warm_steps, seed=seed)  # fmt: skip


def evaluate(model: Path, sample: dict, budget: Budget) -> dict:
    """Held-out SRCC/PLCC in the expected and greedy modes, with spread and ties."""
    from qhawkeye.evaluate.metrics import compute_metrics
    from qhawkeye.scoring import create_scorer

    root = Path(sample["test"]).parent
    rows = json.loads(Path(sample["test"]).read_text())
    out = {}
    for mode in ("expected", "greedy"):
        scorer = create_scorer(str(model), mode=mode, max_new_tokens=budget.max_new_tokens, dtype="float32",
                               batch_size=32)  # fmt: skip
        results = scorer.score_batch([str(root / r["images"][0]) for r in rows], [r["id"] for r in rows])
        pairs = [
            (res.score, float(r["gt_score"])) for res, r in zip(results, rows, strict=True) if res.parsed
        ]
        m = compute_metrics([p for p, _ in pairs], [g for _, g in pairs]) if pairs else None
        out[mode] = {"srcc": None if m is None or math.isnan(m.srcc) else m.srcc,
                     "plcc": None if m is None or math.isnan(m.plcc) else m.plcc,
                     "parsed": len(pairs) / len(rows), "n_distinct": m.n_distinct if m else 0,
                     "score_std": m.pred_std if m else None,
                     "out_of_range": sum(res.clipped for res in results) / len(rows)}  # fmt: skip
    return out


def rl_config(
    arm: str, dataset: Path, warm: Path, out: Path, seed: int, budget: Budget, overrides: dict
) -> dict:
    import yaml

    values = yaml.safe_load(RECIPE.read_text())
    values.update(model_name_or_path=str(warm), dataset_path=str(dataset), output_dir=str(out), seed=seed,
                  max_steps=budget.grpo_steps, max_completion_length=budget.max_new_tokens, save_strategy="no",
                  use_uado=arm == "qhawkeye", use_pao=arm == "qhawkeye", disable_tqdm=True)  # fmt: skip
    if arm != "qhawkeye":
        values["pao_eta1"] = 0.0
    values.update(overrides)
    return values


def train_arm(arm: str, rung_dir: Path, sample: dict, seed: int, budget: Budget, out: Path, overrides: dict):
    """Train one arm into ``out``; returns the training log (RL arms) or losses (sft)."""
    warm = warm_start(rung_dir, sample, seed, budget)
    if arm == "sft":
        from qhawkeye.modeling import load_model, load_processor
        from qhawkeye.train.warmstart import supervised_fine_tune

        images, labels = train_images(sample)
        model, processor = load_model(warm, dtype="float32"), load_processor(warm)
        losses = supervised_fine_tune(model, processor, images, labels, budget.sft_steps, seed=seed)
        model.save_pretrained(out)
        processor.save_pretrained(out)
        return [{"step": n + 1, "loss": v} for n, v in enumerate(losses)]
    from qhawkeye.train.config import parse_dict
    from qhawkeye.train.main import train

    dataset = training_set(sample, rung_dir / f"pairs_seed{seed}", seed)
    values = rl_config(arm, dataset, warm, out, seed, budget, overrides)
    trainer = train(*parse_dict(values, source=str(RECIPE)))
    return trainer.state.log_history


@dataclass(frozen=True)
class Run:
    rung: str
    arm: str  # sft, grpo, qhawkeye, or "warm" (the warm start alone)
    seed: int
    tag: str = ""  # names a variant of the recipe (overrides)
    overrides: tuple = ()


def run_one(run: Run, root: Path, budget: Budget, threads: int) -> dict:
    import torch

    from qhawkeye import allocator
    from qhawkeye.provenance import write_json_atomic

    allocator.tune()  # as the qhawkeye command does (each worker process)
    torch.set_num_threads(threads)
    run_dir = root / run.rung / (run.arm + (f"-{run.tag}" if run.tag else "")) / f"seed{run.seed}"
    cached = run_dir / "result.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    rung_dir = root / run.rung / "data"
    sample = rung_sample(run.rung, rung_dir / "sample", 0, budget)  # one split per rung; seeds vary training
    start_cpu, start = time.process_time(), time.perf_counter()
    if run.arm == "warm":
        model, history = warm_start(rung_dir, sample, run.seed, budget), []
    else:
        model = run_dir / "model"
        history = train_arm(run.arm, rung_dir, sample, run.seed, budget, model, dict(run.overrides))
    train_cpu, train_s = time.process_time() - start_cpu, time.perf_counter() - start
    result = {**asdict(run), "overrides": dict(run.overrides), "budget": asdict(budget),
              "train_cpu_s": round(train_cpu, 1), "train_s": round(train_s, 1), "threads": threads,
              "eval": evaluate(model, sample, budget), "history_tail": history[-3:]}  # fmt: skip
    write_json_atomic(cached, result)
    return result


# ---------------------------------------------------------------------------------------------- report


def reevaluate(root: Path, budget: Budget) -> int:
    """Score every cached run's model again (after a change to scoring); returns how many were redone."""
    from qhawkeye.provenance import write_json_atomic

    done = 0
    for cached in sorted(root.glob("*/*/seed*/result.json")):
        result = json.loads(cached.read_text())
        model = cached.parent / "model"
        if result["arm"] == "warm":
            model = root / result["rung"] / "data" / f"warm_start_seed{result['seed']}"
        if not (model / "config.json").is_file():
            continue
        sample = {"test": root / result["rung"] / "data" / "sample" / "test.json"}
        result["eval"] = evaluate(model, sample, Budget(**result["budget"]))
        write_json_atomic(cached, result)
        done += 1
    return done


def t_interval(values: list) -> tuple[float, float, float]:
    from scipy import stats

    xs = [v for v in values if v is not None and math.isfinite(v)]
    if len(xs) < 2:
        return (xs[0] if xs else math.nan), math.nan, math.nan
    mean, sem = statistics.mean(xs), statistics.stdev(xs) / math.sqrt(len(xs))
    half = stats.t.ppf(0.975, len(xs) - 1) * sem
    return mean, mean - half, mean + half


def _cell(values: list) -> str:
    mean, lo, hi = t_interval(values)
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f}" + ("" if math.isnan(lo) else f" [{lo:.3f}, {hi:.3f}]")


def table(results: list[dict]) -> str:
    lines = ["| rung | arm | seeds | SRCC expected [95% CI] | PLCC expected | SRCC greedy | parsed greedy | "
             "greedy outside [1, 5] | score std (expected) | CPU min/run |",
             "|---|---|---:|---|---|---|---:|---:|---:|---:|"]  # fmt: skip
    keys = sorted(
        {(r["rung"], r["arm"], r["tag"]) for r in results}, key=lambda k: (list(RUNGS).index(k[0]), k[1:])
    )
    for rung, arm, tag in keys:
        rows = [r for r in results if (r["rung"], r["arm"], r["tag"]) == (rung, arm, tag)]
        e = [r["eval"]["expected"] for r in rows]
        g = [r["eval"]["greedy"] for r in rows]
        std = statistics.mean(x["score_std"] or 0.0 for x in e)
        lines.append(
            f"| {rung} | {arm}{f' ({tag})' if tag else ''} | {len(rows)} | {_cell([x['srcc'] for x in e])} | "
            f"{_cell([x['plcc'] for x in e])} | {_cell([x['srcc'] for x in g])} | "
            f"{statistics.mean(x['parsed'] for x in g):.0%} | {statistics.mean(x.get('out_of_range', 0) for x in g):.0%} | "
            f"{std:.3g} | "
            f"{statistics.mean(r['train_cpu_s'] for r in rows) / 60:.1f} |"
        )  # fmt: skip
    return "\n".join(lines)


def runs_for(rungs, arms, seeds, variants: dict[str, dict]) -> list[Run]:
    runs = []
    for seed in seeds:  # seeds outermost: a partial ladder still covers every rung and arm
        for rung in rungs:
            runs.append(Run(rung, "warm", seed))
            for arm in arms:
                if arm == "sft" or not variants:
                    runs.append(Run(rung, arm, seed))
                    continue
                runs += [Run(rung, arm, seed, tag, tuple(sorted(v.items()))) for tag, v in variants.items()]
    return runs


def prepare(runs: list[Run], root: Path, budget: Budget) -> None:
    """Every rung's image set and per-seed training pairs, built once here, before any run starts (runs in
    parallel must not build the same folders, and the pipeline's own process pool cannot run in a worker)."""
    for rung, seed in sorted({(r.rung, r.seed) for r in runs if r.arm in ("grpo", "qhawkeye")}):
        rung_dir = root / rung / "data"
        training_set(rung_sample(rung, rung_dir / "sample", 0, budget), rung_dir / f"pairs_seed{seed}", seed)
    for rung in sorted({r.rung for r in runs}):
        rung_sample(rung, root / rung / "data" / "sample", 0, budget)


def execute(runs: list[Run], root: Path, budget: Budget, workers: int, threads: int) -> list[dict]:
    """Data first, then the warm starts (arms share them), then the rest; in a process pool when ``workers`` > 1."""
    prepare(runs, root, budget)
    warm = [r for r in runs if r.arm == "warm"]
    rest = [r for r in runs if r.arm != "warm"]
    results = []
    for batch in (warm, rest):
        if workers == 1:
            for run in batch:
                results.append(run_one(run, root, budget, threads))
                print(json.dumps(_brief(results[-1])), flush=True)
            continue
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers, maxtasksperchild=1) as pool:
            jobs = [pool.apply_async(run_one, (run, root, budget, threads)) for run in batch]
            for job in jobs:
                results.append(job.get())
                print(json.dumps(_brief(results[-1])), flush=True)
    return results


def _brief(result: dict) -> dict:
    e, g = result["eval"]["expected"], result["eval"]["greedy"]
    return {"rung": result["rung"], "arm": result["arm"], "tag": result["tag"], "seed": result["seed"],
            "srcc_expected": e["srcc"], "srcc_greedy": g["srcc"], "parsed": g["parsed"],
            "std": e["score_std"], "cpu_s": result["train_cpu_s"]}  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rungs", nargs="+", default=list(RUNGS), choices=list(RUNGS))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--grpo-steps", type=int, default=Budget.grpo_steps)
    parser.add_argument("--sft-steps", type=int, default=Budget.sft_steps)
    parser.add_argument(
        "--variants", default=None, help="JSON {tag: {config field: value}} of recipe variants"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/learnability")
    parser.add_argument(
        "--dry-run", action="store_true", help="toy sizes: checks the plumbing in about a minute"
    )
    parser.add_argument(
        "--reevaluate", action="store_true", help="score every cached run's model again, then exit"
    )
    args = parser.parse_args(argv)
    if args.reevaluate:
        print(f"re-evaluated {reevaluate(Path(args.out), Budget())} runs")
        return
    budget = DRY if args.dry_run else Budget(grpo_steps=args.grpo_steps, sft_steps=args.sft_steps)
    rungs = [r for r in args.rungs if r != "livewild" or (LIVEC / "meta.json").is_file()]
    if len(rungs) < len(args.rungs):
        print(f"livewild skipped: {LIVEC} not found")
    variants = json.loads(args.variants) if args.variants else {}
    runs = runs_for(rungs, args.arms, args.seeds, variants)
    results = execute(runs, Path(args.out), budget, args.workers, args.threads)
    text = table(results)
    (Path(args.out) / "table.md").write_text(text + "\n")
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
