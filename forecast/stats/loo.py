"""Comparing hypotheses: posterior probabilities from marginal likelihoods, and PSIS-LOO.

Two different questions, kept apart everywhere they are shown:
- *support*: how probable is each hypothesis given the evidence and the prior probabilities
  (Bayes factors from the log marginal likelihoods, Monte Carlo error propagated);
- *predictive accuracy*: how well would each hypothesis's fitted model predict a left-out
  event (PSIS-LOO elpd, differences with their standard errors, stacking weights). Stacking
  weights are not probabilities that a hypothesis is true.

With an overdispersed model (``[model] overdispersion = "cell"``: each cell's share is
Beta(p phi, (1 - p) phi) around p, integrated out) the events of one cell are not independent
given the parameters, so LOO is *non-factorised*: the left-out event's term is its conditional
given the rest of its cell, p(y_i | y_cell without i, theta), the Polya predictive
``(alpha + cooperative weight of the others) / (phi + weight of the others)`` for one cooperative
event of unit weight (weighted events: the ratio of the cell's likelihoods with and without it).
PSIS then reweights the full posterior by 1 / p(y_i | y_-i, theta), which is exactly
p(theta | y_-i) up to a constant, so the estimate is of p(y_i | y_-i) as in the plain model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln, logsumexp, softmax

from forecast.stats.convergence import ess_mean
from forecast.stats.psis import logsumexp_rows, psislw
from forecast.stats.threads import THREADS, map_threads
from forecast.stats.wording import JEFFREYS_SCALE


class Patterns(Protocol):
    """What LOO needs of the observations: their distinct (cell, outcome, weight) patterns.

    ``forecast.data.cells.CellData`` is one; stats imports nothing from forecast, so it is named
    by its shape here.
    """

    pattern_cell: np.ndarray
    pattern_coop: np.ndarray
    pattern_weight: np.ndarray
    pattern_count: np.ndarray


class CellCounts(Patterns, Protocol):
    """Patterns with their cells' summed weights, which the overdispersed LOO terms need."""

    w_coop: np.ndarray
    w_conf: np.ndarray


# Jeffreys' scale, one definition (forecast.stats.wording); below 1 the leader has "no support".
JEFFREYS = tuple((bound, "no support" if label == "no" else label) for bound, label in JEFFREYS_SCALE)
PARETO_K_GOOD = 0.7
# LOO works through the patterns' log-likelihood in blocks of about this many values (8 MB).
_BLOCK_ELEMENTS = 1 << 20
# ... on this many threads (the numbers do not depend on it).
LOO_WORKERS = THREADS


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
    if not np.all(np.isfinite(log_ml_se)):
        # An estimate of unknown error (forecast.stats.bridge.bridge_problem) leaves every
        # probability's error unknown: they are tied through the normalisation.
        return p, np.full_like(p, np.nan)
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


