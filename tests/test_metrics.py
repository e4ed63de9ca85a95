import json
import math
import warnings

import numpy as np
import pytest
from scipy.stats import kendalltau, pearsonr, spearmanr

from qhawkeye.evaluate.metrics import (
    LogisticFitError,
    MetricSet,
    bootstrap_intervals,
    compute_metrics,
    fit_logistic_4,
    logistic_4,
    paired_bootstrap_difference,
)


def _noisy(n, seed=0, noise=0.6):
    """Predictions on [1, 5] and labels that follow them with Gaussian noise."""
    rng = np.random.default_rng(seed)
    gt = rng.uniform(1, 5, n)
    return np.clip(gt + rng.normal(0, noise, n), 1, 5), gt


def test_hand_computed_correlations():
    # pred 1..5, gt [1, 3, 2, 5, 4]: rank differences d = [0, -1, 1, -1, 1], sum d^2 = 4
    # -> SRCC = 1 - 6 * 4 / (5 * 24) = 0.8; 2 discordant pairs of 10 -> KRCC = (8 - 2) / 10 = 0.6;
    # centred products 4 + 0 + 0 + 2 + 2 = 8 over sqrt(10 * 10) -> PLCC = 0.8
    m = compute_metrics([1, 2, 3, 4, 5], [1, 3, 2, 5, 4])
    assert (m.n, m.srcc, m.krcc, m.plcc) == (5, pytest.approx(0.8), pytest.approx(0.6), pytest.approx(0.8))


def test_matches_scipy_on_fixed_data():
    pred, gt = _noisy(200, seed=3)
    m = compute_metrics(pred, gt)
    assert m.srcc == pytest.approx(spearmanr(pred, gt)[0], abs=1e-12)
    assert m.krcc == pytest.approx(kendalltau(pred, gt)[0], abs=1e-12)
    assert m.plcc == pytest.approx(pearsonr(pred, gt)[0], abs=1e-12)
    assert m.nan_reason is None and len(m.logistic_params) == 4


def test_logistic_fit_recovers_known_parameters():
    true = (4.6, 1.3, 3.1, 0.45)  # upper, lower asymptote, midpoint, scale
    x = np.linspace(1, 5, 300)
    y = logistic_4(x, *true) + np.random.default_rng(0).normal(0, 1e-3, x.size)
    b1, b2, b3, b4 = fit_logistic_4(x, y)
    assert (b1, b2, b3, abs(b4)) == pytest.approx(true, abs=5e-3)
    # the curve itself at hand-checked points: midpoint -> mean of the asymptotes, one scale up -> 1/(1+e^-1)
    assert logistic_4(3.1, *true) == pytest.approx((4.6 + 1.3) / 2)
    assert logistic_4(3.55, *true) == pytest.approx(1.3 + 3.3 / (1 + math.exp(-1)))


@pytest.mark.parametrize("direction", [1, -1])
def test_fitted_plcc_beats_raw_on_a_monotone_nonlinear_relation(direction):
    x = np.random.default_rng(1).uniform(1, 5, 400)
    y = 3 + direction * (logistic_4(x, 4.8, 1.2, 3.0, 0.3) - 3)  # steep S-curve, increasing or decreasing
    m = compute_metrics(x, y + np.random.default_rng(2).normal(0, 0.05, x.size))
    assert np.sign(m.plcc) == direction and np.sign(m.srcc) == direction
    assert m.plcc_logistic > abs(m.plcc) + 0.02
    assert m.rmse_logistic < 0.1  # the fit explains all but the 0.05 noise


def test_constant_prediction_gives_nan_and_reason_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's ConstantInputWarning must not fire
        m = compute_metrics(np.full(10, 3.0), np.linspace(1, 5, 10))
    assert all(math.isnan(v) for v in (m.srcc, m.krcc, m.plcc, m.plcc_logistic, m.rmse_logistic))
    assert m.nan_reason == "constant prediction (all 3.0): correlation undefined"


def test_constant_ground_truth_and_non_finite_values():
    assert "constant ground truth" in compute_metrics([1, 2, 3, 4], [2, 2, 2, 2]).nan_reason
    m = compute_metrics([1, 2, math.nan, 4], [1, 2, 3, 4])
    assert math.isnan(m.srcc) and "non-finite prediction" in m.nan_reason


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fewer_than_three_rows(n):
    m = compute_metrics(np.arange(n, dtype=float), np.arange(n, dtype=float))
    assert m.n == n and math.isnan(m.srcc) and f"n = {n}" in m.nan_reason


