"""Comparing hypotheses: posterior probabilities from marginal likelihoods, and PSIS-LOO.

Two different questions, kept apart everywhere they are shown:
- *support*: how probable is each hypothesis given the evidence and the prior probabilities
  (Bayes factors from the log marginal likelihoods, Monte Carlo error propagated);
- *predictive accuracy*: how well would each hypothesis's fitted model predict a left-out
  event (PSIS-LOO elpd, differences with their standard errors, stacking weights). Stacking
  weights are not probabilities that a hypothesis is true.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

from forecast.cells import CellData

JEFFREYS = ((1.0, "no support"), (3.0, "anecdotal"), (10.0, "moderate"), (30.0, "strong"), (100.0, "very strong"))
PARETO_K_GOOD = 0.7


def posterior_probabilities(
    log_ml: np.ndarray, log_ml_se: np.ndarray, prior: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """P(H | y) from log p(y | H) and P(H), with first-order (delta-method) standard errors.

    dp_i / dlog_ml_j = p_i (delta_ij - p_j); the estimates for different hypotheses come from
    independent fits, so their errors are independent.
    """
    log_ml, log_ml_se, prior = (np.asarray(a, dtype=float) for a in (log_ml, log_ml_se, prior))
    p = softmax(np.log(prior) + log_ml)
    jac = np.diag(p) - np.outer(p, p)
    se = np.sqrt((jac**2) @ (log_ml_se**2))
    return p, se


def jeffreys_label(bayes_factor: float) -> str:
    """Jeffreys' verbal scale for a Bayes factor >= 1 (1-3 anecdotal, ..., > 100 extreme)."""
    for bound, label in JEFFREYS:
        if bayes_factor < bound:
            return label
    return "extreme"


@dataclass(frozen=True)
class Loo:
    """PSIS-LOO for one hypothesis; pointwise values are per pattern (see cells.CellData)."""

    elpd: float
    se: float
    p_loo: float
    pareto_k_max: float
    n_bad_k: int  # events whose pattern has Pareto k above the threshold
    pointwise: np.ndarray  # elpd of one event of each pattern
    pareto_k: np.ndarray  # per pattern

    def to_dict(self) -> dict:
        return {
            "elpd_loo": self.elpd,
            "se": self.se,
            "p_loo": self.p_loo,
            "pareto_k_max": self.pareto_k_max,
            "n_bad_k": self.n_bad_k,
        }


def pattern_loglik(eta: np.ndarray, cells: CellData) -> np.ndarray:
    """Log-likelihood of one event of each pattern, per draw: (..., patterns) from (..., cells)."""
    # log sigmoid once per cell (patterns outnumber cells ~10x with imported data), then gather;
    # log sigmoid(-eta) = log sigmoid(eta) - eta.
    log_coop = -np.logaddexp(0.0, -eta)
    e = eta[..., cells.pattern_cell]
    log_p = log_coop[..., cells.pattern_cell] - np.where(cells.pattern_coop, 0.0, e)
    return cells.pattern_weight * log_p


def _weighted_total_and_se(values: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    n = counts.sum()
    total = float((values * counts).sum())
    if n < 2:
        return total, float("nan")
    mean = total / n
    var = float((counts * (values - mean) ** 2).sum() / (n - 1))
    return total, float(np.sqrt(n * var))


R_EFF_PATTERNS = 256


def psis_loo(loglik: np.ndarray, counts: np.ndarray) -> Loo:
    """PSIS-LOO from per-pattern log-likelihoods of shape (chains, draws, patterns)."""
    from forecast.convergence import ess_mean
    from forecast.psis import psislw

    chains, draws, n_pat = loglik.shape
    by_pattern = np.moveaxis(loglik, -1, 0)  # (patterns, chains, draws)
    # One relative efficiency for all patterns (their mean), as loo does for a single r_eff;
    # estimated on at most R_EFF_PATTERNS evenly spaced patterns, which is plenty for a mean
    # and keeps 10^4-pattern studies from spending seconds on it.
    sub = by_pattern[np.unique(np.linspace(0, n_pat - 1, min(n_pat, R_EFF_PATTERNS)).astype(int))]
    r_eff = ess_mean(np.exp(sub), relative=True)
    r_eff = float(np.clip(np.nanmean(r_eff), 1e-3, None)) if np.isfinite(r_eff).any() else 1.0
    flat = by_pattern.reshape(n_pat, -1)
    # arviz-stats' psislw takes the log-likelihood and smooths weights proportional to its
    # negative exponent (1 / p(y_i | theta)), the leave-one-out importance ratios, and returns
    # them normalised (no second logsumexp over every draw).
    log_w, k = psislw(flat, r_eff=r_eff)
    pointwise = logsumexp(log_w + flat, axis=-1)
    lppd = logsumexp(flat, axis=-1) - np.log(flat.shape[-1])
    elpd, se = _weighted_total_and_se(pointwise, counts)
    k = np.asarray(k, dtype=float)
    threshold = min(1 - 1 / np.log10(flat.shape[-1]), PARETO_K_GOOD)
    return Loo(
        elpd=elpd,
        se=se,
        p_loo=float(((lppd - pointwise) * counts).sum()),
        pareto_k_max=float(np.nanmax(k)),
        n_bad_k=int(counts[k > threshold].sum()),
        pointwise=pointwise,
        pareto_k=k,
    )


def elpd_differences(loos: list[Loo], counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """elpd of each hypothesis minus the best one's (<= 0), with the SE of each difference."""
    best = int(np.argmax([lo.elpd for lo in loos]))
    diff, se = [], []
    for lo in loos:
        d, s = _weighted_total_and_se(lo.pointwise - loos[best].pointwise, counts)
        diff.append(d)
        se.append(0.0 if lo is loos[best] else s)
    return np.array(diff), np.array(se)


def stacking_weights(loos: list[Loo], counts: np.ndarray) -> np.ndarray:
    """Stacking of predictive distributions (Yao et al. 2018) from the LOO pointwise densities."""
    if len(loos) == 1:
        return np.ones(1)
    lp = np.stack([lo.pointwise for lo in loos])  # (hypotheses, patterns)

    def objective(z: np.ndarray) -> float:
        logw = z - logsumexp(z)
        return -float((counts * logsumexp(lp + logw[:, None], axis=0)).sum())

    res = minimize(objective, np.zeros(len(loos)), method="L-BFGS-B")
    return softmax(res.x)
