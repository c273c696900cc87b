"""The overdispersed (Polya) cell log-likelihood, with its gradient, as one fused PyTensor Op.

With ``[model] overdispersion = "cell"`` the events of one cell (group, domain, quarter) are not
independent draws at the cell's probability ``p = sigmoid(eta)`` (forecast.model.likelihood):
the cell has its own cooperative share ``theta ~ Beta(p * phi, (1 - p) * phi)`` around ``p``, and
its events are independent given ``theta``. ``phi`` (the study's ``concentration``) is one
number for the whole study. Integrating ``theta`` out analytically gives the Polya (beta-binomial
*sequence*) likelihood of the cell's reliability-weighted counts ``(w_coop, w_conf)``:

    log B(alpha + w_coop, beta + w_conf) - log B(alpha, beta),   alpha = p phi, beta = (1 - p) phi

(no binomial coefficient: the plain model's likelihood is the Bernoulli sequence likelihood, and
it is this one's limit as phi -> infinity). The model keeps working on sufficient statistics:
one term per cell. What it changes is how much a cell can say about ``p``: n events of one cell
carry ``n (1 + phi) / (n + phi)`` events' worth of information, at most ``1 + phi``, so a cell
holding one consultation repeated 2,000 times weighs about as much as a cell of ``phi`` events
(while the evidence that ``p`` is not near 0 or 1 still grows, slowly, like log n).

Fractional (reliability-weighted) counts enter the gamma functions as they are, as they enter
the plain likelihood as powers.

The default is ``overdispersion = "none"`` (measured 2026-12-07, seed 20190712, 4 x 1500 draws).
On the hand-coded default study the data show no overdispersion (the concentration's posterior
is its prior's: median 32, 90% 9-135), PSIS-LOO prefers the plain model by 1.0-1.3 nats per
hypothesis (paired SE 0.55), the answer barely moves (hedging 0.84 -> 0.86-0.88) and an update
takes 3-5x longer. With one cell of 1,951 repeated imported rows added, the option is clearly
better (LOO +12 nats, SE 6; the repeats move log BF(hedging : realignment) by +0.6 nats instead
of +1.3), so studies fed by machine-coded imports should set ``overdispersion = "cell"``. One
concentration serves the whole study: such a cell pulls it down (to ~5) for every cell, so the
option bounds a flood of repeats but does not replace clustering them (``forecast import``).

The Op returns the log-likelihood and its gradients with respect to tilt, spread, z, trend,
volatility, steps and the concentration; its pullback reuses them (NUTS needs first derivatives
only). ``perform`` is the NumPy reference; the Numba implementation is the one nutpie compiles.
Both are written to stay finite at extreme log-odds (``alpha`` or ``beta`` far below 1): the
terms ``x (psi(x + w) - psi(x))`` are computed as ``x (psi(x + w) - psi(x + 1)) + 1`` for
x < 1, and ``lgamma(x)`` of a tiny x as ``-log x - gamma x`` from ``log x`` computed from
the log-odds. ``tests/test_overdispersion.py`` checks them against each other, against finite
differences, against scipy's digamma and against the plain likelihood for large phi.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from pytensor.link.numba.dispatch import basic as numba_basic
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key
from scipy.special import digamma as _sp_digamma
from scipy.special import gammaln

from forecast.model.likelihood import FusedCellLoglik, cell_eta_numpy, parameter_gradients_numpy

# Bump when the Numba implementation changes: it salts the on-disk compile cache key.
_IMPLEMENTATION_VERSION = 1

PARAMETERS = (("tilt", 1), ("spread", 1), ("z", 2), ("trend", 1), ("volatility", 1), ("steps", 2), ("concentration", 0))
EULER = 0.5772156649015329
# Below this, lgamma(x) = -log(x) - EULER x to double precision (the next term is pi^2 x^2 / 12).
_SMALL = 1e-8
# Digamma: the recurrence psi(x) = psi(x + 1) - 1/x up to here, then the asymptotic series.
_ASYMPTOTIC_FROM = 10.0


@numba.njit(cache=True)
def digamma(x: float) -> float:
    """psi(x) for x > 0: recurrence up to x >= 10, then the asymptotic (Bernoulli) series.

    The first omitted term is below 1e-17 at x = 10 (tested against scipy to 1e-12 relative).
    """
    result = 0.0
    while x < _ASYMPTOTIC_FROM:
        result -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    series = f * (
        -1.0 / 12.0
        + f * (1.0 / 120.0 + f * (-1.0 / 252.0 + f * (1.0 / 240.0 + f * (-1.0 / 132.0 + f * (691.0 / 32760.0)))))
    )
    return result + math.log(x) - 0.5 / x + series


@numba.njit(cache=True)
def _x_psi_diff(x: float, w: float) -> float:
    """x (psi(x + w) - psi(x)), finite and accurate for tiny x (where it tends to 1 for w > 0)."""
    if w == 0.0:
        return 0.0
    if x < 1.0:
        # x psi(x) = x psi(x + 1) - 1
        return x * (digamma(x + w) - digamma(x + 1.0)) + 1.0
    return x * (digamma(x + w) - digamma(x))


@numba.njit(cache=True)
def _lgamma_from_log(x: float, log_x: float) -> float:
    """lgamma(x), with log(x) given (exact for tiny x, where x itself may underflow)."""
    if x < _SMALL:
        return -log_x - EULER * x
    return math.lgamma(x)


@numba.njit(cache=True)
def polya_cell(eta: float, phi: float, log_phi: float, wc: float, wf: float):
    """One cell's Polya log-likelihood, d/deta and d/dphi."""
    e = math.exp(-abs(eta))
    r = 1.0 / (1.0 + e)
    p = r if eta >= 0.0 else e * r  # sigmoid(eta)
    q = e * r if eta >= 0.0 else r  # sigmoid(-eta) = 1 - p, without cancellation
    log1pe = math.log1p(e)
    log_p = -(max(-eta, 0.0) + log1pe)  # -softplus(-eta)
    log_q = -(max(eta, 0.0) + log1pe)  # -softplus(eta)
    alpha, beta = phi * p, phi * q
    n = wc + wf
    value = 0.0
    if wc > 0.0:
        value += math.lgamma(alpha + wc) - _lgamma_from_log(alpha, log_phi + log_p)
    if wf > 0.0:
        value += math.lgamma(beta + wf) - _lgamma_from_log(beta, log_phi + log_q)
    if n > 0.0:
        value -= math.lgamma(phi + n) - math.lgamma(phi)
    a_term = _x_psi_diff(alpha, wc)  # alpha (psi(alpha + wc) - psi(alpha))
    b_term = _x_psi_diff(beta, wf)
    # d alpha / d eta = phi p q = q alpha; d beta / d eta = -p beta
    grad_eta = q * a_term - p * b_term
    grad_phi = (a_term + b_term) / phi - (digamma(phi + n) - digamma(phi) if n > 0.0 else 0.0)
    return value, grad_eta, grad_phi


