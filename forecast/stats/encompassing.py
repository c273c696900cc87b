"""Bayes factors of constraint hypotheses against their encompassing model, with Monte Carlo errors.

A constraint hypothesis H_i is a region R_i of the encompassing model's parameter space; its prior
is the encompassing prior restricted to R_i. Then (Klugkist, Laudy & Hoijtink 2005)

    BF(H_i, H_e) = P(R_i | y, H_e) / P(R_i | H_e),

the region's posterior mass over its prior mass, both under the one encompassing model. Both are
Monte Carlo estimates here:

- **prior mass** from independent draws of the encompassing prior: the fraction inside, with
  binomial standard error ``sqrt(p (1 - p) / n)``. When fewer than ``MIN_HITS`` draws fall inside,
  the plain fraction is too noisy (and 0 would make the Bayes factor infinite), so the mass is
  estimated by **stepwise conditioning** (subset simulation; Au & Beck 2001, the sampling form of
  the stepwise conditioning ``bain`` uses for its constrained regions, Hoijtink, Mulder, van
  Lissa & Gu 2019): the region ``{m(u) >= 0}`` (``m`` the smallest margin of its constraints) is
  reached through nested regions ``{m(u) >= g_1} ⊃ {m(u) >= g_2} ⊃ ...`` each holding about
  ``p0`` of the previous one, so ``P(R) = Π_k P(R_k | R_{k-1})``, each factor estimated from
  ``n`` draws of the prior restricted to ``R_{k-1}`` (preconditioned Crank-Nicolson moves in the
  prior's standard-normal coordinates, which keep the prior invariant; a move is kept when it
  stays in the current region). Its Monte Carlo error comes from ``repeats`` independent runs.
  A region that no level can enter is reported as empty (``EmptyRegion``), never as a zero.
- **posterior mass** from the posterior draws (chains): the fraction inside, with error
  ``sqrt(p (1 - p) / ESS)`` (ESS of the indicator's mean). When no draw falls inside, the mass
  is 0 with a one-sided 95% upper bound ``1 - 0.05^(1 / ESS)`` (about 3 / ESS), and the Bayes
  factor is reported as "below" its bound, never as exactly 0 (nor, for the complement of a
  region holding every draw, as infinite).

Errors propagate by the delta method to log BF (relative errors add in quadrature) and by
simulation to the posterior probabilities. Nothing here imports the toolkit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from forecast.stats.convergence import ess_mean

MIN_HITS = 100  # fewer prior draws inside a region than this: stepwise conditioning
UPPER_LEVEL = 0.95
STEP_P0 = 0.1
STEP_N = 2_000
STEP_REPEATS = 5
STEP_MAX_LEVELS = 40  # p0^40 = 1e-40: below that a region is treated as empty
PROBABILITY_SIMULATIONS = 4_000


class EmptyRegion(ValueError):
    """No draw of the prior can be brought into the region: it is empty (or of negligible mass)."""


@dataclass(frozen=True)
class Mass:
    """A Monte Carlo estimate of a region's probability mass.

    ``method``: ``"draws"`` (the fraction of draws inside), ``"stepwise"`` (stepwise
    conditioning). ``upper`` is a one-sided 95% upper bound when no draw fell inside (value 0).
    """

    value: float
    se: float
    method: str
    n: float  # draws (independent prior draws, or the posterior indicator's ESS)
    hits: int
    upper: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def zero_hits_upper(n_eff: float, level: float = UPPER_LEVEL) -> float:
    """One-sided upper bound on a mass when none of ``n_eff`` effective draws fell inside."""
    return float(1.0 - (1.0 - level) ** (1.0 / max(n_eff, 1.0)))


def mass_from_draws(inside: np.ndarray) -> Mass:
    """Mass from an indicator over draws: (n,) independent draws, or (chains, draws) MCMC draws."""
    a = np.asarray(inside, dtype=float)
    p = float(a.mean())
    hits = int(a.sum())
    if a.ndim == 1:
        n_eff = float(a.size)
    else:
        n_eff = float(ess_mean(a)) if 0 < p < 1 else float(a.size)
        n_eff = min(n_eff, float(a.size)) if math.isfinite(n_eff) else float(a.size)
    se = math.sqrt(p * (1 - p) / n_eff)
    return Mass(p, se, "draws", n_eff, hits, zero_hits_upper(n_eff) if hits == 0 else None)


def stepwise_mass(
    margin: Callable[[np.ndarray], np.ndarray],
    dim: int,
    rng: np.random.Generator,
    *,
    n: int = STEP_N,
    p0: float = STEP_P0,
    repeats: int = STEP_REPEATS,
    max_levels: int = STEP_MAX_LEVELS,
) -> Mass:
    """Mass of ``{u : margin(u) >= 0}`` under u ~ N(0, I_dim) by stepwise conditioning.

    ``margin`` maps (k, dim) points to (k,) margins (>= 0 inside). See the module docstring.
    """
    logs = [_subset_run(margin, dim, rng, n, p0, max_levels) for _ in range(repeats)]
    values = np.exp(logs)
    value = float(values.mean())
    se = float(values.std(ddof=1) / math.sqrt(repeats)) if repeats > 1 else float("nan")
    return Mass(value, se, "stepwise", float(n * repeats), int(round(value * n * repeats)))


def _subset_run(margin, dim: int, rng: np.random.Generator, n: int, p0: float, max_levels: int) -> float:
    u = rng.standard_normal((n, dim))
    g = margin(u)
    log_p = 0.0
    beta = 0.6
    n_seeds = max(int(n * p0), 1)
    for _ in range(max_levels):
        inside = g >= 0
        if inside.mean() >= p0:
            return log_p + math.log(inside.mean())
        order = np.argsort(-g)
        level = float(g[order[n_seeds - 1]])
        if not math.isfinite(level) or level == -np.inf:
            break
        keep = g >= level
        log_p += math.log(keep.mean())
        seeds = u[order[:n_seeds]]
        seed_g = g[order[:n_seeds]]
        chains_u, chains_g = [seeds], [seed_g]
        state, state_g = seeds.copy(), seed_g.copy()
        steps = int(math.ceil(n / n_seeds)) - 1
        for _ in range(steps):
            proposal = math.sqrt(1.0 - beta * beta) * state + beta * rng.standard_normal(state.shape)
            pg = margin(proposal)
            accept = pg >= level
            state = np.where(accept[:, None], proposal, state)
            state_g = np.where(accept, pg, state_g)
            chains_u.append(state.copy())
            chains_g.append(state_g.copy())
            rate = accept.mean()
            beta = float(np.clip(beta * (1.25 if rate > 0.45 else 0.8 if rate < 0.2 else 1.0), 0.02, 1.0))
        u = np.concatenate(chains_u)[:n]
        g = np.concatenate(chains_g)[:n]
    raise EmptyRegion(
        f"no draw of the prior reached the region within {max_levels} steps of stepwise conditioning "
        f"(its prior mass is below {p0**max_levels:.0e}): the region is empty"
    )


@dataclass(frozen=True)
class BayesFactor:
    """BF(H, encompassing) = posterior mass / prior mass, on the log scale with its MC error.

    ``bound``: "upper" when the posterior mass is 0 in the draws (``log_bf`` is then the log of
    the upper bound: the Bayes factor is below it).
    """

    log_bf: float
    log_bf_se: float
    prior: Mass
    posterior: Mass
    bound: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prior"], d["posterior"] = self.prior.to_dict(), self.posterior.to_dict()
        return d


def bayes_factor(prior: Mass, posterior: Mass) -> BayesFactor:
    """BF of a region against the encompassing model, from its prior and posterior masses."""
    if prior.value <= 0:
        raise EmptyRegion("the region has no prior mass: a Bayes factor needs a region the prior can reach")
    rel_prior = prior.se / prior.value if math.isfinite(prior.se) else 0.0
    if posterior.value <= 0:
        upper = posterior.upper if posterior.upper is not None else zero_hits_upper(posterior.n)
        return BayesFactor(math.log(upper / prior.value), rel_prior, prior, posterior, "upper")
    rel_post = posterior.se / posterior.value
    return BayesFactor(math.log(posterior.value / prior.value), math.sqrt(rel_post**2 + rel_prior**2), prior, posterior)


def posterior_probabilities(
    bfs: list[BayesFactor], prior_probabilities: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(H | y) ∝ P(H) BF(H, e); their MC errors; and upper bounds (for Bayes factors given as bounds).

    A Bayes factor given as an upper bound counts as 0 in the probabilities; its upper bound on
    the probability is computed with the bound in its place. Errors: the standard deviation of the
    probabilities over ``PROBABILITY_SIMULATIONS`` draws of the log Bayes factors from their MC
    error distributions (Normal on the log scale).
    """
    prior = np.asarray(prior_probabilities, float)
    lbf = np.array([b.log_bf for b in bfs])
    bounded = np.array([b.bound is not None for b in bfs])
    if bounded.all():  # every region holds no posterior draw: compare their bounds instead
        bounded = np.zeros_like(bounded)
    se = np.array([b.log_bf_se for b in bfs])

    def probs(log_bf: np.ndarray, zero: np.ndarray) -> np.ndarray:
        lw = np.log(prior) + log_bf
        lw = np.where(zero, -np.inf, lw)
        lw = lw - lw.max(axis=-1, keepdims=True)
        w = np.exp(lw)
        return w / w.sum(axis=-1, keepdims=True)

    point = probs(lbf, bounded)
    sims = lbf + se * rng.standard_normal((PROBABILITY_SIMULATIONS, len(bfs)))
    sd = probs(sims, bounded).std(axis=0)
    upper = point.copy()
    for i in np.flatnonzero(bounded):
        only = bounded.copy()
        only[i] = False
        upper[i] = probs(lbf, only)[i]
    return point, sd, upper


def overlaps(inside: dict[str, np.ndarray]) -> list[tuple[str, str, float]]:
    """Pairs of regions that share draws, with the fraction of draws in both (flat indicators)."""
    ids = list(inside)
    out = []
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            both = float(np.mean(np.asarray(inside[a], bool) & np.asarray(inside[b], bool)))
            if both > 0:
                out.append((a, b, both))
    return out


__all__ = [
    "BayesFactor",
    "EmptyRegion",
    "Mass",
    "bayes_factor",
    "mass_from_draws",
    "overlaps",
    "posterior_probabilities",
    "stepwise_mass",
    "zero_hits_upper",
]
