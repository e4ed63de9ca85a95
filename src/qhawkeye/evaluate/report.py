"""Render evaluation results into a Markdown report and PNG plots. Renders only: it reads the results dict
that the evaluation step writes (see :func:`render_markdown`) and writes files; the only thing it computes is
the logistic curve of a scatter plot when the caller did not pass the fitted parameters.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so a report
being regenerated is never seen half-written. Plots use matplotlib ``Figure`` objects with the Agg canvas
directly: no pyplot, no global state, no display needed.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from qhawkeye.atomic import write_bytes_atomic
from qhawkeye.evaluate.metrics import LogisticFitError, MetricSet, compute_metrics, fit_logistic_4, logistic_4

logger = logging.getLogger(__name__)

METRIC_COLUMNS = ("KRCC", "PLCC (raw)", "PLCC (4-param logistic)", "RMSE (logistic, [1,5] scale)")
_METRIC_KEYS = ("krcc", "plcc", "plcc_logistic", "rmse_logistic")
SPREAD_COLUMNS = ("Distinct scores", "Score std")


class _Footnotes:
    """Numbered notes; the same text gets the same number."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f" [{self.texts.index(text) + 1}]"


# ---------------------------------------------------------------------------------------------- markdown


def render_markdown(results: dict) -> str:
    """The report as Markdown: header (model, prompt preset, decoding, commit), the main table with an
    Average row, one table per benchmark with distortion types, and notes (NaN reasons, label mapping).

    ``results`` is the evaluation results dict: model, prompt_preset, decoding {mode, k, temperature,
    max_new_tokens, seed}, versions, git_commit, created, benchmarks {name: {n, n_total, parse_failures,
    unreadable, metrics, ci95, by_type, mos_range, lower_better}}, average {srcc, plcc, plcc_logistic, krcc,
    rmse_logistic, benchmarks}. Metric values may be None or NaN: both print as "n/a", the reason as a note.
    """
    notes = _Footnotes()
    benchmarks = results["benchmarks"]
    parts = [_header(results), "## Results", _main_table(benchmarks, results.get("average"), notes)]
    for name, bench in benchmarks.items():
        if bench.get("by_type"):
            parts.append(_type_table(name, bench["by_type"], notes))
    parts.append(_notes(benchmarks, notes))
    return "\n\n".join(parts) + "\n"


def write_markdown(results: dict, path: str | Path) -> Path:
    """Render and write the report atomically; returns the path."""
    path = Path(path)
    _atomic_write(path, render_markdown(results).encode("utf-8"))
    logger.info("wrote report %s", path)
    return path


def _header(results: dict) -> str:
    commit = results.get("git_commit")
    lines = [
        f"# Evaluation: {results['model']}",
        "",
        f"- Model: `{results['model']}`",
    ]
    if results.get("model_kind") == "student":
        lines += [
            f"- Student: {results.get('description') or 'a qhawkeye student'}; identity `{results.get('identity')}`",
            "- Decoding: none (a student predicts the score directly)",
        ]
    else:
        lines += [
            f"- Prompt preset: `{results.get('prompt_preset', 'unknown')}`",
            f"- Decoding: {describe_decoding(results.get('decoding') or {})}",
        ]
    lines.append(f"- Git commit: {f'`{commit}`' if commit else 'not recorded'}")
    if results.get("created"):
        lines.append(f"- Created: {results['created']}")
    versions = results.get("versions") or {}
    if versions:
        lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    return "\n".join(lines)


def describe_decoding(decoding: dict) -> str:
    """In words: greedy, or the mean of k samples at temperature T; with the token limit and seed if known."""
    if decoding.get("mode") == "sample":
        k, temperature = decoding.get("k", "?"), decoding.get("temperature", "?")
        text = f"mean of {k} samples per image at temperature {temperature}"
        if "seed" in decoding:
            text += f", seed {decoding['seed']}"
    elif decoding.get("mode") == "greedy":
        text = "greedy (one deterministic answer per image)"
    elif decoding.get("mode") == "expected":
        text = "expected (greedy answer; score = expected value of its first digit's distribution over 1..5)"
    else:
        return f"not recorded ({decoding or 'no decoding settings'})"
    if "max_new_tokens" in decoding:
        text += f", at most {decoding['max_new_tokens']} new tokens"
    return text


