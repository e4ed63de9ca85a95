"""Renders the demo's report folder (markdown, training curves, scatter plots) from its summary; computes nothing."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from qhawkeye.atomic import write_text_atomic
from qhawkeye.evaluate import report

CURVES = ("reward", "rewards/accuracy_reward/mean", "qhawkeye/kl_prcp", "qhawkeye/uado_weight",
          "qhawkeye/entropy_orig", "qhawkeye/parse_failure_rate")  # fmt: skip


def _num(x, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _ci(pair) -> str:
    return (
        ""
        if not pair or any(v is None or math.isnan(v) for v in pair)
        else f" [{pair[0]:.3f}, {pair[1]:.3f}]"
    )


def _row(name: str, bench: dict) -> str:
    m, ci = bench["metrics"], bench.get("ci95", {})
    return (f"| {name} | {bench['n']} of {bench['n_total']} | {bench['parse_failures']} | "
            f"{_num(m['srcc'])}{_ci(ci.get('srcc'))} | {_num(m['plcc'])}{_ci(ci.get('plcc'))} | {_num(m['krcc'])} | "
            f"{m.get('n_distinct', 'n/a')} | {_num(m.get('pred_std'), 4)} |")  # fmt: skip


def verdict(comparison: dict) -> str:
    """One sentence on the SRCC difference, stated as what the interval shows."""
    d = comparison["srcc"]
    diff, (lo, hi) = d["difference"], d["ci95"]
    if any(v is None or math.isnan(v) for v in (diff, lo, hi)):
        return "The SRCC difference is undefined (a model's predictions were constant or too few parsed)."
    if lo > 0:
        return f"The trained model's SRCC is higher than the warm start's: {diff:+.3f}, 95% interval [{lo:.3f}, {hi:.3f}] above 0."
    if hi < 0:
        return f"The trained model's SRCC is *lower* than the warm start's: {diff:+.3f}, 95% interval [{lo:.3f}, {hi:.3f}] below 0."
    return (f"No clear improvement at this budget: SRCC difference {diff:+.3f}, 95% interval [{lo:.3f}, {hi:.3f}] "
            "includes 0 (see the learnability ladder in benchmarks/RESULTS.md for what the tiny model learns "
            "and how fast).")  # fmt: skip


def _decoding(dec: dict) -> str:
    if dec.get("mode") == "expected":
        return ("expected mode (the greedy answer, scored by the expected value of the model's distribution over "
                "its first digit 1..5: deterministic)")  # fmt: skip
    if dec.get("mode") == "sample":
        return f"mean of {dec.get('k', 1)} samples at temperature {dec.get('temperature', 'n/a')}"
    return "greedy"


def render(summary: dict) -> str:
    cfg, build, ex = summary["config"], summary["build"], summary["example"]
    dec = summary["decoding"]
    greedy = summary.get("trained_greedy")
    lines = [
        "# qhawkeye demo report",
        "",
        f"Model `{cfg['model']}`, format warm start of {cfg.get('warm_steps', '?')} steps on the training images, "
        f"then {cfg['steps']} GRPO steps (UADO {'on' if cfg['use_uado'] else 'off'}, PAO "
        f"{'on' if cfg['use_pao'] else 'off'}), seed {cfg['seed']}, on a CPU.",
        "",
        f"**The labels are synthetic**: {summary.get('task', 'see summary.json')}. They are not human opinion "
        "scores. Train and test are split by source photo (no photo on both sides). **Human review was "
        "auto-accepted** in the demo: every pair the SSIM pre-filter flagged was recorded as confirmed "
        "imperceptible. The warm start's target scores were drawn independently of the image, so any "
        "correlation below was learnt from the GRPO reward.",
        "",
        f"## Held-out test set ({summary['warm_start']['n_total']} images)",
        "",
        f"Decoding: {_decoding(dec)}, at most {dec['max_new_tokens']} new tokens; metrics on the parsed rows, 95% "
        "bootstrap intervals.",
        "",
        "| model | n parsed | parse failures | SRCC | PLCC | KRCC | distinct scores | score std |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        _row("warm start (format only)", summary["warm_start"]),
        _row("Q-Hawkeye GRPO", summary["trained"]),
        *([_row("Q-Hawkeye GRPO, greedy answers", greedy)] if greedy else []),
        "",
        verdict(summary["comparison"])
        + f" (Paired bootstrap over the {summary['comparison']['n_common']} images both models parsed; PLCC "
        f"difference {_num(summary['comparison']['plcc']['difference'])}{_ci(summary['comparison']['plcc']['ci95'])}.)",
        "",
        "Read the SRCC with the spread beside it: the warm start's scores differ between images by a few "
        "thousandths (its ranking is an accident of its random vision features, whose sign depends on the seed), "
        "and greedy answers take only the few values in the `distinct scores` column (ties; SRCC n/a when they "
        "take one). The expected mode reads the model's distribution over the answer's first digit, so it ranks "
        "where greedy answers tie.",
        "",
        "![training curves](curves.png)",
        "",
        "| warm start | trained |", "|---|---|",
        "| ![warm start](scatter_warm_start.png) | ![trained](scatter_trained.png) |",
        "",
        "## Training data (the pipeline on the train split)",
        "",
        f"{build['pairs']} pairs; per degradation: "
        + ", ".join(f"{k} {v}" for k, v in build["per_degradation"].items())
        + f"; flagged by the SSIM pre-filter and auto-confirmed: {build['reviewed']}; redegraded: {build['redegraded']}.",
        "",
        "## One image scored by the trained model",
        "",
        f"`{Path(ex['image']).name}` (synthetic label {ex['label']:.2f}): score {_num(ex['score'], 2)}, std "
        f"{_num(ex['std'], 2)}. Answer: `{ex['text'][:200]}`",
        "",
        "## Time per stage (seconds)",
        "",
        "| stage | s |", "|---|---:|",
        *[f"| {k} | {v} |" for k, v in summary["timings_s"].items()],
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def _atomic_text(path: Path, text: str) -> None:
    write_text_atomic(path, text)


def write_demo_report(summary: dict, history: list[dict], out: Path) -> Path:
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    report.curve_plot(history, CURVES, folder / "curves.png")
    for name in ("warm_start", "trained"):
        plot = out / "eval" / name / "plots" / f"{summary['card']}.png"
        if plot.is_file():
            shutil.copyfile(plot, folder / f"scatter_{name}.png")
    _atomic_text(folder / "README.md", render(summary))
    return folder / "README.md"
