"""The statistics of `forecast evidence`: likelihood terms, importance sampling, diagnosticity.

Pure functions of posterior draws: the likelihood's terms, the change of log p(y | H) by
Pareto-smoothed importance sampling, and an observation's diagnosticity between hypotheses.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from forecast.data.cells import CellData
from forecast.stats.psis import psislw

# A likelihood term: (group, domain, quarter, cooperative, weight); the model's log-likelihood is
# the sum over counted observations of weight * log sigmoid(+-eta[group, domain, quarter]).
Term = tuple[int, int, int, bool, float]


# --- likelihood terms and importance sampling ------------------------------------------------------


def pattern_terms(cells: CellData) -> list[Term]:
    """The likelihood term of each pattern, in pattern order."""
    c = cells.pattern_cell
    return list(
        zip(
            cells.group[c].tolist(),
            cells.domain[c].tolist(),
            cells.quarter[c].tolist(),
            cells.pattern_coop.tolist(),
            cells.pattern_weight.tolist(),
            strict=True,
        )
    )


def terms(cells: CellData) -> Counter:
    """The likelihood's terms with their multiplicities."""
    return Counter(dict(zip(pattern_terms(cells), cells.pattern_count.tolist(), strict=True)))


def term_loglik(eta: np.ndarray, keys: list[Term]) -> np.ndarray:
    """Per-draw log-likelihood of each term: (draws, len(keys))."""
    if not keys:
        return np.zeros((eta.shape[0], 0))
    g, d, t, coop, w = (np.array(x) for x in zip(*keys, strict=True))
    e = eta[:, g, d, t]
    return w * np.where(coop.astype(bool), -np.logaddexp(0.0, -e), -np.logaddexp(0.0, e))


def psis_weights(log_ratios: np.ndarray, r_eff: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised Pareto-smoothed log weights for importance ratios exp(log_ratios), and Pareto k.

    arviz-stats 1.x's ``psislw`` takes the log-*likelihood* of the left-out terms and negates it
    itself (``_psislw`` smooths ``-ary``); older ArviZ took the log ratios. Hence the sign here.
    """

    lw, k = psislw(-log_ratios, r_eff=r_eff)
    lw = np.asarray(lw, dtype=float)
    return lw - logsumexp(lw, axis=-1, keepdims=True), np.asarray(k, dtype=float)


@dataclass(frozen=True)
class Change:
    """The change of log p(y | H) when the likelihood loses and gains some terms."""

    delta: float
    pareto_k: float  # of the importance weights (nan when nothing is removed)


def change_of_log_ml(eta: np.ndarray, removed: Counter, added: Counter, r_eff: float) -> Change:
    """log p(y') - log p(y) by importance sampling from the posterior given y (module docstring)."""
    rk, ak = list(removed), list(added)
    lr = term_loglik(eta, rk) @ np.array([removed[k] for k in rk], dtype=float) if rk else np.zeros(eta.shape[0])
    la = term_loglik(eta, ak) @ np.array([added[k] for k in ak], dtype=float) if ak else np.zeros(eta.shape[0])
    if not rk:
        return Change(float(logsumexp(la) - np.log(len(la))), float("nan"))
    lw, k = psis_weights(-lr, r_eff)
    return Change(float(-logsumexp(lw + lr) + logsumexp(lw + la)), float(k))


# --- diagnosticity ----------------------------------------------------------------------------------


def diagnosticity(elpd: np.ndarray, hypotheses: list[str]) -> dict:
    """For one observation: the spread of its LOO log predictive densities between hypotheses."""
    hi, lo = int(np.argmax(elpd)), int(np.argmin(elpd))
    pairs = {
        f"{a}/{b}": float(elpd[i] - elpd[j])
        for i, a in enumerate(hypotheses)
        for j, b in enumerate(hypotheses)
        if i < j
    }
    return {
        "diagnosticity": float(elpd[hi] - elpd[lo]),
        "favours": hypotheses[hi] if elpd[hi] > elpd[lo] else None,
        "disfavours": hypotheses[lo] if elpd[hi] > elpd[lo] else None,
        "log_predictive_ratio": pairs,
    }