def _main_table(benchmarks: dict, average: dict | None, notes: _Footnotes) -> str:
    head = ("Benchmark", "n", "Parse failures", "SRCC [95% CI]") + METRIC_COLUMNS + SPREAD_COLUMNS
    rows = [_main_row(name, bench, notes) for name, bench in benchmarks.items()]
    if average:
        count = average.get("benchmarks", len(benchmarks))
        label = f"**Average** ({count} benchmark{'s' if count != 1 else ''})"
        rows.append(
            [label, "", "", _num(average.get("srcc"))]
            + [_num(average.get(k)) for k in _METRIC_KEYS]
            + ["", ""]
        )
    return _table(head, rows)


def _main_row(name: str, bench: dict, notes: _Footnotes) -> list[str]:
    metrics = bench["metrics"]
    mark = notes.mark(f"{name}: {metrics['nan_reason']}") if metrics.get("nan_reason") else ""
    n, n_total = bench["n"], bench.get("n_total", bench["n"])
    failures = str(bench.get("parse_failures", 0))
    if bench.get("unreadable"):
        failures += f" (+{bench['unreadable']} unreadable)"
    srcc = _num(metrics.get("srcc"), mark)
    if not srcc.startswith("n/a"):  # no interval around an undefined estimate
        srcc += _interval((bench.get("ci95") or {}).get("srcc"))
    cells = [_num(metrics.get(k), mark) for k in _METRIC_KEYS]
    spread = [str(metrics.get("n_distinct", "?")), _spread(metrics.get("pred_std"))]
    return [name, str(n) if n == n_total else f"{n} of {n_total}", failures, srcc] + cells + spread


