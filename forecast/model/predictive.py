"""Posterior predictive forecasts: cooperative shares ahead, model averaging, question probabilities.

Pure functions on posterior draws; nothing here samples or touches files.

- The expected share of cooperative interactions in a cell (group g, domain d, quarter t) is
  ``sigmoid(eta[g, d, t])`` per posterior draw (``model.latent_logit``). Quarters after the
  study's window continue the trend and extend the random walk with fresh Normal(0, volatility)
  steps, per draw; quarters inside the window that have no data are already predictive.
- Draws carry weights: uniform for one fit, importance weights in an approximate
  leave-future-out backtest, and ``P(H | y) / S_H`` for the average over hypotheses (Bayesian
  model averaging, BMA). One set of functions serves all three.
- Questions about *observed* events also need how many events a cell sees in a quarter. That
  is modelled per (group, domain) as Poisson with a Gamma(n + 1/2, T) posterior for the rate
  (n distinct events in T quarters, Jeffreys prior), independent of the share: a negative
  binomial count. An assumption, stated wherever its results are shown.
- Prior draws (``prior_draws``: the one prior sampler, for `forecast priors`, `simulate` and
  `calibrate`) and simulated outcomes (``simulate_outcomes``): what a hypothesis predicts before
  any data, drawn with the same formula.
- Overdispersion (``[model] overdispersion = "cell"``): a cell's events share a cooperative
  share drawn from Beta(p phi, (1 - p) phi) around the cell's probability p. Simulated data sets
  draw that share once per cell and then the events from it. The probability that one future
  event is cooperative is the Beta's mean, p, so the share forecasts and the questions about one
  event are the plain model's formulas; questions about a quarter's share of several events
  would need the beta-binomial (see ``question_draws``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

from forecast.errors import InputError
from forecast.model.build import DOMAIN_EFFECT, RW_STEPS, latent_logit, years_from_reference
from forecast.spec.questions import SHARE_KINDS, Question
from forecast.spec.study import CONCENTRATION, Hypothesis, Study, quarter_label

INTERVALS = (0.5, 0.9)
LEVELS = (0.05, 0.25, 0.75, 0.95)  # the ends of the central 90% and 50% intervals
RATE_PRIOR_SHAPE = 0.5  # Jeffreys prior for a Poisson rate
COUNT_TAIL = 1e-10  # probability mass of event counts left out of the enumeration
_EPS = 1e-9  # guards threshold * n against rounding (0.29 * 100 = 28.999999999999996)


# --- prior draws and simulated outcomes ----------------------------------------------------


def prior_draws(study: Study, hypothesis: Hypothesis, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draws of every model variable from the hypothesis's priors, shaped as ``latent_logit`` expects.

    Hyperparameters come from each slot's ``Prior.sample``; the domain effects and random-walk
    steps are the model's standard normals (the model scales them by ``spread``/``volatility``).
    An overdispersed study's concentration (one prior for the study) is drawn last, so the other
    draws are the same as without it.
    """
    G, D, Q = len(study.groups), len(study.domains), study.time.n_quarters
    out: dict[str, np.ndarray] = {}
    for p in study.parameters:
        out[p] = np.stack([hypothesis.priors[(p, g.id)].sample(rng, n) for g in study.groups], axis=-1)
    out[DOMAIN_EFFECT] = rng.standard_normal((n, G, D))
    if "random_walk" in study.time.components and Q > 1:
        out[RW_STEPS] = rng.standard_normal((n, G, Q - 1))
    if study.overdispersed:
        out[CONCENTRATION] = study.concentration.sample(rng, n)
    return out