def _lgamma_from_log_np(x: np.ndarray, log_x: np.ndarray) -> np.ndarray:
    return np.where(x < _SMALL, -log_x - EULER * x, gammaln(np.maximum(x, _SMALL)))


def _x_psi_diff_np(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    small = x < 1.0
    lower = np.where(small, x + 1.0, x)
    out = x * (_sp_digamma(x + w) - _sp_digamma(lower)) + small
    return np.where(w == 0.0, 0.0, out)


def polya_cells_numpy(eta: np.ndarray, phi, wc: np.ndarray, wf: np.ndarray):
    """NumPy reference of ``polya_cell`` over arrays (``phi`` broadcasts): (value, d/deta, d/dphi)."""
    eta, phi, wc, wf = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (eta, phi, wc, wf)))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # masked terms (w == 0) only
        return _polya_cells(eta, phi, wc, wf)


def _polya_cells(eta, phi, wc, wf):
    log_p, log_q = -np.logaddexp(0.0, -eta), -np.logaddexp(0.0, eta)
    p, q = np.exp(log_p), np.exp(log_q)
    log_phi = np.log(phi)
    alpha, beta = phi * p, phi * q
    n = wc + wf
    value = np.where(wc > 0, gammaln(alpha + wc) - _lgamma_from_log_np(alpha, log_phi + log_p), 0.0)
    value = value + np.where(wf > 0, gammaln(beta + wf) - _lgamma_from_log_np(beta, log_phi + log_q), 0.0)
    value = value - np.where(n > 0, gammaln(phi + n) - gammaln(phi), 0.0)
    a_term, b_term = _x_psi_diff_np(alpha, wc), _x_psi_diff_np(beta, wf)
    grad_eta = q * a_term - p * b_term
    grad_phi = (a_term + b_term) / phi - np.where(n > 0, _sp_digamma(phi + n) - _sp_digamma(phi), 0.0)
    return value, grad_eta, grad_phi