def test_failed_logistic_fit_keeps_the_correlations():
    m = compute_metrics([1, 2, 3], [1, 3, 2])  # 3 rows: correlations defined, 4 parameters cannot be fitted
    assert m.srcc == pytest.approx(0.5)
    assert math.isnan(m.plcc_logistic) and math.isnan(m.rmse_logistic) and m.logistic_params is None
    assert m.nan_reason.startswith("4-parameter logistic fit failed")
    with pytest.raises(LogisticFitError):
        fit_logistic_4([1, 2, 3], [1, 3, 2])


def test_mismatched_lengths_are_a_caller_error():
    with pytest.raises(ValueError, match="3 rows but gt has 2"):
        compute_metrics([1, 2, 3], [1, 2])


def test_to_dict_is_strict_json_and_round_trips():
    undefined = compute_metrics([3, 3, 3], [1, 2, 3]).to_dict()
    assert undefined["srcc"] is None
    json.dumps(undefined, allow_nan=False)
    m = compute_metrics(*_noisy(50))
    again = MetricSet.from_dict(json.loads(json.dumps(m.to_dict(), allow_nan=False)))
    assert again == m
    assert math.isnan(MetricSet.from_dict(undefined).srcc)


def test_bootstrap_contains_the_estimate_and_is_seeded():
    pred, gt = _noisy(700)
    m = compute_metrics(pred, gt)
    ci = bootstrap_intervals(pred, gt, n_resamples=1000, seed=0)
    for name in ("srcc", "plcc", "krcc"):
        lo, hi = ci[name]
        assert lo < getattr(m, name) < hi, name
    assert bootstrap_intervals(pred, gt, n_resamples=200, seed=5) == bootstrap_intervals(
        pred, gt, n_resamples=200, seed=5
    )
    assert bootstrap_intervals(pred, gt, n_resamples=200, seed=6) != bootstrap_intervals(
        pred, gt, n_resamples=200, seed=5
    )


def test_bootstrap_matches_scipy_per_resample():
    # the vectorised Spearman/Pearson equal scipy's on each resample: check through a 1-resample interval
    pred, gt = _noisy(60, seed=4)
    idx = np.random.default_rng(9).integers(0, 60, size=(1, 60))[0]
    ci = bootstrap_intervals(pred, gt, n_resamples=1, seed=9)
    assert ci["srcc"][0] == pytest.approx(spearmanr(pred[idx], gt[idx])[0], abs=1e-12)
    assert ci["plcc"][0] == pytest.approx(pearsonr(pred[idx], gt[idx])[0], abs=1e-12)
    assert ci["krcc"][0] == pytest.approx(kendalltau(pred[idx], gt[idx])[0], abs=1e-12)


def test_bootstrap_narrows_as_n_grows():
    def width(n):
        lo, hi = bootstrap_intervals(*_noisy(n, seed=2), n_resamples=300)["srcc"]
        return hi - lo

    assert width(800) < 0.5 * width(60)


def test_bootstrap_with_logistic_and_degenerate_inputs():
    pred, gt = _noisy(120, seed=7)
    ci = bootstrap_intervals(pred, gt, n_resamples=100, with_logistic=True)
    assert ci["plcc_logistic"][0] < compute_metrics(pred, gt).plcc_logistic < ci["plcc_logistic"][1]
    nan_ci = bootstrap_intervals(np.full(20, 2.0), gt[:20], n_resamples=50)
    assert all(math.isnan(lo) and math.isnan(hi) for lo, hi in nan_ci.values())
    # a resample is defined only if it draws both row 0 (the odd label) and row 3 (the odd prediction):
    # 1 - 2 (3/4)^4 + (1/2)^4 = 43% of them, fewer than half -> no interval
    assert math.isnan(bootstrap_intervals([1, 1, 1, 5], [1, 2, 2, 2], n_resamples=400)["srcc"][0])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_intervals(pred, gt, confidence=95)


def test_paired_difference():
    pred, gt = _noisy(300, seed=1)
    assert paired_bootstrap_difference(pred, pred, gt, n_resamples=200) == (0.0, 0.0, 0.0)
    worse = pred + np.random.default_rng(3).normal(0, 1.0, pred.size)
    diff, lo, hi = paired_bootstrap_difference(pred, worse, gt, metric="plcc", n_resamples=300)
    assert diff == pytest.approx(pearsonr(pred, gt)[0] - pearsonr(worse, gt)[0])
    assert 0 < lo < diff < hi
    with pytest.raises(ValueError, match="did you mean 'srcc'"):
        paired_bootstrap_difference(pred, worse, gt, metric="srrc")