def one_prior_draw(study: Study, hypothesis: Hypothesis, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One draw of ``prior_draws`` (arrays without the sample axis)."""
    return {k: v[0] for k, v in prior_draws(study, hypothesis, 1, rng).items()}


def _design_indices(study: Study, design: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group, domain, quarter from the study's start) of each design row."""
    gidx = {c: i for i, g in enumerate(study.groups) for c in g.counterparts}
    didx = {d.id: i for i, d in enumerate(study.domains)}
    dates = pd.to_datetime(design["event_date"])
    t = (dates.dt.year * 4 + (dates.dt.month - 1) // 3).to_numpy() - study.time.start
    return design["counterpart"].map(gidx).to_numpy(), design["domain"].map(didx).to_numpy(), t


def cooperation_probability_draws(study: Study, params: Mapping[str, np.ndarray], design: pd.DataFrame) -> np.ndarray:
    """P(cooperative) of each design row (``counterpart``, ``domain``, ``event_date``) under each
    of many parameter draws: (draws, rows). Overdispersed or not, this is the cell's p (the mean
    of its Beta share)."""
    return _probability_at(study, params, *_design_indices(study, design))


def _probability_at(study: Study, params: Mapping[str, np.ndarray], g, d, t) -> np.ndarray:
    eta = latent_logit(
        np, params, years_from_reference(study), study.time.reference - study.time.start, study.time.components
    )
    return expit(eta[:, g, d, t])


def cooperation_probability(study: Study, params: Mapping[str, np.ndarray], design: pd.DataFrame) -> np.ndarray:
    """P(cooperative) of each design row under one parameter draw (arrays without a sample axis)."""
    return cooperation_probability_draws(study, {k: v[None] for k, v in params.items()}, design)[0]


def draw_cell_shares(p: np.ndarray, phi, rng: np.random.Generator) -> np.ndarray:
    """A cell's cooperative share, Beta(p phi, (1 - p) phi), for each p (``phi`` broadcasts)."""
    p = np.clip(np.asarray(p, dtype=float), 1e-300, 1.0 - 1e-16)
    phi = np.broadcast_to(np.asarray(phi, dtype=float), p.shape)
    return rng.beta(p * phi, (1.0 - p) * phi)


def simulate_outcomes(
    study: Study, params: Mapping[str, np.ndarray], design: pd.DataFrame, rng: np.random.Generator
) -> np.ndarray:
    """Cooperative (True) or conflictual outcomes for the design rows under one parameter draw.

    Overdispersed: each (group, domain, quarter) cell of the design first draws its share from
    Beta(p phi, (1 - p) phi), with ``params["concentration"]`` as phi; its events then come from
    that share (``forecast.model.overdispersion``).
    """
    g, d, t = _design_indices(study, design)
    p = _probability_at(study, {k: v[None] for k, v in params.items()}, g, d, t)[0]
    if study.overdispersed:
        if CONCENTRATION not in params:
            raise InputError(
                f"study '{study.name}' is overdispersed ([model] overdispersion = \"{study.overdispersion}\"): "
                f"simulating its events needs a draw of the '{CONCENTRATION}' with the other parameters"
            )
        cells, cell_of_row = np.unique(np.stack([g, d, t], axis=1), axis=0, return_inverse=True)
        first = np.zeros(len(cells), dtype=np.int64)
        first[cell_of_row[::-1]] = np.arange(len(p))[::-1]  # a row of each cell (its p is the cell's)
        shares = draw_cell_shares(p[first], float(np.asarray(params[CONCENTRATION])), rng)
        p = shares[cell_of_row.reshape(-1)]
    return rng.uniform(size=len(design)) < p


# --- predictive draws ---------------------------------------------------------------------


def extend_walk_steps(steps: np.ndarray, n_extra: int, rng: np.random.Generator) -> np.ndarray:
    """Append ``n_extra`` fresh standard-normal random-walk steps to (draws, groups, steps).

    The model scales its standardised steps by each draw's ``volatility``, so a fresh N(0, 1)
    step here is a fresh Normal(0, volatility) step of the walk, drawn independently per draw.
    """
    if n_extra <= 0:
        return steps
    fresh = rng.standard_normal((*steps.shape[:-1], n_extra))
    return np.concatenate([steps, fresh], axis=-1)


def logit_grid(arrays: Mapping[str, np.ndarray], study: Study, last_quarter: int, rng: np.random.Generator):
    """Log-odds on (draws, group, domain, quarter) from the study's first quarter through
    ``max(last_quarter, study.time.end)``, extending the time components past the window."""
    start, ref = study.time.start, study.time.reference
    n_window = study.time.n_quarters
    n_q = max(n_window, last_quarter - start + 1)
    years = (np.arange(n_q) - (ref - start)) / 4.0
    params = dict(arrays)
    if "random_walk" in study.time.components:
        n_draws, n_groups = params["tilt"].shape
        steps = params.get(RW_STEPS, np.zeros((n_draws, n_groups, n_window - 1)))
        params[RW_STEPS] = extend_walk_steps(steps, n_q - n_window, rng)
    return latent_logit(np, params, years, ref - start, study.time.components)


@dataclass(frozen=True)
class Predictive:
    """Draws of the cooperative share on (draws, group, domain, quarter), with draw weights."""

    share: np.ndarray
    weights: np.ndarray  # (draws,), non-negative, sums to one
    quarters: tuple[int, ...]  # the quarter (study.quarter_index) of each position on the last axis
    # An overdispersed model's concentration per draw (``share`` is then each cell's p, the mean
    # of its Beta share); None: events are independent given ``share``.
    concentration: np.ndarray | None = None

    def position(self, quarter: int) -> int:
        try:
            return self.quarters.index(quarter)
        except ValueError:
            raise KeyError(f"no forecast for {quarter_label(quarter)}") from None

    def cell(self, group: int, domain: int, quarter: int) -> np.ndarray:
        return self.share[:, group, domain, self.position(quarter)]

    def mean(self) -> np.ndarray:
        """Weighted mean share, (G, D, Q)."""
        return np.tensordot(self.weights, self.share, axes=1)

    def select(self, quarters: Sequence[int]) -> Predictive:
        """The same draws restricted to some of the quarters."""
        pos = [self.position(q) for q in quarters]
        return Predictive(self.share[..., pos], self.weights, tuple(int(q) for q in quarters), self.concentration)


def uniform_weights(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def predictive(
    arrays: Mapping[str, np.ndarray],
    study: Study,
    quarters: Sequence[int],
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
    concentration: np.ndarray | None = None,
) -> Predictive:
    """Posterior draws of the cooperative share at ``quarters`` (any quarter from the study's start).

    ``concentration``: an overdispersed fit's draws (``fit.hypothesis.concentration_draws``); the
    share is then each cell's p, and questions about several events use the Beta around it.
    """
    quarters = tuple(int(q) for q in quarters)
    if not quarters:
        raise ValueError("no quarters to forecast")
    if min(quarters) < study.time.start:
        raise ValueError(f"{quarter_label(min(quarters))} is before the study's first quarter")
    eta = logit_grid(arrays, study, max(quarters), rng)
    share = expit(eta[..., [q - study.time.start for q in quarters]])
    n = share.shape[0]
    w = uniform_weights(n) if weights is None else np.asarray(weights, dtype=float)
    phi = None if concentration is None else np.asarray(concentration, dtype=float).reshape(-1)
    if phi is not None and phi.size != n:
        raise ValueError(f"{phi.size} concentration draws for {n} draws of the share")
    return Predictive(share, w / w.sum(), quarters, phi)


def mixture(preds: Sequence[Predictive], probabilities: Sequence[float]) -> Predictive:
    """Bayesian model averaging: pool the draws, each hypothesis's weighted by P(H | y)."""
    probabilities = np.asarray(probabilities, dtype=float)
    if len(preds) != len(probabilities):
        raise ValueError("one probability per predictive distribution")
    if any(p.quarters != preds[0].quarters for p in preds):
        raise ValueError("the predictive distributions cover different quarters")
    probabilities = probabilities / probabilities.sum()
    share = np.concatenate([p.share for p in preds], axis=0)
    weights = np.concatenate([pr * p.weights for p, pr in zip(preds, probabilities, strict=True)])
    given = [p.concentration is not None for p in preds]
    if any(given) and not all(given):
        raise ValueError("some predictive distributions are overdispersed and some are not")
    phi = np.concatenate([p.concentration for p in preds]) if all(given) else None
    return Predictive(share, weights, preds[0].quarters, phi)


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Quantiles over axis 0 of weighted draws: the smallest x with weighted CDF(x) >= level.

    Returns shape (len(levels), *values.shape[1:]).
    """
    values = np.asarray(values, dtype=float)
    flat = values.reshape(values.shape[0], -1)
    order = np.argsort(flat, axis=0, kind="stable")
    sorted_vals = np.take_along_axis(flat, order, axis=0)
    cum = np.cumsum(np.asarray(weights, dtype=float)[order], axis=0)
    cum /= cum[-1]
    out = np.empty((len(levels), flat.shape[1]))
    for i, level in enumerate(levels):
        idx = np.minimum((cum < level - 1e-12).sum(axis=0), flat.shape[0] - 1)
        out[i] = np.take_along_axis(sorted_vals, idx[None, :], axis=0)[0]
    return out.reshape(len(levels), *values.shape[1:])


@dataclass(frozen=True)
class ShareSummary:
    """Posterior mean and the central 50% and 90% intervals of the share, per (group, domain, quarter)."""

    mean: np.ndarray  # (G, D, Q)
    lower90: np.ndarray
    lower50: np.ndarray
    upper50: np.ndarray
    upper90: np.ndarray


def summarise(pred: Predictive) -> ShareSummary:
    q = weighted_quantiles(pred.share, pred.weights, LEVELS)
    return ShareSummary(pred.mean(), q[0], q[1], q[2], q[3])


# --- how many events a cell sees ---------------------------------------------------------------


def distinct_events(table: pd.DataFrame) -> pd.DataFrame:
    """Rows that report an event of their own (rows corroborating another row's event are dropped)."""
    if "origin_id" not in table:
        return table
    return table[table["origin_id"].fillna("") == ""]


@dataclass(frozen=True)
class EventRates:
    """Posterior of each (group, domain)'s events per quarter: Gamma(events + 1/2, quarters)."""

    events: np.ndarray  # (G, D) distinct events counted
    quarters: int  # over this many quarters

    @property
    def shape(self) -> np.ndarray:
        return self.events + RATE_PRIOR_SHAPE

    def expected(self) -> np.ndarray:
        """Expected events per quarter (posterior mean rate), (G, D)."""
        return self.shape / self.quarters

    def count_pmf(self, group: int, domain: int) -> np.ndarray:
        """P(N = n) for n = 0..n_max: the negative-binomial predictive count of one quarter."""
        a, p = self.shape[group, domain], self.quarters / (self.quarters + 1.0)
        n_max = max(int(stats.nbinom.ppf(1 - COUNT_TAIL, a, p)), 1)
        return stats.nbinom.pmf(np.arange(n_max + 1), a, p)

    def prob_none(self, group: int, domain: int, per_event_prob: np.ndarray) -> np.ndarray:
        """P(no event of a kind) when each event is of that kind with ``per_event_prob`` (per draw).

        Thinning: the events of that kind are Poisson(rate * q); averaging exp(-rate * q) over the
        Gamma(a, b) rate gives (b / (b + q)) ** a, exactly.
        """
        a, b = self.shape[group, domain], float(self.quarters)
        return (b / (b + np.asarray(per_event_prob))) ** a


def event_rates(table: pd.DataFrame, study: Study, first_quarter: int, last_quarter: int) -> EventRates:
    """Count each (group, domain)'s distinct events in ``first_quarter..last_quarter``."""
    gidx = {g.id: i for i, g in enumerate(study.groups)}
    didx = {d.id: i for i, d in enumerate(study.domains)}
    t = distinct_events(table)
    q = t["quarter"].to_numpy(dtype=np.int64)
    t = t[(q >= first_quarter) & (q <= last_quarter)]
    counts = np.zeros((len(study.groups), len(study.domains)))
    np.add.at(counts, (t["group"].map(gidx).to_numpy(int), t["domain"].map(didx).to_numpy(int)), 1)
    return EventRates(counts, max(last_quarter - first_quarter + 1, 1))


# --- question probabilities ----------------------------------------------------------------


def question_draws(question: Question, pred: Predictive, rates: EventRates, study: Study) -> np.ndarray:
    """P(the question resolves yes) under each draw of the share (and the count model).

    Overdispersed (``pred.concentration``): the quarter's events share one Beta(p phi, (1 - p) phi)
    share, so the number of cooperative events among N is beta-binomial instead of binomial.
    """
    g = [x.id for x in study.groups].index(question.group)
    d = [x.id for x in study.domains].index(question.domain)
    p = pred.cell(g, d, question.quarter)
    phi = pred.concentration
    if question.kind in ("any_conflictual", "any_cooperative"):
        kind = 1.0 - p if question.kind == "any_conflictual" else p
        if phi is None:
            return 1.0 - rates.prob_none(g, d, kind)
        return 1.0 - _prob_none_beta(rates.count_pmf(g, d), kind * phi, (1.0 - kind) * phi)
    # Share questions are judged on the quarter's events and are void without any; so this is
    # P(share beyond threshold | at least one event), summing over the count N = 1..n_max.
    pmf = rates.count_pmf(g, d)
    n = np.arange(1, len(pmf))
    t = float(question.threshold)
    if phi is None:
        dist, args = stats.binom, (n, p[:, None])
    else:
        a, b = _beta_parameters(p, phi)
        dist, args = stats.betabinom, (n, a[:, None], b[:, None])
    if question.kind == "share_above":
        per_n = dist.sf(np.floor(t * n + _EPS), *args)  # P(k > t n)
    else:
        per_n = dist.cdf(np.ceil(t * n - _EPS) - 1, *args)  # P(k < t n)
    return per_n @ pmf[1:] / pmf[1:].sum()


def _beta_parameters(p: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.clip(np.asarray(p, dtype=float), 1e-300, 1.0 - 1e-16)
    return p * phi, (1.0 - p) * phi


def _prob_none_beta(pmf: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(no event of a kind in the quarter) when N ~ ``pmf`` and the kind's share is Beta(a, b):
    sum over n of P(N = n) B(a, b + n) / B(a, b)."""
    from scipy.special import betaln

    a, b = np.maximum(a, 1e-300)[:, None], np.maximum(b, 1e-300)[:, None]
    n = np.arange(len(pmf))
    return np.exp(betaln(a, b + n) - betaln(a, b)) @ pmf


def question_probability(question: Question, pred: Predictive, rates: EventRates, study: Study) -> float:
    return float(pred.weights @ question_draws(question, pred, rates, study))


def latent_share_probability(question: Question, pred: Predictive, study: Study) -> float | None:
    """For share questions: P(the cell's expected cooperative share is beyond the threshold)."""
    if question.kind not in SHARE_KINDS:
        return None
    g = [x.id for x in study.groups].index(question.group)
    d = [x.id for x in study.domains].index(question.domain)
    p = pred.cell(g, d, question.quarter)
    beyond = p > question.threshold if question.kind == "share_above" else p < question.threshold
    return float(pred.weights @ beyond)


def void_probability(question: Question, rates: EventRates, study: Study) -> float | None:
    """For share questions: P(no event in the cell that quarter), when the question stays void."""
    if question.kind not in SHARE_KINDS:
        return None
    g = [x.id for x in study.groups].index(question.group)
    d = [x.id for x in study.domains].index(question.domain)
    return float(rates.count_pmf(g, d)[0])


@dataclass(frozen=True)
class QuestionForecast:
    question: Question
    probability: float  # averaged over hypotheses (BMA)
    by_hypothesis: dict[str, float]
    probability_void: float | None
    latent_probability: float | None
    latent_by_hypothesis: dict[str, float] | None
    expected_events: float

    def to_dict(self) -> dict:
        return {
            **self.question.to_dict(),
            "probability": self.probability,
            "by_hypothesis": self.by_hypothesis,
            "probability_void": self.probability_void,
            "latent_probability": self.latent_probability,
            "latent_by_hypothesis": self.latent_by_hypothesis,
            "expected_events": self.expected_events,
        }


def forecast_question(
    question: Question, preds: Mapping[str, Predictive], bma: Predictive, rates: EventRates, study: Study
) -> QuestionForecast:
    """A question's probability under each hypothesis and averaged over them (from ``bma``'s pooled draws)."""
    g = [x.id for x in study.groups].index(question.group)
    d = [x.id for x in study.domains].index(question.domain)
    share = question.kind in SHARE_KINDS
    return QuestionForecast(
        question=question,
        probability=question_probability(question, bma, rates, study),
        by_hypothesis={h: question_probability(question, p, rates, study) for h, p in preds.items()},
        probability_void=void_probability(question, rates, study),
        latent_probability=latent_share_probability(question, bma, study),
        latent_by_hypothesis={h: latent_share_probability(question, p, study) for h, p in preds.items()}
        if share
        else None,
        expected_events=float(rates.expected()[g, d]),
    )


# --- forecast tables ------------------------------------------------------------------------


def _interval_dict(s: ShareSummary, g: int, d: int, k: int) -> dict:
    return {
        "mean": float(s.mean[g, d, k]),
        "interval_50": [float(s.lower50[g, d, k]), float(s.upper50[g, d, k])],
        "interval_90": [float(s.lower90[g, d, k]), float(s.upper90[g, d, k])],
    }


def forecast_table(
    preds: Mapping[str, Predictive], bma: Predictive, rates: EventRates, study: Study, origin: int
) -> list[dict]:
    """One row per (group, domain, quarter): the BMA share with its intervals, and per hypothesis."""
    per_h = {h: summarise(p) for h, p in preds.items()}
    avg = summarise(bma)
    rows = []
    expected = rates.expected()
    for gi, g in enumerate(study.groups):
        for di, d in enumerate(study.domains):
            for k, q in enumerate(bma.quarters):
                rows.append(
                    {
                        "group": g.id,
                        "domain": d.id,
                        "quarter": quarter_label(q),
                        "horizon": q - origin,
                        **_interval_dict(avg, gi, di, k),
                        "expected_events": float(expected[gi, di]),
                        "by_hypothesis": {h: _interval_dict(s, gi, di, k) for h, s in per_h.items()},
                    }
                )
    return rows