def cell_polya_loglik_numpy(tilt, spread, z, trend, volatility, steps, concentration, years, index, weights, ref: int):
    """Reference implementation: (log-likelihood, d/dtilt, ..., d/dsteps, d/dconcentration)."""
    eta, rel = cell_eta_numpy(tilt, spread, z, trend, volatility, steps, years, index, ref)
    phi = float(concentration)
    value, grad_eta, grad_phi = polya_cells_numpy(eta, phi, weights[:, 0], weights[:, 1])
    grads = parameter_gradients_numpy(grad_eta, spread, z, volatility, steps, years, index, rel, ref)
    return (float(value.sum()), *grads, float(grad_phi.sum()))


class CellPolyaLoglik(FusedCellLoglik):
    """(tilt, spread, z, trend, volatility, steps, concentration, years, index, weights) -> (loglik, 7 gradients).

    Shapes as ``likelihood.CellLoglik``'s; ``concentration`` is a scalar > 0.
    """

    parameters = PARAMETERS
    reference = staticmethod(cell_polya_loglik_numpy)


@register_funcify_default_op_cache_key(CellPolyaLoglik)
def _numba_cell_polya_loglik(op, node, **kwargs):
    ref = op.ref

    @numba_basic.numba_njit(boundscheck=False)
    def cell_polya_loglik_numba(tilt, spread, z, trend, volatility, steps, concentration, years, index, weights):
        n_g, n_d = z.shape
        n_q = years.shape[0]
        phi = concentration.item()
        log_phi = math.log(phi)
        rel = np.zeros((n_g, n_q))
        b = np.empty((n_g, n_q))
        a = np.empty((n_g, n_d))
        for g in range(n_g):
            for t in range(1, n_q):
                rel[g, t] = rel[g, t - 1] + steps[g, t - 1]
            anchor = rel[g, ref]
            for t in range(n_q):
                rel[g, t] -= anchor
                b[g, t] = trend[g] * years[t] + volatility[g] * rel[g, t]
            for d in range(n_d):
                a[g, d] = tilt[g] + spread[g] * z[g, d]

        da = np.zeros((n_g, n_d))
        db = np.zeros((n_g, n_q))
        total = 0.0
        d_phi = 0.0
        for c in range(index.shape[0]):
            g, d, t = index[c, 0], index[c, 1], index[c, 2]
            value, grad, grad_phi = polya_cell(a[g, d] + b[g, t], phi, log_phi, weights[c, 0], weights[c, 1])
            total += value
            d_phi += grad_phi
            da[g, d] += grad
            db[g, t] += grad

        d_tilt = np.zeros(n_g)
        d_spread = np.zeros(n_g)
        d_z = np.empty((n_g, n_d))
        d_trend = np.zeros(n_g)
        d_vol = np.zeros(n_g)
        d_steps = np.empty(steps.shape)
        for g in range(n_g):
            for d in range(n_d):
                d_tilt[g] += da[g, d]
                d_spread[g] += da[g, d] * z[g, d]
                d_z[g, d] = da[g, d] * spread[g]
            total_rel = 0.0
            for t in range(n_q):
                d_trend[g] += db[g, t] * years[t]
                d_vol[g] += db[g, t] * rel[g, t]
                total_rel += db[g, t] * volatility[g]
            after = 0.0
            for s in range(n_q - 2, -1, -1):
                after += db[g, s + 1] * volatility[g]
                d_steps[g, s] = after - total_rel if s < ref else after
        return np.array(total), d_tilt, d_spread, d_z, d_trend, d_vol, d_steps, np.array(d_phi)

    return cell_polya_loglik_numba, _IMPLEMENTATION_VERSION


# --- what the overdispersed model implies, for checks and simulation ------------------------


def effective_events(n: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """How many independent events' worth of information ``n`` events of one cell carry: n (1 + phi) / (n + phi)."""
    n, phi = np.asarray(n, dtype=float), np.asarray(phi, dtype=float)
    return n * (1.0 + phi) / (n + phi)


__all__ = [
    "CellPolyaLoglik",
    "cell_polya_loglik_numpy",
    "digamma",
    "effective_events",
    "polya_cell",
    "polya_cells_numpy",
]


def concentration_variable(prior):
    """The study's concentration as a scalar PyMC variable with its prior (a ``spec.priors.Prior``
    of a positive family; PyMC's parameter names are the study file's), sampled on the log scale."""
    import pymc as pm

    from forecast.spec.study import CONCENTRATION

    return getattr(pm, prior.dist)(CONCENTRATION, **prior.kwargs)