def _spread(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _type_table(name: str, by_type: dict, notes: _Footnotes) -> str:
    head = ("Type", "n", "SRCC") + METRIC_COLUMNS
    rows = []
    for dist_type in sorted(by_type, key=str):
        metrics = by_type[dist_type]
        reason = metrics.get("nan_reason")
        mark = notes.mark(f"{name}, type {dist_type}: {reason}") if reason else ""
        rows.append(
            [str(dist_type), str(metrics["n"])]
            + [_num(metrics.get(k), mark) for k in ("srcc",) + _METRIC_KEYS]
        )
    return f"### {_cell(name)} by distortion type\n\n" + _table(head, rows)


def _notes(benchmarks: dict, notes: _Footnotes) -> str:
    ranges = "; ".join(_range_text(name, b) for name, b in benchmarks.items() if b.get("mos_range"))
    lines = [
        "## Notes",
        "",
        "- Labels were mapped to [1, 5] (higher better) from each benchmark card's fixed label range, never"
        f" from the min/max of the rows loaded: {ranges or 'ranges not recorded'}.",
        "- n counts the parsed rows. Parse failures (no parseable score) and unreadable images are left out"
        " of the metrics, never replaced by a score.",
        "- SRCC interval: 95% percentile bootstrap over rows. PLCC (4-param logistic) and RMSE: after fitting"
        " the VQEG 4-parameter logistic from predictions to labels; RMSE is on the [1, 5] scale.",
    ]
    lines += [f"- [{i}] {text}" for i, text in enumerate(notes.texts, start=1)]
    return "\n".join(lines)


def _range_text(name: str, bench: dict) -> str:
    lo, hi = bench["mos_range"]
    return f"{name} [{_g(lo)}, {_g(hi)}] {'lower' if bench['lower_better'] else 'higher'} better"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(value, mark: str = "") -> str:
    """3 decimals, or "n/a" plus the footnote mark for None/NaN."""
    if value is None or not math.isfinite(float(value)):
        return "n/a" + mark
    return f"{float(value):.3f}"


def _interval(ci) -> str:
    if ci is None:
        return ""
    lo, hi = ci
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return " [n/a]"
    return f" [{lo:.3f}, {hi:.3f}]"


def _g(value: float) -> str:
    return f"{float(value):g}"


# ---------------------------------------------------------------------------------------------- plots


def scatter_plot(pred, gt, path: str | Path, title: str, metrics: dict | MetricSet | None = None) -> Path:
    """Predicted (x) against ground truth (y), both on [1, 5], with y = x, the fitted logistic curve when
    there is one, and SRCC/PLCC in the title. pred, gt: shape (n,).

    ``metrics`` (a :meth:`MetricSet.to_dict` dict) supplies the numbers and ``logistic_params``; when it is
    None they are computed here. Writes a PNG atomically and returns its path.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if isinstance(metrics, MetricSet):
        metrics = metrics.to_dict()
    if metrics is None:
        metrics = compute_metrics(pred, gt).to_dict()
    fig, ax = _figure((5.0, 5.0))
    ax.scatter(pred, gt, s=8, alpha=0.5, label=f"{pred.size} images")
    ax.plot([1, 5], [1, 5], ls="--", lw=0.8, color="grey", label="y = x")
    params = _curve_params(pred, gt, metrics)
    if params is not None:
        xs = np.linspace(1.0, 5.0, 200)
        ax.plot(xs, logistic_4(xs, *params), color="C3", lw=1.5, label="4-parameter logistic fit")
    ax.set(
        xlim=(0.9, 5.1), ylim=(0.9, 5.1), xlabel="predicted score", ylabel="ground truth (mapped to [1, 5])"
    )
    ax.set_title(f"{title}\n{_metric_line(metrics)}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return _save_png(fig, path)


def curve_plot(history: list[dict], keys: Sequence[str], path: str | Path) -> Path:
    """Training curves: one subplot per key of ``keys`` that the history logs, ``step`` on x.

    history: log entries (e.g. a trainer's ``log_history``); entries without ``step`` or without a finite
    number for a key are skipped for that key, keys logged nowhere get no subplot. ValueError when none of
    ``keys`` was logged (naming the keys that were). Writes a PNG atomically and returns its path.
    """
    series = {key: _series(history, key) for key in keys}
    series = {key: xy for key, xy in series.items() if xy[0]}
    if not series:
        logged = sorted({k for entry in history for k in entry})
        raise ValueError(f"none of {list(keys)} is logged in the history; it logs {logged}")
    ncols = min(3, len(series))
    nrows = math.ceil(len(series) / ncols)
    fig = Figure(figsize=(4.0 * ncols, 2.8 * nrows), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (key, (steps, values)) in zip(axes, series.items(), strict=False):
        ax.plot(steps, values, marker="." if len(steps) <= 50 else None, lw=1.2)
        ax.set(title=key, xlabel="step")
        ax.grid(alpha=0.3)
    for ax in axes[len(series) :]:
        ax.set_visible(False)
    return _save_png(fig, path)


def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    steps, values = [], []
    for entry in history:
        value = entry.get(key)
        if "step" in entry and isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                steps.append(entry["step"])
                values.append(float(value))
    return steps, values


def _curve_params(pred: np.ndarray, gt: np.ndarray, metrics: dict):
    """The caller's fitted parameters if the metrics carry them (None: the fit failed), else a fresh fit."""
    if "logistic_params" in metrics:
        return metrics["logistic_params"]
    try:
        return fit_logistic_4(pred, gt)
    except (LogisticFitError, ValueError):
        return None


def _metric_line(metrics: dict) -> str:
    return (
        f"SRCC {_num(metrics.get('srcc'))}, PLCC {_num(metrics.get('plcc'))} "
        f"(logistic {_num(metrics.get('plcc_logistic'))}), n = {metrics.get('n', '?')}"
    )


def _figure(size: tuple[float, float]):
    fig = Figure(figsize=size, dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save_png(fig: Figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    path = Path(path)
    _atomic_write(path, buffer.getvalue())
    logger.info("wrote plot %s", path)
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data)