class PatternLoglik:
    """Log-likelihood of one event of each pattern, pattern-major, built on demand for any rows.

    Holds both outcomes' log-likelihood once per cell (patterns outnumber cells several times):
    a (2 * cells, samples) table, conflictual rows first; draws of all chains flattened in
    (chain, draw) order. ``rows(patterns)`` gathers and weights the requested patterns, a
    contiguous copy per pattern.
    """

    def __init__(self, eta: np.ndarray, cells: Patterns):
        eta_by_cell = eta.reshape(-1, eta.shape[-1]).T
        n_cells, self.n_samples = eta_by_cell.shape
        self.table = np.empty((2 * n_cells, self.n_samples))
        coop = self.table[n_cells:]
        # log sigmoid(-eta) = log sigmoid(eta) - eta
        np.logaddexp(0.0, -eta_by_cell, out=coop)
        np.negative(coop, out=coop)
        np.subtract(coop, eta_by_cell, out=self.table[:n_cells])
        self.index = cells.pattern_cell + n_cells * cells.pattern_coop
        self.weight = cells.pattern_weight
        self.n_patterns = self.index.size

    def rows(self, patterns: slice | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        index = self.index[patterns]
        out = np.take(self.table, index, axis=0, out=None if out is None else out[: index.size])
        out *= self.weight[patterns, None]
        return out

    @property
    def same_order(self) -> np.ndarray | None:
        """Labels of rows that are positive multiples of one another (``psislw``'s ``same_order``):
        the patterns of one cell and outcome differ only in their weight."""
        return self.index

    def block_slices(self) -> list[slice]:
        """The patterns in blocks small enough to stay in cache."""
        block = max(1, _BLOCK_ELEMENTS // max(1, self.n_samples))
        return [slice(a, min(a + block, self.n_patterns)) for a in range(0, self.n_patterns, block)]

    def blocks(self) -> Iterator[tuple[slice, np.ndarray]]:
        """(patterns, rows) in blocks small enough to stay in cache, reusing one buffer."""
        buf = None
        for sel in self.block_slices():
            if buf is None:
                buf = np.empty((sel.stop - sel.start, self.n_samples))
            yield sel, self.rows(sel, out=buf)


_EULER = 0.5772156649015329


def _lgamma_plus(x: np.ndarray, log_x: np.ndarray, base: np.ndarray) -> np.ndarray:
    """lgamma(x + base) for base >= 0, exact where x underflows (base 0: lgamma(x) = -log x - gamma x)."""
    small = (base <= 0.0) & (x < 1e-8)
    return np.where(small, -log_x - _EULER * x, gammaln(np.where(small, 1.0, x + np.maximum(base, 0.0))))


class PolyaPatternLoglik(PatternLoglik):
    """As ``PatternLoglik`` for the overdispersed model: one event of each pattern given the rest of
    its cell (see the module docstring), per draw of the cell log-odds and of the concentration.

    For a cooperative event of weight w in a cell with summed weights (W_c, W_f), N = W_c + W_f:
    ``lgamma(a + W_c) - lgamma(a + W_c - w) - lgamma(phi + N) + lgamma(phi + N - w)``,
    ``a = phi sigmoid(eta)`` (conflictual: ``b = phi sigmoid(-eta)`` and W_f).
    """

    def __init__(self, eta: np.ndarray, cells: CellCounts, concentration: np.ndarray):
        self.eta = eta.reshape(-1, eta.shape[-1]).T  # (cells, samples)
        self.n_samples = self.eta.shape[1]
        phi = np.asarray(concentration, dtype=np.float64).reshape(-1)
        if phi.size != self.n_samples:
            raise ValueError(f"{phi.size} concentration draws for {self.n_samples} draws of the log-odds")
        self.phi, self.log_phi = phi, np.log(phi)
        self.cell, self.coop = cells.pattern_cell, cells.pattern_coop.astype(bool)
        self.weight = cells.pattern_weight
        own = np.where(self.coop, cells.w_coop[self.cell], cells.w_conf[self.cell])
        total = cells.w_coop[self.cell] + cells.w_conf[self.cell]
        # Weights of the rest of the cell (rounding can leave -1e-16 where nothing is left).
        self.own_rest = np.maximum(own - self.weight, 0.0)
        self.total_rest = np.maximum(total - self.weight, 0.0)
        self.n_patterns = self.cell.size

    @property
    def same_order(self) -> None:
        """None: a pattern's term given the rest of its cell is no multiple of another's."""
        return None

    def rows(self, patterns: slice | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        idx = np.arange(self.n_patterns)[patterns]
        eta = self.eta[self.cell[idx]]
        sign = np.where(self.coop[idx], 1.0, -1.0)[:, None]
        log_share = -np.logaddexp(0.0, -sign * eta)  # log sigmoid(+-eta)
        log_x = self.log_phi + log_share
        x = np.exp(log_x)
        w, own, total = self.weight[idx, None], self.own_rest[idx, None], self.total_rest[idx, None]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            value = _lgamma_plus(x, log_x, own + w) - _lgamma_plus(x, log_x, own)
            value -= gammaln(self.phi + total + w) - gammaln(self.phi + total)
        if out is None:
            return value
        out[: idx.size] = value
        return out[: idx.size]


def cell_loglik(eta: np.ndarray, cells: CellCounts, concentration: np.ndarray | None = None) -> np.ndarray:
    """Each cell's log-likelihood per draw, (..., cells) from (..., cells): the weighted Bernoulli
    sum, or with ``concentration`` (draws shaped as ``eta``'s leading axes) the Polya one,
    ``log B(a + W_c, b + W_f) - log B(a, b)``. Summed over cells: the data's log-likelihood, for
    reweighting draws (the per-pattern LOO terms do not sum to it when the model is overdispersed).
    """
    eta = np.asarray(eta, dtype=np.float64)
    wc, wf = cells.w_coop, cells.w_conf
    log_p, log_q = -np.logaddexp(0.0, -eta), -np.logaddexp(0.0, eta)
    if concentration is None:
        return wc * log_p + wf * log_q
    phi = np.asarray(concentration, dtype=np.float64)[..., None]
    log_phi = np.log(phi)
    zero = np.zeros_like(wc)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.zeros(np.broadcast_shapes(eta.shape, phi.shape))
        for w, log_s in ((wc, log_p), (wf, log_q)):
            log_x = log_phi + log_s
            x = np.exp(log_x)
            out += np.where(w > 0, _lgamma_plus(x, log_x, w) - _lgamma_plus(x, log_x, zero), 0.0)
        n = wc + wf
        out -= np.where(n > 0, gammaln(phi + n) - gammaln(phi), 0.0)
    return out


def pattern_loglik(eta: np.ndarray, cells: Patterns, concentration: np.ndarray | None = None) -> np.ndarray:
    """Log-likelihood of one event of each pattern, per draw: (..., patterns) from (..., cells).

    ``concentration`` (draws shaped as ``eta``'s leading axes): the overdispersed model's, whose
    terms are each event's conditional given the rest of its cell (``PolyaPatternLoglik``).
    """
    loglik = _pattern_loglik(eta, cells, concentration)
    rows = np.empty((loglik.n_patterns, loglik.n_samples))
    for sel, block in loglik.blocks():
        rows[sel] = block
    return rows.T.reshape(*eta.shape[:-1], -1)


def _pattern_loglik(eta: np.ndarray, cells: Patterns, concentration: np.ndarray | None) -> PatternLoglik:
    if concentration is None:
        return PatternLoglik(eta, cells)
    return PolyaPatternLoglik(eta, cells, concentration)  # type: ignore[arg-type]


def _weighted_total_and_se(values: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    n = counts.sum()
    total = float((values * counts).sum())
    if n < 2:
        return total, float("nan")
    mean = total / n
    var = float((counts * (values - mean) ** 2).sum() / (n - 1))
    return total, float(np.sqrt(n * var))


R_EFF_PATTERNS = 256


def relative_ess(rows: np.ndarray, chains: int) -> float:
    """One relative efficiency for PSIS: the mean over rows of the relative ESS (of the mean) of
    each row's likelihood, as loo does for a single r_eff. ``rows`` is a (rows, samples)
    log-likelihood, samples chain-major."""

    r = ess_mean(np.exp(rows).reshape(len(rows), chains, rows.shape[1] // chains), relative=True)
    return float(np.clip(np.nanmean(r), 1e-3, None)) if np.isfinite(r).any() else 1.0


def psis_loo_cells(eta: np.ndarray, cells: Patterns, chains: int, concentration: np.ndarray | None = None) -> Loo:
    """PSIS-LOO from cell log-odds draws (samples, cells), chain-major, leaving out one event at a time.

    ``concentration`` (samples,): the overdispersed model's draws; each event's term is then its
    conditional given the rest of its cell (non-factorised LOO, see the module docstring).
    Works through the patterns in cache-sized blocks: the (patterns x samples) log-likelihood
    (~400 MB for a million imported events) is never held whole.
    """

    loglik = _pattern_loglik(eta, cells, concentration)
    n_pat, n_samples, counts = loglik.n_patterns, loglik.n_samples, cells.pattern_count
    # Estimated on at most R_EFF_PATTERNS evenly spaced patterns, which is plenty for a mean
    # and keeps 10^4-pattern studies from spending seconds on it.
    r_eff = relative_ess(
        loglik.rows(np.unique(np.linspace(0, n_pat - 1, min(n_pat, R_EFF_PATTERNS)).astype(int))), chains
    )
    pointwise, lppd, k = np.empty(n_pat), np.empty(n_pat), np.empty(n_pat)
    same_order = loglik.same_order

    def block(sel: slice) -> None:
        rows = loglik.rows(sel)
        # arviz-stats' psislw takes the log-likelihood and smooths weights proportional to its
        # negative exponent (1 / p(y_i | theta)), the leave-one-out importance ratios, and
        # returns them normalised. Row by row, so blocks give the same numbers as one call.
        log_w, k[sel] = psislw(rows, r_eff=r_eff, same_order=same_order[sel] if same_order is not None else None)
        lppd[sel] = logsumexp_rows(rows)[:, 0]
        log_w += rows
        pointwise[sel] = logsumexp_rows(log_w)[:, 0]

    # Blocks are independent (disjoint rows of the outputs) and NumPy releases the GIL in its
    # loops: on LOO_WORKERS threads a 10^5-event study's LOO takes about half the time.
    map_threads(block, loglik.block_slices(), LOO_WORKERS)
    lppd -= np.log(n_samples)
    elpd, se = _weighted_total_and_se(pointwise, counts)
    threshold = min(1 - 1 / np.log10(n_samples), PARETO_K_GOOD)
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
