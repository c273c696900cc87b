"""The statistics of `forecast evidence`: likelihood terms, importance sampling, diagnosticity.

Pure functions of posterior draws: the likelihood's terms, the change of log p(y | H) by
Pareto-smoothed importance sampling, and an observation's diagnosticity between hypotheses.

With an overdispersed model (``[model] overdispersion = "cell"``) the events of a cell are not
independent given the parameters, so the terms' Bernoulli log-likelihoods do not sum to the
likelihood: what removing or adding terms changes is computed cell by cell (``removal_loglik``,
``change_of_log_ml(..., cells=, concentration=)``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from forecast.data.cells import CellData
from forecast.stats.loo import cell_loglik, pattern_loglik
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


def pattern_term_loglik(eta: np.ndarray, cells: CellData, concentration: np.ndarray | None = None) -> np.ndarray:
    """Per-draw log-likelihood of one event of each pattern, (draws, patterns), for PSIS-LOO.

    Plain: ``term_loglik`` of the patterns' terms. Overdispersed (``concentration`` draws given):
    each event given the rest of its cell (``forecast.stats.loo.pattern_loglik``, non-factorised
    LOO), whose terms do not sum to the likelihood.
    """
    if concentration is None:
        return term_loglik(eta, pattern_terms(cells))
    return pattern_loglik(eta[:, cells.group, cells.domain, cells.quarter], cells, concentration)


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


def change_of_log_ml(
    eta: np.ndarray,
    removed: Counter,
    added: Counter,
    r_eff: float,
    cells: CellData | None = None,
    concentration: np.ndarray | None = None,
) -> Change:
    """log p(y') - log p(y) by importance sampling from the posterior given y (module docstring).

    ``concentration`` (draws,): an overdispersed model's draws, with ``cells`` the data y's cells.
    The log-likelihood of what is removed and added is then the cells' (``removal_loglik``), not
    the sum of the terms'.
    """
    if concentration is not None:
        if cells is None:
            raise ValueError("an overdispersed model's change of log p(y) needs the data's cells")
        lr, la = removal_loglik(eta, cells, removed, added, concentration)
    else:
        rk, ak = list(removed), list(added)
        lr = term_loglik(eta, rk) @ np.array([removed[k] for k in rk], dtype=float) if rk else np.zeros(eta.shape[0])
        la = term_loglik(eta, ak) @ np.array([added[k] for k in ak], dtype=float) if ak else np.zeros(eta.shape[0])
    if not removed:
        return Change(float(logsumexp(la) - np.log(len(la))), float("nan"))
    lw, k = psis_weights(-lr, r_eff)
    return Change(float(-logsumexp(lw + lr) + logsumexp(lw + la)), float(k))


@dataclass(frozen=True)
class _Counts:
    w_coop: np.ndarray
    w_conf: np.ndarray


def cell_counts(cells: CellData) -> dict[tuple[int, int, int], tuple[float, float]]:
    """The data's weighted (cooperative, conflictual) counts by (group, domain, quarter)."""
    keys = zip(cells.group.tolist(), cells.domain.tolist(), cells.quarter.tolist(), strict=True)
    return {k: (float(c), float(f)) for k, c, f in zip(keys, cells.w_coop, cells.w_conf, strict=True)}


def removal_loglik(
    eta: np.ndarray, cells: CellData, removed: Counter, added: Counter, concentration: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For an overdispersed model, per draw: (lr, la) with lr = log p(y | theta) - log p(y_r | theta),
    y_r the data without the ``removed`` terms, and la = log p(y_r + added | theta) - log p(y_r | theta).

    The cells are independent given theta, so only the cells the terms touch enter, each as its
    Polya log-likelihood (``forecast.stats.loo.cell_loglik``) before minus after; ``eta``
    (draws, G, D, Q), ``concentration`` (draws,).
    """
    counts = cell_counts(cells)
    touched = sorted({k[:3] for k in removed} | {k[:3] for k in added})
    n = eta.shape[0]
    if not touched:
        return np.zeros(n), np.zeros(n)
    full = np.array([counts.get(c, (0.0, 0.0)) for c in touched], dtype=np.float64).reshape(-1, 2)
    index = {c: i for i, c in enumerate(touched)}

    def shifted(base: np.ndarray, terms: Counter, sign: float) -> np.ndarray:
        out = base.copy()
        for (g, d, t, coop, w), m in terms.items():
            out[index[(g, d, t)], 0 if coop else 1] += sign * m * w
        return np.maximum(out, 0.0)  # rounding can leave -1e-16 where nothing is left

    rest = shifted(full, removed, -1.0)
    after = shifted(rest, added, 1.0)
    g, d, t = (np.array(x, dtype=np.int64) for x in zip(*touched, strict=True))
    e = eta[:, g, d, t]

    def ll(c: np.ndarray) -> np.ndarray:
        return cell_loglik(e, _Counts(c[:, 0], c[:, 1]), concentration).sum(axis=-1)

    at_rest = ll(rest)
    return ll(full) - at_rest, ll(after) - at_rest


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
