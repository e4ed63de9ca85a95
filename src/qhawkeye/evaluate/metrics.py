"""IQA correlation metrics: SRCC, KRCC, PLCC (raw and after the VQEG 4-parameter logistic fit), RMSE after
the fit, and percentile-bootstrap confidence intervals, plain and paired.

Conventions
- Inputs are the parsed rows only: ``pred`` (model scores) and ``gt`` (labels already mapped to [1, 5] by
  :mod:`qhawkeye.labels`), 1-D float arrays of the same length.
- Degenerate data never raises and is never imputed: fewer than 3 rows, a non-finite value, a constant
  prediction or a constant ground truth give NaN for the metrics they make undefined, and
  ``MetricSet.nan_reason`` says why in words. A failed logistic fit gives NaN for the two fitted metrics only.
  (Arrays of different lengths are a caller bug and raise ValueError.)
- PLCC is reported twice: raw (Pearson of pred and gt) and after mapping pred through the 4-parameter logistic
  fitted to gt by least squares, the VQEG practice that DeQA-Score and Q-Insight report. The fitted curve may
  be decreasing, so the fitted PLCC is never negative; SRCC, KRCC and raw PLCC keep their sign.
- RMSE after the fit is in label units, i.e. on the [1, 5] scale.
- Bootstrap: rows are resampled with replacement and intervals are percentile intervals. Resamples where a
  metric is undefined (e.g. all drawn predictions equal) are dropped; when fewer than half of them remain the
  interval is (nan, nan). SRCC and PLCC are computed for all resamples at once (ranks by
  ``scipy.stats.rankdata(axis=1)``), KRCC in a loop over resamples (about 0.3 ms each at n = 700).
  The fitted PLCC is opt-in (``with_logistic=True``): one curve fit per resample, warm-started from the
  full-data fit, costs about 0.5 ms at n = 700 on well-behaved data but has no useful upper bound on bad
  data, so the default keeps the interval step fast and predictable.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit
from scipy.stats import kendalltau, pearsonr, rankdata, spearmanr

from qhawkeye.registry import lookup

logger = logging.getLogger(__name__)

MIN_ROWS = 3
"""Fewer parsed rows than this and every correlation is reported as undefined."""
LOGISTIC_MAXFEV = 100_000
"""Function-evaluation budget of the full-data logistic fit (DeQA-Score's evaluation uses 10,000)."""
BOOTSTRAP_LOGISTIC_MAXFEV = 2_000
"""Budget of each warm-started per-resample fit; a resample that does not converge is dropped."""
MIN_VALID_FRACTION = 0.5
"""A bootstrap interval needs at least this fraction of resamples where the metric is defined."""
_CHUNK_ELEMENTS = 2_000_000  # resampled values held at once (bounds memory for large benchmarks)


class LogisticFitError(RuntimeError):
    """The 4-parameter logistic could not be fitted; the message says why."""


# ---------------------------------------------------------------------------------------------- logistic


def logistic_4(x, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``, elementwise over ``x``.

    b1, b2: the asymptotes for large and small x; b3: the midpoint; b4: the scale (its sign is ignored).
    Written with ``scipy.special.expit`` so a large ``|x - b3| / |b4|`` cannot overflow.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (b1 - b2) * expit((x - b3) / abs(b4)) + b2


def logistic_init(pred: np.ndarray, gt: np.ndarray) -> list[float]:
    """The usual initial guess: ``[max(gt), min(gt), mean(pred), std(pred) / 4]``, the scale 1 if it is 0.

    The same start as DeQA-Score's and pyiqa's evaluation code, so fitted numbers stay comparable.
    """
    scale = float(np.std(pred)) / 4.0
    return [float(np.max(gt)), float(np.min(gt)), float(np.mean(pred)), scale if scale > 0 else 1.0]


def fit_logistic_4(pred, gt, p0: list[float] | None = None, maxfev: int = LOGISTIC_MAXFEV) -> np.ndarray:
    """Least-squares fit of ``gt ~ logistic_4(pred, b1, b2, b3, b4)``.

    pred, gt: shape (n,). p0: initial guess, :func:`logistic_init` when None. Returns the parameters,
    shape (4,). Raises :class:`LogisticFitError` (a RuntimeError) with the reason when there are fewer rows
    than parameters, the optimiser does not converge within ``maxfev`` evaluations, or it returns
    non-finite parameters.
    """
    pred, gt = _as_pair(pred, gt)
    if pred.size < 4:
        raise LogisticFitError(f"needs at least 4 rows for 4 parameters, got {pred.size}")
    start = logistic_init(pred, gt) if p0 is None else p0
    with warnings.catch_warnings():
        # "Covariance could not be estimated" says nothing about the fitted curve itself.
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            params, _ = curve_fit(logistic_4, pred, gt, p0=start, maxfev=maxfev)
        except (RuntimeError, ValueError) as err:
            raise LogisticFitError(f"did not converge ({err})") from err
    if not np.all(np.isfinite(params)):
        raise LogisticFitError(f"non-finite parameters {params.tolist()}")
    return params


# ---------------------------------------------------------------------------------------------- point metrics


@dataclass
class MetricSet:
    """Metrics of one benchmark (or one distortion type) over its parsed rows.

    n: parsed rows used. srcc / krcc: Spearman / Kendall tau-b rank correlations. plcc: raw Pearson.
    plcc_logistic / rmse_logistic: Pearson and RMSE ([1, 5] scale) after the 4-parameter logistic fit.
    nan_reason: why any metric is NaN, in words (None when all are defined).
    logistic_params: the fitted ``[b1, b2, b3, b4]``, for plotting the curve (None when the fit failed).
    n_distinct: how many different predicted values the n rows have (n - n_distinct rows tie with another).
    pred_std: the predictions' population standard deviation: how far apart the model puts images at all (a
        near-zero spread with a high SRCC ranks by float noise-sized differences; always read both).
    """

    n: int
    srcc: float
    krcc: float
    plcc: float
    plcc_logistic: float
    rmse_logistic: float
    nan_reason: str | None = None
    logistic_params: tuple[float, float, float, float] | None = None
    n_distinct: int = 0
    pred_std: float = math.nan

    @classmethod
    def undefined(cls, n: int, reason: str, n_distinct: int = 0, pred_std: float = math.nan) -> MetricSet:
        """Every correlation NaN, with the reason."""
        nan = math.nan
        return cls(n=n, srcc=nan, krcc=nan, plcc=nan, plcc_logistic=nan, rmse_logistic=nan, nan_reason=reason,
                   n_distinct=n_distinct, pred_std=pred_std)  # fmt: skip

    def to_dict(self) -> dict:
        """JSON-ready dict: NaN becomes None (strict JSON has no NaN), the parameters a list."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
        if self.logistic_params is not None:
            out["logistic_params"] = [float(b) for b in self.logistic_params]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> MetricSet:
        """Inverse of :meth:`to_dict` (None becomes NaN)."""
        metrics = {k: math.nan if data.get(k) is None else float(data[k]) for k in _FLOAT_FIELDS}
        params = data.get("logistic_params")
        return cls(
            n=int(data["n"]),
            n_distinct=int(data.get("n_distinct", 0)),
            nan_reason=data.get("nan_reason"),
            logistic_params=None if params is None else tuple(float(b) for b in params),
            **metrics,
        )


_FLOAT_FIELDS = ("srcc", "krcc", "plcc", "plcc_logistic", "rmse_logistic", "pred_std")


def compute_metrics(pred, gt) -> MetricSet:
    """SRCC, KRCC, raw PLCC and the logistic-fitted PLCC and RMSE of ``pred`` against ``gt``, shape (n,) each.

    Undefined metrics are NaN with ``nan_reason`` set (see the module docstring); never raises on data.
    """
    pred, gt = _as_pair(pred, gt)
    spread = {
        "n_distinct": int(np.unique(pred).size),
        "pred_std": float(pred.std()) if pred.size else math.nan,
    }
    reason = undefined_reason(pred, gt)
    if reason is not None:
        return MetricSet.undefined(int(pred.size), reason, **spread)
    plcc_logistic, rmse_logistic, params, fit_reason = _logistic_metrics(pred, gt)
    return MetricSet(
        **spread,
        n=int(pred.size),
        srcc=float(spearmanr(pred, gt)[0]),
        krcc=float(kendalltau(pred, gt)[0]),
        plcc=float(pearsonr(pred, gt)[0]),
        plcc_logistic=plcc_logistic,
        rmse_logistic=rmse_logistic,
        nan_reason=fit_reason,
        logistic_params=params,
    )


def undefined_reason(pred: np.ndarray, gt: np.ndarray) -> str | None:
    """Why correlations of these rows are undefined, in words; None when they are defined.

    Checked before calling scipy, so its ConstantInputWarning never fires.
    """
    if pred.size < MIN_ROWS:
        return f"n = {pred.size} parsed rows (fewer than {MIN_ROWS}): correlation undefined"
    for name, values in (("prediction", pred), ("ground truth", gt)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            return f"non-finite {name} in {bad.size} rows (first: row {bad[0]}): pass only parsed rows"
    if np.ptp(pred) == 0:
        return f"constant prediction (all {float(pred[0])}): correlation undefined"
    if np.ptp(gt) == 0:
        return f"constant ground truth (all {float(gt[0])}): correlation undefined"
    return None


def _logistic_metrics(pred: np.ndarray, gt: np.ndarray):
    """(plcc_logistic, rmse_logistic, params or None, reason or None) for non-degenerate rows."""
    try:
        params = fit_logistic_4(pred, gt)
    except LogisticFitError as err:
        return math.nan, math.nan, None, f"4-parameter logistic fit failed: {err}"
    fitted = logistic_4(pred, *params)
    rmse = float(np.sqrt(np.mean((fitted - gt) ** 2)))
    as_tuple = tuple(float(b) for b in params)
    if np.ptp(fitted) == 0:
        return math.nan, rmse, as_tuple, "the fitted logistic is flat: fitted PLCC undefined"
    return float(pearsonr(fitted, gt)[0]), rmse, as_tuple, None


# ---------------------------------------------------------------------------------------------- bootstrap


def bootstrap_intervals(
    pred,
    gt,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    with_logistic: bool = False,
) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap intervals over rows: ``{"srcc": (lo, hi), "plcc": ..., "krcc": ...}``.

    pred, gt: shape (n,). Resamples come from ``numpy.random.default_rng(seed)``, so the same seed gives the
    same intervals. ``with_logistic`` adds ``"plcc_logistic"`` (see the module docstring for its cost).
    A metric defined in fewer than half of the resamples, or rows that are degenerate as a whole, give
    (nan, nan).
    """
    pred, gt = _as_pair(pred, gt)
    _check_bootstrap_args(n_resamples, confidence)
    names = ["srcc", "plcc", "krcc"] + (["plcc_logistic"] if with_logistic else [])
    if undefined_reason(pred, gt) is not None:
        return {name: (math.nan, math.nan) for name in names}
    fns = {name: _RESAMPLED[name] for name in names if name != "plcc_logistic"}
    if with_logistic:
        fns["plcc_logistic"] = _logistic_rows(pred, gt)
    draws: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for idx in _resample_indices(np.random.default_rng(seed), pred.size, n_resamples):
        for name, fn in fns.items():
            draws[name].append(fn(pred[idx], gt[idx]))
    return {name: _percentile(np.concatenate(v), n_resamples, confidence, name) for name, v in draws.items()}


def paired_bootstrap_difference(
    pred_a,
    pred_b,
    gt,
    metric: str = "srcc",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(diff, lo, hi)``: metric(a) - metric(b) on all rows and its percentile interval, both models scored
    on the same resampled rows each time (so shared row difficulty cancels out).

    pred_a, pred_b, gt: shape (n,), the rows both models parsed. metric: "srcc", "plcc" or "krcc".
    An interval that excludes 0 says model a beats (or trails) model b at that confidence.
    """
    fn = lookup(_RESAMPLED, metric, "bootstrap metric")
    pred_a, gt = _as_pair(pred_a, gt)
    pred_b, _ = _as_pair(pred_b, gt)
    _check_bootstrap_args(n_resamples, confidence)
    if undefined_reason(pred_a, gt) is not None or undefined_reason(pred_b, gt) is not None:
        return math.nan, math.nan, math.nan
    diff = float(fn(pred_a[None], gt[None])[0] - fn(pred_b[None], gt[None])[0])
    draws = []
    for idx in _resample_indices(np.random.default_rng(seed), gt.size, n_resamples):
        draws.append(fn(pred_a[idx], gt[idx]) - fn(pred_b[idx], gt[idx]))
    lo, hi = _percentile(np.concatenate(draws), n_resamples, confidence, f"{metric} difference")
    return diff, lo, hi


def _resample_indices(rng: np.random.Generator, n: int, n_resamples: int) -> Iterator[np.ndarray]:
    """Row indices of the resamples, in chunks of shape (b, n) that together hold ``n_resamples`` rows."""
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_resamples, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_resamples - start), n))


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair: x, y shape (b, n) -> (b,); NaN for a row where x or y is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    denom = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    constant = (np.ptp(x, axis=1) == 0) | (np.ptp(y, axis=1) == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.clip((xc * yc).sum(axis=1) / denom, -1.0, 1.0)
    r[constant] = math.nan
    return r


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho per row (Pearson of average ranks, as scipy.stats.spearmanr): (b, n) -> (b,)."""
    return _pearson_rows(rankdata(x, axis=1), rankdata(y, axis=1))


def _kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b per row (scipy.stats.kendalltau in a loop): (b, n) -> (b,); NaN for constant rows."""
    out = np.full(x.shape[0], math.nan)
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        if np.ptp(xi) > 0 and np.ptp(yi) > 0:
            out[i] = kendalltau(xi, yi)[0]
    return out


def _logistic_rows(pred: np.ndarray, gt: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Per-resample fitted PLCC, each fit warm-started from the full-data fit; NaN where a fit fails."""
    try:
        start = list(fit_logistic_4(pred, gt))
    except LogisticFitError:
        start = None

    def rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.full(x.shape[0], math.nan)
        if start is None:
            return out
        for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
            if undefined_reason(xi, yi) is None:
                out[i] = _fitted_plcc(xi, yi, start)
        return out

    return rows


def _fitted_plcc(x: np.ndarray, y: np.ndarray, start: list[float]) -> float:
    try:
        fitted = logistic_4(x, *fit_logistic_4(x, y, p0=start, maxfev=BOOTSTRAP_LOGISTIC_MAXFEV))
    except LogisticFitError:
        return math.nan
    return float(_pearson_rows(fitted[None], y[None])[0])


_RESAMPLED = {"srcc": _spearman_rows, "plcc": _pearson_rows, "krcc": _kendall_rows}


def _percentile(values: np.ndarray, n_resamples: int, confidence: float, name: str) -> tuple[float, float]:
    """Central ``confidence`` percentile interval of the finite values, or (nan, nan) if too few."""
    valid = values[np.isfinite(values)]
    if valid.size < MIN_VALID_FRACTION * n_resamples:
        logger.warning(
            "bootstrap %s: defined in only %d of %d resamples; interval reported as undefined",
            name,
            valid.size,
            n_resamples,
        )
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(valid, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _check_bootstrap_args(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1 (e.g. 0.95), got {confidence}")


def _as_pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 arrays of shape (n,); ValueError when their shapes differ or are not 1-D."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.ndim != 1 or gt.ndim != 1:
        raise ValueError(
            f"pred and gt must be 1-D (one value per row), got shapes {pred.shape} and {gt.shape}"
        )
    if pred.shape != gt.shape:
        raise ValueError(f"pred has {pred.size} rows but gt has {gt.size}: pass the same parsed rows to both")
    return pred, gt
