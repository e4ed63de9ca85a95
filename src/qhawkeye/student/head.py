"""The student's head: weighted ridge regression on standardised features, and its folder on disk.

A student folder holds ``student.json`` (what it is: feature spec, head settings, training record, identity)
and ``head.safetensors`` (feature mean and scale, weights, bias; float32). The head predicts a score on
[1, 5] (higher better) directly; predictions outside are clipped and flagged.

Fitting: features are standardised with the training rows' weighted mean and standard deviation; the ridge
penalty is chosen from a fixed grid by k-fold cross-validation (folds drawn with the seed; rows of one image
stay in one fold) for the best Spearman correlation of the pooled out-of-fold predictions, then the head is
refitted on every row. Closed form (one SVD per fold), float64, deterministic.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qhawkeye import SCORE_MAX, SCORE_MIN
from qhawkeye.atomic import atomic_dir, umask_mode
from qhawkeye.student.features import FeatureSpec

FORMAT = "qhawkeye-student"
VERSION = 1
META = "student.json"
WEIGHTS = "head.safetensors"
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(0, 5, 16))


def is_student_folder(path: str | Path) -> bool:
    return (Path(path) / META).is_file()


@dataclass
class RidgeFit:
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: float
    alpha: float
    cv: dict = field(default_factory=dict)

    def predict(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return z @ self.weight + self.bias


def _standardise(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = (w[:, None] * x).sum(0) / w.sum()
    var = (w[:, None] * (x - mean) ** 2).sum(0) / w.sum()
    scale = np.sqrt(var)
    scale[scale < 1e-8] = 1.0  # a constant feature: leave it unscaled (its weight stays 0)
    return mean, scale


def _solve(x: np.ndarray, y: np.ndarray, w: np.ndarray, alphas) -> list[tuple[np.ndarray, float]]:
    """Weighted ridge on standardised x for every alpha: [(coef, intercept)]."""
    mean, scale = _standardise(x, w)
    z = (x - mean) / scale
    ybar = float((w * y).sum() / w.sum())
    sw = np.sqrt(w)[:, None]
    u, s, vt = np.linalg.svd(z * sw, full_matrices=False)
    uty = u.T @ ((y - ybar) * sw[:, 0])
    out = []
    for alpha in alphas:
        coef = vt.T @ (s / (s**2 + alpha) * uty)
        # the intercept of standardised features centred on the weighted mean is the weighted mean of y
        out.append((coef / scale, ybar - float((mean / scale) @ coef)))
    return out


def _folds(groups: list[str], k: int, seed: int) -> np.ndarray:
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {unique[i]: n % k for n, i in enumerate(order)}
    return np.array([fold_of[g] for g in groups])


def fit_ridge(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    groups: list[str],
    alphas=DEFAULT_ALPHAS,
    folds: int = 5,
    seed: int = 0,
) -> RidgeFit:
    """Choose alpha by grouped k-fold CV (Spearman of pooled out-of-fold predictions), refit on all rows."""
    from scipy.stats import pearsonr, spearmanr

    x, y, w = (np.asarray(a, dtype=np.float64) for a in (x, y, w))
    if len(set(groups)) < folds:
        raise ValueError(f"{len(set(groups))} distinct images is too few for {folds}-fold cross-validation")
    fold = _folds(groups, folds, seed)
    preds = np.zeros((len(alphas), len(y)))
    for f in range(folds):
        train, test = fold != f, fold == f
        for a, (coef, icpt) in enumerate(_solve(x[train], y[train], w[train], alphas)):
            preds[a, test] = x[test] @ coef + icpt
    srcc = [float(spearmanr(p, y).statistic) for p in preds]
    best = int(np.nanargmax(srcc))
    coef, icpt = _solve(x, y, w, [alphas[best]])[0]
    mean, scale = _standardise(x, w)
    cv = {"folds": folds, "seed": seed, "srcc": round(srcc[best], 4),
          "plcc": round(float(pearsonr(preds[best], y).statistic), 4), "alpha_grid": list(alphas),
          "srcc_by_alpha": [round(s, 4) for s in srcc]}  # fmt: skip
    # store the head in standardised form: predict(z) = z @ (coef * scale) + bias
    return RidgeFit(mean, scale, coef * scale, icpt + float(mean @ coef), float(alphas[best]), cv)


def identity(spec: FeatureSpec, head_settings: dict, rows_fingerprint: str) -> str:
    """What the student is made of (backbone weights, feature spec, head settings, training rows): a sha256
    over inputs only, so a rebuild from the same data and settings records the same identity on any machine."""
    blob = json.dumps({"features": spec.to_dict(), "head": head_settings, "rows": rows_fingerprint},
                      sort_keys=True)  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()


def save_student(out: str | Path, spec: FeatureSpec, fit: RidgeFit, meta: dict) -> Path:
    """Write the student folder atomically (beside, then renamed)."""
    from safetensors.numpy import save_file

    out = Path(out)
    tensors = {"mean": fit.mean, "scale": fit.scale, "weight": fit.weight, "bias": np.array([fit.bias])}
    body = {"format": FORMAT, "version": VERSION, "features": spec.to_dict(),
            "head": {"type": "ridge", "alpha": fit.alpha, "dim": int(fit.weight.shape[0])},
            "score_range": [SCORE_MIN, SCORE_MAX], "lower_better": False, **meta}  # fmt: skip
    with atomic_dir(out) as tmp:
        save_file(
            {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, str(tmp / WEIGHTS)
        )
        (tmp / META).write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        for path in tmp.iterdir():
            os.chmod(path, umask_mode())
    return out


@dataclass
class StudentHead:
    folder: Path
    meta: dict
    spec: FeatureSpec
    fit: RidgeFit

    @property
    def identity(self) -> str:
        return self.meta.get("identity", "")


def load_student(folder: str | Path) -> StudentHead:
    """Read a student folder, with errors naming the file and what to do."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    path = folder / META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found: {folder} is not a student folder (made by qhawkeye distill)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path}: not valid JSON ({err}); rebuild the student with qhawkeye distill"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a qhawkeye student (format {FORMAT!r} expected)")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path}: student format version {meta.get('version')} is not {VERSION}; rebuild it")
    try:
        spec = FeatureSpec(**meta["features"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: bad 'features' entry ({err}); rebuild the student") from None
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: the student folder is incomplete; rebuild it")
    t = load_file(str(weights))
    missing = {"mean", "scale", "weight", "bias"} - set(t)
    if missing or any(t[k].shape != (spec.dim,) for k in ("mean", "scale", "weight")):
        raise ValueError(f"{weights}: expected mean/scale/weight of {spec.dim} values and a bias; rebuild it")
    fit = RidgeFit(t["mean"].astype(np.float64), t["scale"].astype(np.float64), t["weight"].astype(np.float64),
                   float(t["bias"][0]), float(meta["head"]["alpha"]))  # fmt: skip
    return StudentHead(folder, meta, spec, fit)
