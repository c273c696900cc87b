"""The statistics the report computes from stored draws: pure functions of arrays, no I/O, no fitting.

Intervals, the propensity to cooperate at the reference quarter, posterior predictive replications per (group, domain), LOO predictive probabilities for
the calibration plot, and the per-event LOO table of runs that predate ``loo_pointwise.csv``.

An overdispersed study (``[model] overdispersion = "cell"``) passes its concentration draws
(``concentration_draws``): a cell's events then share one cooperative share
Beta(p phi, (1 - p) phi) around p = sigmoid(eta), so replications draw that share once per cell and
draw, and an event left out is predicted given the rest of its cell (``forecast.stats.loo``). Without
them (None) every function is the plain model's, draw for draw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecast.data.cells import CellData
from forecast.model.build import latent_logit
from forecast.model.predictive import draw_cell_shares
from forecast.spec.study import Study
from forecast.stats.loo import pattern_loglik, psis_loo_cells
from forecast.stats.psis import psislw


def num(value: object) -> float:
    """A stored figure as a float: an unknown one (JSON null, written for NaN or infinity) is NaN."""
    return float("nan") if value is None else float(value)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def interval(a: np.ndarray) -> tuple[float, float, float]:
    """Median and the central 94% interval: (median, low, high)."""
    lo, med, hi = np.percentile(a, [3, 50, 97])
    return float(med), float(lo), float(hi)


def as_samples(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(samples, ...) -> (chain, draw, ...) for ArviZ."""
    return a.reshape(*shape, *a.shape[1:])


def propensity(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """P(cooperative) per (sample, group, domain) at the reference quarter.

    There the trend term is zero and the random walk is anchored at zero, so only tilt, spread
    and the domain effects enter: the model's own formula on a one-quarter grid.
    """
    eta = latent_logit(np, arrays, np.zeros(1), 0, ())
    return sigmoid(eta[..., 0])


def group_domain_counts(study: Study, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events and cooperative events per (group, domain), and each event's cooperative flag."""
    n_g, n_d = len(study.groups), len(study.domains)
    gidx = table["group"].map({g.id: i for i, g in enumerate(study.groups)}).to_numpy()
    didx = table["domain"].map({d.id: i for i, d in enumerate(study.domains)}).to_numpy()
    coop = table["cooperative"].to_numpy(dtype=bool)
    n_gd = np.zeros((n_g, n_d))
    k_gd = np.zeros((n_g, n_d))
    np.add.at(n_gd, (gidx, didx), 1)
    np.add.at(k_gd, (gidx, didx), coop)
    return n_gd, k_gd, coop


def replicate_shares(
    eta: np.ndarray,
    cells: CellData,
    n_gd: np.ndarray,
    k_gd: np.ndarray,
    rng: np.random.Generator,
    n_draws: int,
    concentration: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior predictive replications of the cooperative share per (group, domain).

    ``n_draws`` posterior draws (without replacement) each replicate every event from its cell's
    probability; overdispersed (``concentration``: one draw per posterior draw), from the cell's
    share drawn once per cell and draw from Beta(p phi, (1 - p) phi). Returns the replicated shares
    (draws, groups, domains) and the two-sided posterior predictive p-values of the observed counts
    (groups, domains).
    """
    n_g, n_d = n_gd.shape
    cell_gd = cells.group * n_d + cells.domain
    take = rng.choice(eta.shape[0], size=min(n_draws, eta.shape[0]), replace=False)
    share = sigmoid(eta[take])  # (draws, cells)
    if concentration is not None:
        phi = np.asarray(concentration, dtype=float).reshape(-1)
        if phi.size != eta.shape[0]:
            raise ValueError(f"{phi.size} concentration draws for {eta.shape[0]} draws of the log-odds")
        share = draw_cell_shares(share, phi[take][:, None], rng)
    counts = rng.binomial(cells.n_events, share)  # (draws, cells)
    per_gd = np.zeros((len(take), n_g * n_d))
    np.add.at(per_gd.T, cell_gd, counts.T)
    per_gd = per_gd.reshape(-1, n_g, n_d)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(n_gd > 0, per_gd / np.maximum(n_gd, 1), np.nan)
    upper = (per_gd >= k_gd).mean(axis=0)
    lower = (per_gd <= k_gd).mean(axis=0)
    return shares, np.minimum(1.0, 2 * np.minimum(upper, lower))


def loo_predictive_probability(eta: np.ndarray, cells: CellData, concentration: np.ndarray | None = None) -> np.ndarray:
    """P(cooperative) of each pattern's event predicted without it: PSIS-weighted over the draws.

    Plain model: the cell's p per draw. Overdispersed (``concentration``, one per draw): the event
    given the rest of its cell, the Polya predictive ``(alpha + W_c') / (phi + N')`` with
    ``alpha = p phi`` and (W_c', N') the cell's cooperative and total weight without the event,
    weighted by the non-factorised LOO terms (``forecast.stats.loo.PolyaPatternLoglik``).
    """
    loglik = pattern_loglik(eta, cells, concentration)  # (samples, patterns), reliability-weighted as in the fit
    # psislw takes the log-likelihood and smooths weights 1 / p(y_i | theta) (leave-one-out).
    log_w, _ = psislw(loglik.T, r_eff=1.0)
    w = np.exp(log_w - log_w.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    p = sigmoid(eta[:, cells.pattern_cell]).T  # (patterns, samples)
    if concentration is not None:
        phi = np.asarray(concentration, dtype=float).reshape(-1)[None, :]
        cell, weight = cells.pattern_cell, cells.pattern_weight
        coop = cells.pattern_coop.astype(bool)
        # The rest of the cell (rounding can leave -1e-16 where nothing is left).
        coop_rest = np.maximum(cells.w_coop[cell] - np.where(coop, weight, 0.0), 0.0)[:, None]
        total_rest = np.maximum(cells.w_coop[cell] + cells.w_conf[cell] - weight, 0.0)[:, None]
        p = (p * phi + coop_rest) / (phi + total_rest)
    return (w * p).sum(axis=-1)


def pointwise_loo(
    ids: np.ndarray,
    etas: dict[str, np.ndarray],
    chains: dict[str, int],
    cells: CellData,
    concentrations: dict[str, np.ndarray | None] | None = None,
) -> pd.DataFrame:
    """Per observation: elpd_loo__<h> and pareto_k__<h>, recomputed from the draws (as update does).

    ``concentrations``: each hypothesis's concentration draws when the study is overdispersed
    (each event then given the rest of its cell, as update computes it).
    """
    table = pd.DataFrame({"id": ids})
    for hid, eta in etas.items():
        lo = psis_loo_cells(eta, cells, chains[hid], (concentrations or {}).get(hid))
        table[f"elpd_loo__{hid}"] = lo.pointwise[cells.event_pattern]
        table[f"pareto_k__{hid}"] = lo.pareto_k[cells.event_pattern]
    return table
