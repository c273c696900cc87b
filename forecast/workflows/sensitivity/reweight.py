"""The numerics of `forecast sensitivity`, as pure functions of draws and figures.

- **Importance reweighting**: a variant differs from its base only in the prior, so with
  ``r = p_variant(θ) / p_base(θ)`` over the base posterior draws,
  ``log p_variant(y) - log p_base(y) = log E_post[r]`` and the variant's posterior is the base's
  reweighted by ``r``; both Pareto-smoothed (PSIS), with Pareto k and a Monte Carlo error.
- **Power-scaling** (Kallioinen et al. 2024; ArviZ's ``psense_summary``) of the priors a
  hypothesis states and of the likelihood, diagnosed by priorsense's rule (``psense_diagnosis``).
- **Prior odds**: each hypothesis's posterior probability as a function of its prior
  probability, exact from the Bayes factors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logsumexp

from forecast.data.cells import CellData
from forecast.model.build import cell_logit_draws, draws_as_arrays, rv_name
from forecast.model.record import concentration_draws
from forecast.spec.priors import Prior
from forecast.spec.study import Hypothesis, Study
from forecast.stats.loo import PARETO_K_GOOD, cell_loglik, pattern_loglik

# priorsense's default threshold (R: ``powerscale_sensitivity(sensitivity_threshold = 0.05)``;
# Python: ``arviz_stats.psense_summary(threshold=0.05)``) on the sensitivity, the derivative of the
# cumulative Jensen-Shannon distance between the base and the power-scaled posterior with respect
# to log2(alpha), estimated at alpha = 0.99 and 1.01.
PSENSE_THRESHOLD = 0.05
PRIOR_ODDS_POINTS = 99

# priorsense's diagnoses (the wording of arviz_stats.psense_summary and priorsense >= 1.0).
PRIOR_DATA_CONFLICT = "potential prior-data conflict"
STRONG_PRIOR = "potential strong prior / weak likelihood"
# The short labels this toolkit stored as ``flag`` before the diagnoses were named (kept as they were).
FLAGS = {PRIOR_DATA_CONFLICT: "prior-data conflict", STRONG_PRIOR: "prior-dominated"}
# A hyperparameter's prior is part of a hypothesis's claim when the hypotheses state it differently;
# a prior every hypothesis states alike is a modelling assumption they share.
CLAIM, SHARED = "claim", "shared"


# --------------------------------------------------------------------------------------------
# Importance reweighting


def default_k_threshold(n_draws: int) -> float:
    """Pareto k above which PSIS is unreliable with ``n_draws`` draws: min(1 - 1/log10(S), 0.7)."""
    return float(min(1.0 - 1.0 / math.log10(n_draws), PARETO_K_GOOD))


@dataclass(frozen=True)
class Reweight:
    """A variant's change in log marginal likelihood by Pareto-smoothed importance sampling."""

    delta_log_ml: float  # log E_post[p_variant / p_base]
    se: float  # Monte Carlo standard error of delta_log_ml
    pareto_k: float
    ess: float  # effective sample size of the importance weights
    log_weights: np.ndarray  # normalised, over the flattened (chain, draw) draws


def log_prior_ratio(
    base: dict[tuple[str, str], Prior],
    variant: dict[tuple[str, str], Prior],
    changed: Iterable[tuple[str, str]],
    draws: dict[tuple[str, str], np.ndarray],
) -> np.ndarray:
    """log p_variant(θ) - log p_base(θ) at each draw, summed over the changed slots."""
    total = None
    for s in changed:
        x = draws[s]
        term = variant[s].logpdf(x) - base[s].logpdf(x)
        total = term if total is None else total + term
    return np.asarray(total, dtype=float)


