"""Log marginal likelihood by bridge sampling on the NUTS draws, with its Monte Carlo error.

Meng & Wong's (1996) iterative bridge estimator with a multivariate normal proposal fitted to
half of the (unconstrained) posterior draws, as in Gronau et al. (2017) and the R package
``bridgesampling``; the other half and an equal number of proposal draws enter the bridge. The
error is Frühwirth-Schnatter's (2004) approximate relative mean squared error, which accounts
for the autocorrelation of the MCMC draws through their effective sample size. Pure functions:
the caller supplies the unnormalised log posterior.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp


@dataclass(frozen=True)
class BridgeResult:
    log_ml: float
    se: float  # approximate standard error of log_ml (= relative error of the ML)
    iterations: int
    n_posterior: int
    n_proposal: int
    ess_posterior: float


def _ess(x: np.ndarray) -> float:
    """Bulk-free ESS of a (chain, draw) array (ArviZ's 'mean' method)."""
    from arviz_stats.base import array_stats

    return float(array_stats.ess(x, method="mean"))


def bridge_sampling(
    log_posterior: Callable[[np.ndarray], np.ndarray],
    draws: np.ndarray,
    rng: np.random.Generator,
    *,
    standard_normal: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> BridgeResult:
    """Estimate log p(y) from posterior draws on the unconstrained space.

    ``draws`` has shape (chains, draws, dim); ``log_posterior`` maps an (n, dim) array to the
    unnormalised log posterior density (log prior + log likelihood + log Jacobian) per row.

    ``standard_normal`` (bool, per coordinate) marks coordinates known to be independent
    standard normals under the posterior (a model's unused sampler coordinates, see
    ``StudyModel.standard_normal_coordinates``). The proposal takes them exactly instead of
    estimating their means and covariances from the draws: those estimates only add noise (a
    covariance fitted to n draws in d dimensions misses by ~d^2 / 4n nats), and the posterior
    factor they share with the proposal cancels in the bridge.
    """
    chains, n_draws, dim = draws.shape
    exact = np.zeros(dim, dtype=bool) if standard_normal is None else np.asarray(standard_normal, dtype=bool)
    if exact.shape != (dim,):
        raise ValueError(f"standard_normal must have one entry per coordinate ({dim}), got shape {exact.shape}")
    fitted = ~exact
    n_fitted = int(fitted.sum())
    half = n_draws // 2
    fit = draws[:, :half].reshape(-1, dim)[:, fitted]
    bridge = draws[:, half : 2 * half]
    mean = fit.mean(axis=0)
    cov = np.atleast_2d(np.cov(fit, rowvar=False)) + 1e-10 * np.eye(n_fitted)
    chol = np.linalg.cholesky(cov)
    log_det = 2.0 * np.log(np.diag(chol)).sum()

    def log_proposal(x: np.ndarray) -> np.ndarray:
        sol = np.linalg.solve(chol, (x[:, fitted] - mean).T)
        out = -0.5 * (sol**2).sum(axis=0) - 0.5 * log_det
        if exact.any():
            out = out - 0.5 * (x[:, exact] ** 2).sum(axis=1)
        return out - 0.5 * dim * np.log(2 * np.pi)

    post = bridge.reshape(-1, dim)
    n1 = len(post)
    n2 = n1
    prop = rng.standard_normal((n2, dim))
    prop[:, fitted] = mean + prop[:, fitted] @ chol.T
    l1 = log_posterior(post) - log_proposal(post)  # log [p*(x) / g(x)] at posterior draws
    l2 = log_posterior(prop) - log_proposal(prop)  # ... at proposal draws
    finite2 = np.isfinite(l2)
    l2 = np.where(finite2, l2, -np.inf)
    if not np.all(np.isfinite(l1)):
        raise FloatingPointError("the log posterior is not finite at some posterior draws")

    ess = min(_ess(l1.reshape(chains, half)), float(n1))
    s1 = ess / (ess + n2)
    s2 = n2 / (ess + n2)
    log_s1, log_s2 = np.log(s1), np.log(s2)

    lstar = float(np.median(l1))
    log_r = 0.0  # log of ML / exp(lstar)
    a1, a2 = l1 - lstar, l2 - lstar
    iterations = max_iter
    for it in range(1, max_iter + 1):
        num = logsumexp(a2 - np.logaddexp(log_s1 + a2, log_s2 + log_r)) - np.log(n2)
        den = logsumexp(-np.logaddexp(log_s1 + a1, log_s2 + log_r)) - np.log(n1)
        new = num - den
        if abs(new - log_r) < tol:
            log_r, iterations = new, it
            break
        log_r = new
    log_ml = float(log_r + lstar)

    # Frühwirth-Schnatter's approximate relative MSE of the bridge estimate.
    f1 = np.exp(-np.logaddexp(log_s1, log_s2 - (l2 - log_ml)))  # at proposal draws
    f2 = np.exp(-np.logaddexp(log_s1 + (l1 - log_ml), log_s2))  # at posterior draws
    ess_f2 = min(_ess(f2.reshape(chains, half)), float(n1))
    with np.errstate(divide="ignore", invalid="ignore"):
        # f1 underflows to 0 at every proposal draw when the proposal misses the posterior
        # (e.g. a covariance fitted to fewer draws than dimensions): the error is then unknown.
        re2 = f1.var() / (n2 * f1.mean() ** 2) + f2.var() / (ess_f2 * f2.mean() ** 2)
    se = float(np.sqrt(re2)) if np.isfinite(re2) else float("inf")
    return BridgeResult(log_ml, se, iterations, n1, n2, ess)


# Above this Monte Carlo error (nats) a log marginal likelihood is not a figure to defend: a
# posterior probability then moves by a factor of e^0.5 ~ 1.6 between reruns.
BRIDGE_SE_MAX = 0.5


def bridge_problem(result: BridgeResult) -> str | None:
    """Why a bridge-sampling estimate cannot be trusted, or None when it can."""
    if not np.isfinite(result.log_ml):
        return "marginal likelihood: bridge sampling gave no finite estimate"
    if not result.se <= BRIDGE_SE_MAX:
        shown = "cannot be estimated" if not np.isfinite(result.se) else f"{result.se:.2f} nats > {BRIDGE_SE_MAX}"
        return (
            f"marginal likelihood: Monte Carlo error {shown} (the normal proposal fitted to "
            f"{result.n_posterior} draws covers the posterior poorly; use more --draws)"
        )
    return None
