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


# --- the overdispersed (Polya) model ------------------------------------------------------------
#
# With ``[model] overdispersion = "cell"`` each cell (group, domain, quarter) has its own share
# Beta(p phi, (1 - p) phi) around p = sigmoid(eta), integrated out: the cell's weighted counts
# (a, b) have the Polya sequence likelihood log B(p phi + a, (1 - p) phi + b) - log B(p phi,
# (1 - p) phi). The concentration phi is one number for the whole study, so groups are no longer
# independent given it: phi is integrated outermost. In a static study the cells of one domain
# (in different quarters) share their log-odds but not their Beta draws.


def log_polya(eta, phi, a: float, b: float) -> np.ndarray:
    """The Polya sequence log-likelihood of one cell's weighted counts (a, b), elementwise."""
    from scipy.special import betaln

    eta, phi = np.broadcast_arrays(np.asarray(eta, float), np.asarray(phi, float))
    p, q = expit(eta), expit(-eta)
    alpha, beta = np.maximum(phi * p, 1e-300), np.maximum(phi * q, 1e-300)
    return betaln(alpha + a, beta + b) - betaln(alpha, beta)


def log_ml_polya(
    tilt_priors,
    spread_priors,
    concentration_prior,
    cells: Sequence[Sequence[Sequence[tuple[float, float]]]],
    *,
    n_tilt: int = 121,
    n_log_spread: int = 101,
    n_log_phi: int = 61,
    eta_range: tuple[float, float] = (-40.0, 40.0),
    eta_step: float = 0.01,
    small_spread: float = 0.03,
    n_nodes: int = 40,
    log_spread_floor: float = -28.0,
    edge_tol: float = 1e-9,
) -> float:
    """Exact log p(y) of a static overdispersed study.

    ``cells[group][domain]`` lists the (a, b) weighted counts of that domain's cells (one per
    quarter with data); ``tilt_priors``/``spread_priors`` per group, one ``concentration_prior``.

    For every phi, each domain's ``L(eta) = prod over its cells of Polya(eta)`` is tabulated on a
    fine eta grid; ``∫ N(eta; tilt, spread) L(eta) d eta`` is then a matrix product for spreads
    that the grid resolves (trapezoid on a Gaussian: spectrally exact) and Gauss-Hermite in z
    for smaller spreads. The outer integrals over tilt, log spread and log phi are trapezoids on
    grids whose ends are checked to carry negligible mass.
    """
    lo_u = float(np.log(concentration_prior.ppf(1e-12)))
    hi_u = float(np.log(concentration_prior.isf(1e-12)))
    u_phi, du_phi = _grid(lo_u, hi_u, n_log_phi)
    phi = np.exp(u_phi)
    etas = np.arange(eta_range[0], eta_range[1] + eta_step / 2, eta_step)
    x, w = hermegauss(n_nodes)
    log_f = concentration_prior.logpdf(phi) + u_phi  # + u: Jacobian of phi = exp(u)
    for tp, sp, domains in zip(tilt_priors, spread_priors, cells, strict=True):
        t, dt = _grid(tp.ppf(1e-14), tp.isf(1e-14), n_tilt)
        u, du = _grid(log_spread_floor, float(np.log(sp.isf(1e-14))), n_log_spread)
        s = np.exp(u)
        # log of prod_d ∫ N(eta; tilt, s) L_d(eta) d eta on (phi, tilt, spread)
        log_like = np.zeros((len(phi), len(t), len(s)))
        for counts in domains:
            table = sum(log_polya(etas[:, None], phi[None, :], a, b) for a, b in counts)  # (eta, phi)
            top = table.max(axis=0)
            scaled = np.exp(table - top)  # (eta, phi)
            for k, sk in enumerate(s):
                if sk >= small_spread:
                    kern = stats.norm.pdf(etas[None, :], t[:, None], sk) * eta_step  # (tilt, eta)
                    kern[:, [0, -1]] *= 0.5
                    val = kern @ scaled  # (tilt, phi)
                    with np.errstate(divide="ignore"):
                        log_like[:, :, k] += (np.log(val) + top).T
                else:
                    nodes = t[:, None] + sk * x[None, :]  # (tilt, nodes)
                    ll = sum(log_polya(nodes[None], phi[:, None, None], a, b) for a, b in counts)
                    log_like[:, :, k] += logsumexp(ll + np.log(w) - LOG_SQRT_2PI, axis=-1)
        log_g = tp.logpdf(t)[None, :, None] + (sp.logpdf(s) + u)[None, None, :] + log_like
        lw = np.zeros(log_g.shape[1:])
        lw[[0, -1], :] += np.log(0.5)
        lw[:, [0, -1]] += np.log(0.5)
        group = logsumexp(log_g + lw[None], axis=(1, 2)) + np.log(dt * du)  # (phi,)
        top = log_g.max()
        edges = np.concatenate(
            [log_g[:, 0].ravel(), log_g[:, -1].ravel(), log_g[:, :, 0].ravel(), log_g[:, :, -1].ravel()]
        )
        if edges.max() - top > np.log(edge_tol):
            raise ValueError("the tilt/spread grid truncates the integrand; widen it")
        log_f = log_f + group
    lw = np.zeros(len(phi))
    lw[[0, -1]] = np.log(0.5)
    if max(log_f[0], log_f[-1]) - log_f.max() > np.log(edge_tol):
        raise ValueError("the concentration grid truncates the integrand; widen it")
    return float(logsumexp(log_f + lw) + np.log(du_phi))
