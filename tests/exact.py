"""Exact log marginal likelihoods of the static model, by numerical integration (quadrature).

Independent of the toolkit: nothing here imports ``forecast``. For a static study (no time
components) and one counterpart group with priors p(tilt), p(spread),

    p(y) = ∫∫ p(tilt) p(spread) Π_d [ ∫ N(z; 0, 1) exp(ll_d(tilt + spread z)) dz ] dtilt dspread,

    ll_d(eta) = a_d log sigmoid(eta) + b_d log sigmoid(-eta),

with a_d, b_d the summed reliability weights of the group's cooperative and conflictual events
in domain d (over all quarters: a static model has one log-odds per group and domain). Groups
are independent a priori and share no data, so the study's log p(y) is the sum over groups.

- Inner integrals (over z): adaptive Gauss-Hermite quadrature. The integrand is log-concave, so
  its mode is found by safeguarded Newton iterations and the Gauss-Hermite nodes are centred
  and scaled by the Laplace approximation there; this stays exact when ``spread`` is large and
  the likelihood pins z down sharply, where plain Gauss-Hermite on N(0, 1) would not.
- Outer integral (over tilt and u = log spread): the trapezoidal rule on a wide uniform grid,
  which converges geometrically for smooth integrands that vanish at the ends of the grid; the
  ends are checked to carry negligible mass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy import stats
from scipy.special import expit, logsumexp

LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


def pymc_prior(dist: str, **kwargs: float):
    """A frozen scipy.stats distribution with PyMC's parameterisation of ``dist``."""
    if dist == "Normal":
        return stats.norm(loc=kwargs["mu"], scale=kwargs["sigma"])
    if dist == "HalfNormal":
        return stats.halfnorm(scale=kwargs["sigma"])
    if dist == "LogNormal":
        return stats.lognorm(s=kwargs["sigma"], scale=np.exp(kwargs["mu"]))
    if dist == "Gamma":
        return stats.gamma(a=kwargs["alpha"], scale=1.0 / kwargs["beta"])
    if dist == "Exponential":
        return stats.expon(scale=1.0 / kwargs["lam"])
    if dist == "StudentT":
        return stats.t(df=kwargs["nu"], loc=kwargs["mu"], scale=kwargs["sigma"])
    raise ValueError(f"no scipy counterpart for {dist}")


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _z_log_integrand(z, tilt, spread, a, b):
    eta = tilt + spread * z
    # a log σ(η) + b log σ(-η), with log σ(-η) = log σ(η) - η
    return -0.5 * z * z - LOG_SQRT_2PI + (a + b) * log_sigmoid(eta) - b * eta


def log_domain_integral(tilt, spread, a: float, b: float, n_nodes: int = 20) -> np.ndarray:
    """log ∫ N(z; 0, 1) exp(a log σ(t + s z) + b log σ(-(t + s z))) dz, elementwise over (t, s)."""
    tilt, spread = np.broadcast_arrays(np.asarray(tilt, float), np.asarray(spread, float))
    if a == 0 and b == 0:
        return np.zeros(tilt.shape)
    # The mode solves g(z) = -z + s (a (1 - p) - b p) = 0, p = σ(t + s z). g decreases strictly
    # and -s b <= z* <= s a: bisection (robust; Newton alone can cycle here), then Newton steps
    # kept inside the final bracket to polish.
    lo, hi = -spread * b, spread * a

    def g_of(z):
        p = expit(tilt + spread * z)
        return -z + spread * (a * (1.0 - p) - b * p), p

    for _ in range(40):
        mid = 0.5 * (lo + hi)
        g, _ = g_of(mid)
        lo, hi = np.where(g > 0, mid, lo), np.where(g > 0, hi, mid)
    z = 0.5 * (lo + hi)
    for _ in range(6):
        g, p = g_of(z)
        step = z + g / (1.0 + spread * spread * (a + b) * p * (1.0 - p))
        z = np.clip(step, lo, hi)
    g, _ = g_of(z)
    if not np.all(np.abs(g) <= 1e-8 * (1.0 + np.abs(z))):  # pragma: no cover - a quadrature failure
        raise RuntimeError("mode search did not converge")
    p = expit(tilt + spread * z)
    tau = 1.0 / np.sqrt(1.0 + spread * spread * (a + b) * p * (1.0 - p))
    x, w = hermegauss(n_nodes)  # ∫ f(x) exp(-x²/2) dx ≈ Σ w f(x)
    nodes = z[..., None] + tau[..., None] * x
    vals = _z_log_integrand(nodes, tilt[..., None], spread[..., None], a, b)
    return np.log(tau) + logsumexp(vals + np.log(w) + 0.5 * x * x, axis=-1)


def _grid(lo: float, hi: float, n: int) -> tuple[np.ndarray, float]:
    x = np.linspace(lo, hi, n)
    return x, x[1] - x[0]


def log_ml_group(
    tilt_prior,
    spread_prior,
    counts: Sequence[tuple[float, float]],
    *,
    n_tilt: int = 201,
    n_log_spread: int = 151,
    n_nodes: int = 20,
    tilt_range: tuple[float, float] | None = None,
    log_spread_range: tuple[float, float] | None = None,
    edge_tol: float = 1e-10,
) -> float:
    """Exact log p(y) of one counterpart group: ``counts`` lists (a_d, b_d) for each observed domain.

    Domains without observations contribute a factor 1 and may be left out.
    """
    if tilt_range is None:
        tilt_range = (tilt_prior.ppf(1e-14), tilt_prior.isf(1e-14))
    if log_spread_range is None:
        log_spread_range = (-25.0, float(np.log(spread_prior.isf(1e-14))))
    t, dt = _grid(*tilt_range, n_tilt)
    u, du = _grid(*log_spread_range, n_log_spread)
    T, U = np.meshgrid(t, u, indexing="ij")
    S = np.exp(U)
    log_f = tilt_prior.logpdf(T) + spread_prior.logpdf(S) + U  # + U: Jacobian of spread = exp(u)
    for a, b in counts:
        log_f = log_f + log_domain_integral(T, S, float(a), float(b), n_nodes)
    # Trapezoidal weights; the ends must carry negligible mass for the rule to be exact.
    log_w = np.zeros_like(log_f)
    log_w[[0, -1], :] += np.log(0.5)
    log_w[:, [0, -1]] += np.log(0.5)
    total = logsumexp(log_f + log_w) + np.log(dt * du)
    top = log_f.max()
    edges = np.concatenate([log_f[0], log_f[-1], log_f[:, 0], log_f[:, -1]])
    if edges.max() - top > np.log(edge_tol):
        raise ValueError("the integration grid truncates the integrand; widen tilt_range/log_spread_range")
    return float(total)


def log_ml_study(
    group_priors: Sequence[tuple[object, object]], group_counts: Sequence[Sequence[tuple[float, float]]], **kw
) -> float:
    """Sum of ``log_ml_group`` over independent counterpart groups."""
    return float(sum(log_ml_group(tp, sp, c, **kw) for (tp, sp), c in zip(group_priors, group_counts, strict=True)))


def posterior_probabilities(log_ml: Sequence[float], prior: Sequence[float]) -> np.ndarray:
    """P(H | y) from exact log p(y | H) and P(H)."""
    lw = np.log(np.asarray(prior, float)) + np.asarray(log_ml, float)
    return np.exp(lw - logsumexp(lw))