def psis_reweight(log_ratio: np.ndarray) -> Reweight:
    """PSIS estimate of log E[exp(log_ratio)] over (chain, draw) draws, with Pareto k and MC error.

    ``array_stats.psislw`` smooths the largest weights and returns normalised log weights; it
    expects the *negative* log ratios (its LOO convention), hence ``-flat``. The unsmoothed
    body of the weights is left as it is, so the normaliser (the smoothed sum) is recovered from
    any draw below the tail: ``log sum = log r_i - lw_i``.
    """
    from arviz_stats.base import array_stats

    flat = log_ratio.reshape(-1)
    n = flat.size
    if not np.all(np.isfinite(flat)):
        return Reweight(float("nan"), float("inf"), float("inf"), 0.0, np.full(n, -np.log(n)))
    if np.ptp(flat) < 1e-12:  # the prior did not change where the posterior lives
        return Reweight(float(flat[0]), 0.0, float("-inf"), float(n), np.full(n, -np.log(n)))
    w = np.exp(log_ratio - flat.max())
    r_eff = float(np.asarray(array_stats.ess(w, method="mean", relative=True)))
    r_eff = min(max(r_eff, 1e-3), 1.0) if math.isfinite(r_eff) else 1.0
    lw, k = array_stats.psislw(-flat, r_eff=r_eff, axis=-1)
    lw = np.asarray(lw, dtype=float)
    i = int(np.argsort(flat)[n // 2])  # the median draw is never in the smoothed right tail
    log_sum = flat[i] - lw[i]
    delta = float(log_sum - np.log(n))
    wn = np.exp(lw)
    cv2 = max(float(n * np.sum(wn**2) - 1.0), 0.0)  # squared coefficient of variation of the ratios
    se = math.sqrt(cv2 / (n * r_eff))
    ess = float(1.0 / np.sum(wn**2))
    return Reweight(delta, se, float(k), ess, lw)


# --------------------------------------------------------------------------------------------
# Power-scaling sensitivity


def psense_diagnosis(prior: float, likelihood: float, threshold: float = PSENSE_THRESHOLD) -> str | None:
    """priorsense's diagnosis of one hyperparameter from its two sensitivities, or None.

    The rule of priorsense's ``powerscale_sensitivity`` and ArviZ's ``psense_summary``: prior
    AND likelihood sensitivity at or above the threshold is a potential prior-data conflict;
    prior sensitivity above it with likelihood sensitivity below it, a potential strong prior /
    weak likelihood; anything else (including a likelihood-sensitive hyperparameter whose
    prior hardly matters, the usual case of data that inform it) is not flagged.
    """
    if prior >= threshold and likelihood >= threshold:
        return PRIOR_DATA_CONFLICT
    if prior > threshold > likelihood:
        return STRONG_PRIOR
    return None


def prior_role(study: Study, slot: tuple[str, str]) -> str:
    """``claim`` when the hypotheses state this hyperparameter's prior differently, else ``shared``."""
    priors = [h.priors[slot] for h in study.hypotheses]
    return SHARED if len(study.hypotheses) > 1 and all(p == priors[0] for p in priors) else CLAIM


def power_scaling(study: Study, cells: CellData, posterior, hypothesis: Hypothesis) -> list[dict]:
    """Prior and likelihood power-scaling sensitivity of each hyperparameter of one hypothesis.

    Only the priors a hypothesis states (tilt, spread, trend, volatility) are power-scaled; the
    standard-normal domain effects and random-walk steps are part of the model's structure. Each
    row carries priorsense's ``diagnosis`` (``psense_diagnosis``), the short ``flag`` stored
    before (prior-data conflict / prior-dominated) and the prior's role: part of the hypothesis's
    claim, or shared by every hypothesis (``prior_role``).

    The likelihood that is power-scaled is the data's: per pattern for the plain model, per cell
    (the Polya cell likelihood, with the concentration draws) for an overdispersed one, whose
    per-event terms do not sum to it.
    """
    import xarray as xr
    from arviz_stats import psense_summary

    slots = study.slots
    names = [rv_name(*s) for s in slots]
    dims = ("chain", "draw")
    if hasattr(posterior, "to_dataset"):  # a DataTree node (a fit's trace.posterior)
        posterior = posterior.to_dataset()
    post = posterior[names]
    log_prior = xr.Dataset({rv_name(*s): (dims, hypothesis.priors[s].logpdf(post[rv_name(*s)].values)) for s in slots})
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    eta = cell_logit_draws(draws_as_arrays(posterior, study), study, cells)
    phi = concentration_draws(posterior, study)
    if phi is None:
        loglik = (pattern_loglik(eta, cells) * cells.pattern_count).reshape(chains, draws, -1)
    else:  # overdispersed: the events of a cell are not independent; one Polya term per cell
        loglik = cell_loglik(eta, cells, phi).reshape(chains, draws, -1)
    tree = xr.DataTree.from_dict(
        {
            "posterior": post,
            "log_prior": log_prior,
            "log_likelihood": xr.Dataset({"events": (("chain", "draw", "pattern"), loglik)}),
        }
    )
    logging.getLogger("arviz_stats.psense").setLevel(logging.ERROR)
    table = psense_summary(tree, var_names=names, threshold=PSENSE_THRESHOLD, round_to=6)
    out = []
    for (param, group), name in zip(slots, names, strict=True):
        prior_s, lik_s = float(table.loc[name, "prior"]), float(table.loc[name, "likelihood"])
        diagnosis = psense_diagnosis(prior_s, lik_s)
        out.append(
            {
                "parameter": param,
                "group": group,
                "prior": prior_s,
                "likelihood": lik_s,
                "flag": FLAGS.get(diagnosis),
                "diagnosis": diagnosis,
                "prior_role": prior_role(study, (param, group)),
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# Prior odds


def prior_odds(
    log_ml: np.ndarray,
    prior: np.ndarray,
    ids: list[str],
    log_ml_se: np.ndarray | None = None,
    n: int = PRIOR_ODDS_POINTS,
) -> dict[str, dict]:
    """Posterior probability of each hypothesis as a function of its prior probability.

    Hypothesis i gets prior probability π; the others share 1 - π in their original
    proportions w_j. Bayes' rule gives P(H_i | y) = π B_i / (π B_i + (1 - π) Σ_j w_j B_j) with
    B = p(y | H). The others keep their order among themselves, so i leads exactly when
    π B_i > (1 - π) max_j w_j B_j: ``flip_prior`` = expit(max_j (log w_j + log B_j) - log B_i);
    ``even_odds_prior`` (posterior 1/2) uses the log-sum instead of the max.
    """
    log_ml, prior = np.asarray(log_ml, float), np.asarray(prior, float)
    se = np.zeros_like(log_ml) if log_ml_se is None else np.asarray(log_ml_se, float)
    grid = np.linspace(0.0, 1.0, n + 2)[1:-1]
    out = {}
    for i, hid in enumerate(ids):
        others = [j for j in range(len(ids)) if j != i]
        if not others:
            out[hid] = {"flip_prior": None, "even_odds_prior": None, "curve": {"prior": [], "posterior": []}}
            continue
        lw = np.log(prior[others]) - np.log(prior[others].sum())
        terms = lw + log_ml[others]
        log_rest = float(logsumexp(terms))
        j = others[int(np.argmax(terms))]
        flip_logit = float(terms.max() - log_ml[i])
        post = expit(np.log(grid) - np.log1p(-grid) + log_ml[i] - log_rest)
        flip = float(expit(flip_logit))
        out[hid] = {
            "prior_probability": float(prior[i]),
            "posterior_probability": float(expit(np.log(prior[i]) - np.log1p(-prior[i]) + log_ml[i] - log_rest)),
            "flip_prior": flip,
            "flip_prior_se": float(flip * (1 - flip) * math.hypot(se[i], se[j])),
            "flip_against": ids[j],
            "even_odds_prior": float(expit(log_rest - log_ml[i])),
            "curve": {"prior": grid.tolist(), "posterior": post.tolist()},
        }
    return out


__all__ = [
    "CLAIM",
    "FLAGS",
    "PRIOR_DATA_CONFLICT",
    "PRIOR_ODDS_POINTS",
    "PSENSE_THRESHOLD",
    "SHARED",
    "STRONG_PRIOR",
    "Reweight",
    "default_k_threshold",
    "log_prior_ratio",
    "power_scaling",
    "prior_odds",
    "prior_role",
    "psense_diagnosis",
    "psis_reweight",
]
