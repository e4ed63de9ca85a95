import numpy as np
import pytest
from PIL import Image

from qhawkeye.evaluate.metrics import compute_metrics
from qhawkeye.evaluate.report import (
    curve_plot,
    describe_decoding,
    render_markdown,
    scatter_plot,
    write_markdown,
)


def _pair(n=120, seed=0):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(1, 5, n)
    return np.clip(gt + rng.normal(0, 0.5, n), 1, 5), gt


@pytest.fixture
def results():
    pred, gt = _pair()
    good = compute_metrics(pred, gt).to_dict()
    constant = compute_metrics(np.full(40, 3.0), gt[:40]).to_dict()
    return {
        "model": "runs/qhawkeye-7b/checkpoint-900",
        "prompt_preset": "qhawkeye",
        "decoding": {"mode": "greedy", "k": 1, "temperature": 0.0, "max_new_tokens": 1024, "seed": 0},
        "versions": {"qhawkeye": "0.1.0", "transformers": "5.17.0"},
        "git_commit": "abc1234",
        "created": "2026-02-01T12:00:00+00:00",
        "benchmarks": {
            "koniq": {
                "n": 118,
                "n_total": 120,
                "parse_failures": 2,
                "unreadable": 0,
                "metrics": good,
                "ci95": {"srcc": [0.801, 0.902], "plcc": [0.8, 0.9], "krcc": [0.6, 0.7]},
                "by_type": {},
                "mos_range": [1, 5],
                "lower_better": False,
            },
            "csiq": {
                "n": 40,
                "n_total": 40,
                "parse_failures": 0,
                "unreadable": 1,
                "metrics": constant,
                "ci95": {"srcc": [None, None]},
                "by_type": {"awgn": good, "blur": constant},
                "mos_range": [0, 1],
                "lower_better": True,
            },
        },
        "average": {
            "srcc": 0.85,
            "plcc": 0.86,
            "plcc_logistic": 0.87,
            "krcc": 0.66,
            "rmse_logistic": 0.4,
            "benchmarks": 1,
        },
    }


def test_markdown_has_every_row_nan_reasons_and_average(results):
    text = render_markdown(results)
    srcc = results["benchmarks"]["koniq"]["metrics"]["srcc"]
    assert f"| koniq | 118 of 120 | 2 | {srcc:.3f} [0.801, 0.902] |" in text
    assert "| csiq | 40 | 0 (+1 unreadable) | n/a [1] | n/a [1] |" in text
    assert "- [1] csiq: constant prediction (all 3.0): correlation undefined" in text
    assert "| **Average** (1 benchmark) |  |  | 0.850 | 0.660 | 0.860 | 0.870 | 0.400 |" in text
    assert (
        "### csiq by distortion type" in text and "| awgn | 120 |" in text and "| blur | 40 | n/a [2]" in text
    )
    assert "- Prompt preset: `qhawkeye`" in text and "- Git commit: `abc1234`" in text
    assert "greedy" in text and "csiq [0, 1] lower better" in text and "never from the min/max" in text
    assert "RMSE (logistic, [1,5] scale)" in text and "PLCC (4-param logistic)" in text


def test_undefined_interval_prints_na(results):
    results["benchmarks"]["koniq"]["ci95"]["srcc"] = [float("nan"), float("nan")]
    assert f"| {results['benchmarks']['koniq']['metrics']['srcc']:.3f} [n/a] |" in render_markdown(results)


def test_decoding_descriptions():
    sample = {"mode": "sample", "k": 5, "temperature": 1.0, "max_new_tokens": 2048, "seed": 3}
    assert describe_decoding(sample) == (
        "mean of 5 samples per image at temperature 1.0, seed 3, at most 2048 new tokens"
    )
    assert describe_decoding({}).startswith("not recorded")


def test_write_markdown_is_atomic_and_readable(tmp_path, results):
    path = write_markdown(results, tmp_path / "out" / "report.md")
    assert path.read_text(encoding="utf-8") == render_markdown(results)
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.md"]  # no temporary file left behind
    assert path.stat().st_mode & 0o044  # readable by others, unlike mkstemp's private default


def test_scatter_plot_writes_a_png(tmp_path):
    pred, gt = _pair()
    path = scatter_plot(pred, gt, tmp_path / "koniq.png", "koniq")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
    given = compute_metrics(pred, gt).to_dict()
    assert scatter_plot(pred, gt, tmp_path / "given.png", "koniq", metrics=given).stat().st_size > 0
    flat = scatter_plot(np.full(10, 3.0), gt[:10], tmp_path / "flat.png", "no curve")  # NaN metrics, no fit
    assert flat.stat().st_size > 0


def test_curve_plot_skips_missing_keys(tmp_path):
    history = [{"step": s, "loss": 1.0 / s, "reward": 0.1 * s} for s in range(1, 20)] + [
        {"train_runtime": 9.0}
    ]
    path = curve_plot(history, ["loss", "reward", "kl_prcp"], tmp_path / "curves.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1]  # two panels side by side
    with pytest.raises(ValueError, match="none of \\['kl'\\] is logged"):
        curve_plot(history, ["kl"], tmp_path / "none.png")
