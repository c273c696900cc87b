"""Proper scores for probability forecasts, skill against baselines, interval coverage, calibration.

Pure functions on arrays. Conventions, used everywhere results are shown:
- ``log_score``: the mean log probability given to what happened (natural log; <= 0, higher is
  better; the same orientation as elpd);
- ``brier``: the mean squared difference between the probability and the 0/1 outcome (0..1,
  lower is better);
- ``skill = 1 - score / reference_score`` for either score: > 0 means better than the
  reference forecaster, 1 is perfect, < 0 worse.
Optional weights (the observations' reliability weights) make every mean a weighted mean.
"""

from __future__ import annotations

import numpy as np

PROB_FLOOR = 1e-12


def _weights(y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    return np.ones(len(y)) if w is None else np.asarray(w, dtype=float)


def brier(p: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    """Mean (weighted) Brier score of probabilities ``p`` for 0/1 outcomes ``y``."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    w = _weights(y, w)
    return float(np.sum(w * (p - y) ** 2) / np.sum(w)) if len(y) else float("nan")


def log_probability(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log P(outcome) for each forecast: log p if y == 1, log(1 - p) if y == 0."""
    p = np.clip(np.asarray(p, dtype=float), PROB_FLOOR, 1 - PROB_FLOOR)
    return np.where(np.asarray(y, dtype=bool), np.log(p), np.log1p(-p))


def log_score(p: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    """Mean (weighted) logarithmic score: log probability given to the outcome (higher is better)."""
    y = np.asarray(y)
    w = _weights(y, w)
    return float(np.sum(w * log_probability(p, y)) / np.sum(w)) if len(y) else float("nan")


def skill(score: float, reference: float) -> float:
    """Skill score ``1 - score / reference`` (for the Brier score and the log score alike)."""
    if not np.isfinite(score) or not np.isfinite(reference) or reference == 0:
        return float("nan")
    return float(1.0 - score / reference)


def interval_coverage(cdf_below: np.ndarray, cdf_at: np.ndarray, level: float) -> np.ndarray:
    """Coverage of the central ``level`` predictive interval for discrete outcomes.

    For an outcome k with predictive CDF values F(k - 1) = ``cdf_below`` and F(k) = ``cdf_at``,
    returns the fraction of the randomised PIT interval [F(k-1), F(k)] inside
    [(1 - level) / 2, (1 + level) / 2]: the expected coverage of a randomised PIT. For a
    calibrated forecaster its mean is exactly ``level``, however coarse the outcome.
    """
    lo, hi = (1 - level) / 2, (1 + level) / 2
    a, b = np.asarray(cdf_below, dtype=float), np.asarray(cdf_at, dtype=float)
    width = b - a
    inside = np.clip(np.minimum(b, hi) - np.maximum(a, lo), 0.0, None)
    return np.where(width > 0, inside / np.where(width > 0, width, 1.0), ((a >= lo) & (a <= hi)).astype(float))


def point_coverage(lower: np.ndarray, upper: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1.0 where ``lower <= truth <= upper`` (for continuous quantities), else 0.0."""
    truth = np.asarray(truth)
    return ((np.asarray(lower) <= truth) & (truth <= np.asarray(upper))).astype(float)


def reliability_table(p: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, n_bins: int = 10) -> list[dict]:
    """Calibration (reliability) table: forecasts binned on [0, 1] in ``n_bins`` equal bins.

    Each non-empty bin gives its mean forecast, the observed (weighted) frequency of the
    outcome, the number of forecasts and their total weight. A calibrated forecaster's bins lie
    on the diagonal.
    """
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    w = _weights(y, w)
    edges = np.round(np.linspace(0.0, 1.0, n_bins + 1), 12)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = idx == b
        if not m.any():
            continue
        rows.append(
            {
                "bin": [float(edges[b]), float(edges[b + 1])],
                "mean_forecast": float(np.sum(w[m] * p[m]) / np.sum(w[m])),
                "observed_frequency": float(np.sum(w[m] * y[m]) / np.sum(w[m])),
                "n": int(m.sum()),
                "weight": float(np.sum(w[m])),
            }
        )
    return rows


def running_mean(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return np.cumsum(x) / np.arange(1, len(x) + 1) if len(x) else x
