"""`qhawkeye evaluate`: score benchmarks, then compute correlations with bootstrap intervals and render them.

For each benchmark card the predictions go to ``<out>/predictions/<name>.jsonl`` (the resumable result file
of ``qhawkeye score``, keyed by the label file's ids), so an interrupted evaluation continues where it
stopped. Under ``torchrun``/``accelerate launch`` every process scores the rows ``rank::world_size`` into its
own ``<name>.rank<r>-of-<w>.jsonl``; after a barrier, process 0 merges the shards and computes the metrics.
Metrics use the rows whose answer parsed; parse failures and unreadable images are counted, never imputed.
Outputs: ``results.json`` (metrics, versions, git commit, decoding), ``results.md`` and one scatter plot per
benchmark in ``plots/``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from qhawkeye import provenance
from qhawkeye.evaluate import report
from qhawkeye.evaluate.config import EvaluateConfig
from qhawkeye.evaluate.metrics import bootstrap_intervals, compute_metrics
from qhawkeye.labels import BenchmarkCard, BenchmarkItem, load_items, resolve_card
from qhawkeye.scoring.io import InputItem, ResultFile
from qhawkeye.scoring.main import score_items
from qhawkeye.scoring.scorer import Scorer, ScorerConfig, load_scorer

logger = logging.getLogger(__name__)
AVERAGED = ("srcc", "krcc", "plcc", "plcc_logistic", "rmse_logistic")


def dist_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the launcher's environment (1 process when not launched)."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def _barrier(world: int) -> None:
    if world == 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")  # only for the barrier: no tensors cross processes
    dist.barrier()


def shard_path(pred_dir: Path, name: str, rank: int, world: int) -> Path:
    return pred_dir / (f"{name}.jsonl" if world == 1 else f"{name}.rank{rank}-of-{world}.jsonl")


def score_benchmark(
    scorer: Scorer, card: BenchmarkCard, items: list[BenchmarkItem], pred_dir: Path, progress: bool = True
) -> None:
    """This process's share of one benchmark, into its resumable shard file."""
    rank, world, _ = dist_info()
    run = {**scorer.describe(), "benchmark": card.name}
    out = ResultFile(shard_path(pred_dir, card.name, rank, world), run)
    mine = [InputItem(item.id, item.image) for item in items[rank::world]]
    counts = score_items(scorer, mine, out, progress=progress and rank == 0)
    logger.info("%s rank %d: %s", card.name, rank, dict(counts))


def merged_predictions(pred_dir: Path, name: str, world: int) -> dict[str, dict]:
    """id -> prediction row over every shard of a benchmark."""
    rows: dict[str, dict] = {}
    for rank in range(world):
        path = shard_path(pred_dir, name, rank, world)
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[str(row["id"])] = row
    return rows


def benchmark_metrics(
    card: BenchmarkCard, items: list[BenchmarkItem], rows: dict[str, dict], config: EvaluateConfig
) -> tuple[dict, np.ndarray, np.ndarray]:
    """The results entry of one benchmark, and the (pred, gt) arrays of its parsed rows."""
    missing = [item.id for item in items if item.id not in rows]
    if missing:
        raise RuntimeError(f"{card.name}: {len(missing)} rows have no prediction (first: {missing[0]!r})")
    parsed = [(rows[i.id]["score"], i.label, i.dist_type) for i in items if rows[i.id]["score"] is not None]
    pred = np.array([p for p, _, _ in parsed], dtype=float)
    gt = np.array([g for _, g, _ in parsed], dtype=float)
    statuses = [rows[i.id]["status"] for i in items]
    metrics = compute_metrics(pred, gt)
    ci = (
        bootstrap_intervals(pred, gt, config.bootstrap, seed=config.bootstrap_seed)
        if config.bootstrap
        else {}
    )
    by_type: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for p, g, t in parsed:
        if t is not None:
            by_type[str(t)].append((p, g))
    entry = {
        "n": len(parsed),
        "n_total": len(items),
        "parse_failures": statuses.count("parse_failure"),
        "unreadable": statuses.count("unreadable"),
        "metrics": metrics.to_dict(),
        "ci95": {k: list(v) for k, v in ci.items()},
        "by_type": {
            t: compute_metrics(*map(np.array, zip(*pairs, strict=True))).to_dict()
            for t, pairs in sorted(by_type.items())
        },
        "mos_range": list(card.mos_range),
        "lower_better": card.lower_better,
        "predictions": str(Path("predictions") / f"{card.name}.jsonl"),
    }
    return entry, pred, gt


def average(benchmarks: dict[str, dict]) -> dict:
    """Mean of each metric over the benchmarks where it is defined."""
    out: dict = {}
    for key in AVERAGED:
        values = [v for b in benchmarks.values() if (v := b["metrics"][key]) is not None and np.isfinite(v)]
        out[key] = float(np.mean(values)) if values else float("nan")
    out["benchmarks"] = len(benchmarks)
    return out


def evaluate(scorer_config: ScorerConfig, config: EvaluateConfig, progress: bool = True) -> dict | None:
    """Score every benchmark (this process's share), then (process 0) merge, compute and write the results.

    Returns the results dict on process 0, None on the others.
    """
    rank, world, local_rank = dist_info()
    if world > 1 and scorer_config.device is None:
        import torch

        scorer_config.device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    out = Path(config.out)
    pred_dir = out / "predictions"
    cards = [resolve_card(name, config.data_root) for name in config.benchmarks]
    data = {card.name: load_items(card, config.data_root)[: config.limit] for card in cards}
    scorer = load_scorer(scorer_config)
    for card in cards:
        score_benchmark(scorer, card, data[card.name], pred_dir, progress)
    _barrier(world)
    if rank != 0:
        return None
    return _finish(scorer, cards, data, pred_dir, config, world)


def _finish(scorer: Scorer, cards, data, pred_dir: Path, config: EvaluateConfig, world: int) -> dict:
    out = Path(config.out)
    benchmarks, arrays = {}, {}
    for card in cards:
        rows = merged_predictions(pred_dir, card.name, world)
        entry, *arrays[card.name] = benchmark_metrics(card, data[card.name], rows, config)
        if world > 1:  # one merged file beside the shards
            merged = pred_dir / f"{card.name}.merged.json"
            provenance.write_json_atomic(merged, {"predictions": list(rows.values())})
            entry["predictions"] = str(merged.relative_to(out))
        benchmarks[card.name] = entry
    git = provenance.git_commit()
    results = {
        **scorer.describe(),
        "benchmarks": benchmarks,
        "average": average(benchmarks),
        "evaluate": asdict(config),
        "processes": world,
        "versions": provenance.library_versions(),
        "git": git,
        "git_commit": git["commit"],
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    provenance.write_json_atomic(out / "results.json", provenance.json_safe(results))
    report.write_markdown(results, out / "results.md")
    if config.plots:
        for name, (pred, gt) in arrays.items():
            metrics = benchmarks[name]["metrics"]
            report.scatter_plot(pred, gt, out / "plots" / f"{name}.png", title=name, metrics=metrics)
    return results
