"""`forecast backtest`: rolling-origin evaluation of the forecasts, and leave-future-out elpd.

For every origin quarter t in a range, each hypothesis is fitted on what was *known* at the
end of t (observations with ``report_date`` on or before t's last day) on the one compiled
model (new data, no recompilation), and its forecasts for quarters t+1..t+h are compared with
what is now known to have happened in them:

- every event in those quarters is a forecast of one interaction being cooperative, scored
  (log score and Brier score, weighted by the event's reliability) for each hypothesis, their
  average (BMA, with the posterior probabilities at t) and two baselines an analyst would use:
  the cell's historical base rate and its last observed share;
- every (cell, quarter) with events checks the 50% and 90% predictive intervals of its number
  of cooperative events (coverage, counted as the expected coverage of a randomised PIT);
- every registered question is re-asked about each target quarter and scored the same way;
- the forecasts of the next quarter give each hypothesis's leave-future-out elpd (LFO, Bürkner,
  Gabry & Vehtari 2020): from exact refits at every origin, or (``lfo="approx"``) carried
  forward by Pareto-smoothed importance sampling with a refit whenever Pareto k exceeds 0.7.
  The LFO elpd uses the model's own reliability-weighted likelihood, like the PSIS-LOO elpd of
  the run it is reported beside.

Events that corroborate another row (``origin_id``) are not scored again. By default the
origins run one after another in this process on one compiled model (on a 2-core machine that is
as fast as fanning out: nutpie already samples the chains on both cores). Exact refits can be
fanned out, one origin per task, over ``forecast.fit.pool``'s pools: local worker processes or
a Dask cluster, each worker compiling the model once (``forecast.fit.pool.cached_model``).

``run_backtest`` reads the study's latest run through ``StoredRun`` (it must match the current
inputs), and writes ``backtest.json`` (and, given a ``plot`` function, the reliability diagram)
into it. The result is a typed ``BacktestResult``; ``forecast.reports.text.backtest`` renders it.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit, logsumexp

from forecast.data.cells import CellData, cell_data
from forecast.data.observations import load_observations
from forecast.errors import ConvergenceError, InputError, ObservationError
from forecast.fit.hypothesis import fit_hypothesis
from forecast.fit.pool import Pool, cached_model, fan_out, open_pool, register_model
from forecast.fit.sampler import Diagnostics, SamplerSettings, StudyModel
from forecast.model.build import draws_as_arrays
from forecast.model.predictive import (
    Predictive,
    distinct_events,
    event_rates,
    logit_grid,
    mixture,
    question_probability,
)
from forecast.runs.layout import BACKTEST, BACKTEST_PLOT, RESULTS_SCHEMA
from forecast.runs.store import default_root, jsonable, preflight
from forecast.runs.stored import StoredRun
from forecast.settings import Progress, derive_seed
from forecast.spec.questions import Question, load_questions, quarter_start
from forecast.spec.study import Study, load_study, quarter_label
from forecast.stats.loo import posterior_probabilities
from forecast.stats.scoring import brier, interval_coverage, log_score, reliability_table, skill

BMA = "bma"
BASELINES = ("base_rate", "last_quarter")
DEFAULT_ORIGINS = 12
PARETO_K_REFIT = 0.7
SMOOTHING = 0.5  # add-a-half smoothing of the baselines' frequencies
LEVELS = (0.5, 0.9)
UNRELIABLE = "UNRELIABLE: at least one backtest fit failed its convergence checks"
RESULT_FILE_BYTES = 16 * 1024 * 1024  # room checked for backtest.json and its plot before any fitting


# --- what was known when ---------------------------------------------------------------------


def known_at(table: pd.DataFrame, quarter: int) -> pd.DataFrame:
    """The observations reported by the last day of ``quarter`` (what a forecaster knew then)."""
    return table[table["report_date"] < pd.Timestamp(quarter_start(quarter + 1))]


def last_target_quarter(study: Study, table: pd.DataFrame) -> int:
    """The last quarter forecasts can be checked against: the latest event's, within the window."""
    return min(study.time.end, int(table["quarter"].max()))


def default_origins(study: Study, table: pd.DataFrame, n: int = DEFAULT_ORIGINS) -> list[int]:
    """The ``n`` origins ending one quarter before the last checkable quarter."""
    last = last_target_quarter(study, table) - 1
    return list(range(max(study.time.start, last - n + 1), last + 1))


# --- baselines ---------------------------------------------------------------------------------


def _weighted_counts(t: pd.DataFrame, study: Study, by_quarter: bool = False):
    gidx = {g.id: i for i, g in enumerate(study.groups)}
    didx = {d.id: i for i, d in enumerate(study.domains)}
    shape = (len(study.groups), len(study.domains)) + ((study.time.n_quarters,) if by_quarter else ())
    wc, wt = np.zeros(shape), np.zeros(shape)
    idx: tuple = (t["group"].map(gidx).to_numpy(int), t["domain"].map(didx).to_numpy(int))
    if by_quarter:
        idx = (*idx, t["quarter"].to_numpy(int) - study.time.start)
    w = t["weight"].to_numpy(float)
    np.add.at(wc, idx, w * t["cooperative"].to_numpy(bool))
    np.add.at(wt, idx, w)
    return wc, wt


def baseline_probabilities(known: pd.DataFrame, study: Study) -> dict[str, np.ndarray]:
    """P(cooperative) per (group, domain) from two baselines, from what was known:

    - ``base_rate``: the cell's reliability-weighted share of cooperative events so far (the
      group's, then everyone's, when the cell has none);
    - ``last_quarter``: the cell's share in the latest quarter in which it had events (the base
      rate when it never had any).
    Both smoothed as (cooperative + 1/2) / (all + 1), so no event is given probability 0 or 1.
    """
    t = distinct_events(known)
    wc, wt = _weighted_counts(t, study)
    gc, gt = wc.sum(axis=1, keepdims=True), wt.sum(axis=1, keepdims=True)
    ac, at = wc.sum(), wt.sum()
    smooth = lambda c, n: (c + SMOOTHING) / (n + 2 * SMOOTHING)  # noqa: E731
    base = np.where(wt > 0, smooth(wc, wt), np.where(gt > 0, smooth(gc, gt), smooth(ac, at)))
    qc, qt = _weighted_counts(t, study, by_quarter=True)
    has = qt > 0
    last_idx = np.where(has.any(axis=-1), qt.shape[-1] - 1 - np.argmax(has[..., ::-1], axis=-1), -1)
    lc = np.take_along_axis(qc, np.maximum(last_idx, 0)[..., None], axis=-1)[..., 0]
    lt = np.take_along_axis(qt, np.maximum(last_idx, 0)[..., None], axis=-1)[..., 0]
    last = np.where(last_idx >= 0, smooth(lc, lt), base)
    return {"base_rate": base, "last_quarter": last}


def _cell_counts(t: pd.DataFrame, study: Study) -> tuple[np.ndarray, np.ndarray]:
    """Distinct events and cooperative ones per (group, domain, window quarter)."""
    gidx = {g.id: i for i, g in enumerate(study.groups)}
    didx = {d.id: i for i, d in enumerate(study.domains)}
    n = np.zeros((len(study.groups), len(study.domains), study.time.n_quarters), dtype=int)
    k = np.zeros_like(n)
    idx = (
        t["group"].map(gidx).to_numpy(int),
        t["domain"].map(didx).to_numpy(int),
        t["quarter"].to_numpy(int) - study.time.start,
    )
    np.add.at(n, idx, 1)
    np.add.at(k, idx, t["cooperative"].to_numpy(int))
    return n, k


def question_baselines(question: Question, n: np.ndarray, k: np.ndarray, study: Study, origin: int) -> dict:
    """P(yes) from the question's own history up to ``origin`` (counts from what was known then):
    its smoothed frequency over the non-void past quarters, and its last non-void outcome, smoothed."""
    g = [x.id for x in study.groups].index(question.group)
    d = [x.id for x in study.domains].index(question.domain)
    past = [question.outcome(int(n[g, d, j]), int(k[g, d, j])) for j in range(origin - study.time.start + 1)]
    past = [x for x in past if x is not None]
    base = (sum(past) + SMOOTHING) / (len(past) + 2 * SMOOTHING)
    last = (past[-1] + SMOOTHING) / (1 + 2 * SMOOTHING) if past else 0.5
    return {"base_rate": float(base), "last_quarter": float(last)}


# --- one hypothesis's posterior as it moves from origin to origin --------------------------------


def cell_loglik(eta: np.ndarray, cells: CellData) -> np.ndarray:
    """The model's reliability-weighted log-likelihood of ``cells`` per draw, from (draws, G, D, Q) log-odds."""
    if cells.n_cells == 0:
        return np.zeros(eta.shape[0])
    e = eta[:, cells.group, cells.domain, cells.quarter]
    return -(cells.w_coop * np.logaddexp(0.0, -e) + cells.w_conf * np.logaddexp(0.0, e)).sum(axis=-1)


def psis_log_weights(log_ratios: np.ndarray, chains: int) -> tuple[np.ndarray, float]:
    """Pareto-smoothed normalised log weights for importance ratios exp(log_ratios), and Pareto k."""
    from arviz_stats.base import array_stats

    log_ratios = np.asarray(log_ratios, dtype=float)
    if not np.all(np.isfinite(log_ratios)):
        return np.full_like(log_ratios, -np.log(len(log_ratios))), float("inf")
    if np.ptp(log_ratios) < 1e-12:  # nothing new was learnt: the weights stay uniform
        return np.full_like(log_ratios, -np.log(len(log_ratios))), 0.0
    ratios = np.exp(log_ratios - log_ratios.max()).reshape(chains, -1)
    r_eff = float(np.asarray(array_stats.ess(ratios, method="mean", relative=True)))
    r_eff = float(np.clip(r_eff, 1e-3, 1.0)) if np.isfinite(r_eff) else 1.0
    # arviz-stats' psislw smooths weights proportional to exp(-x): pass minus the log ratios.
    try:
        lw, k = array_stats.psislw(-log_ratios, r_eff=r_eff)
    except ValueError:  # a degenerate tail: treat as unreliable, so the caller refits
        return np.full_like(log_ratios, -np.log(len(log_ratios))), float("inf")
    lw = np.asarray(lw, dtype=float)
    k = float(np.asarray(k))
    if not (np.all(np.isfinite(lw)) and np.isfinite(k)):
        return np.full_like(log_ratios, -np.log(len(log_ratios))), float("inf")
    return lw - logsumexp(lw), k


# --- the backtest --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """A forecaster's mean log score (higher is better) and Brier score (lower is better); as a
    skill, ``1 - score / baseline's`` of each (> 0 beats the baseline)."""

    log_score: float
    brier: float

    def to_dict(self) -> dict:
        return {"log_score": self.log_score, "brier": self.brier}


@dataclass(frozen=True)
class Skill:
    """A forecaster's skill against each baseline."""

    base_rate: Score
    last_quarter: Score

    def to_dict(self) -> dict:
        return {"base_rate": self.base_rate.to_dict(), "last_quarter": self.last_quarter.to_dict()}


@dataclass(frozen=True)
class Scores:
    """Every forecaster's scores on one set of events (all, one horizon, or one cell)."""

    by_forecaster: dict[str, Score]
    n_events: int
    weight: float  # total reliability weight of the events

    def __getitem__(self, forecaster: str) -> Score:
        return self.by_forecaster[forecaster]

    def to_dict(self) -> dict:
        return {f: s.to_dict() for f, s in self.by_forecaster.items()} | {
            "n_events": self.n_events,
            "weight": self.weight,
        }


@dataclass(frozen=True)
class CellScores:
    group: str
    domain: str
    scores: Scores
    skill: dict[str, Skill]  # hypothesis or BMA -> skill

    def to_dict(self) -> dict:
        return {
            "group": self.group,
            "domain": self.domain,
            **self.scores.to_dict(),
            "skill": {f: s.to_dict() for f, s in self.skill.items()},
        }


@dataclass(frozen=True)
class ScoreSummary:
    """The event scores: overall, by horizon (quarters ahead) and by (group, domain)."""

    overall: Scores | None  # None when no event fell in a forecast quarter
    skill: dict[str, Skill] | None
    by_horizon: dict[int, Scores] = field(default_factory=dict)
    by_cell: list[CellScores] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "overall": None if self.overall is None else self.overall.to_dict(),
            "skill": None if self.skill is None else {f: s.to_dict() for f, s in self.skill.items()},
            "by_horizon": {str(h): s.to_dict() for h, s in self.by_horizon.items()},
            "by_cell": [c.to_dict() for c in self.by_cell],
        }


@dataclass(frozen=True)
class Coverage:
    """How often the central 50% / 90% predictive intervals of a cell's cooperative count held it."""

    interval_50: float
    interval_90: float
    n_cells: int

    def to_dict(self) -> dict:
        return {"interval_50": self.interval_50, "interval_90": self.interval_90, "n_cells": self.n_cells}


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram (``forecast.stats.scoring.reliability_table``)."""

    bin: tuple[float, float]
    mean_forecast: float
    observed_frequency: float
    n: int
    weight: float

    @classmethod
    def from_row(cls, row: Mapping) -> ReliabilityBin:
        return cls(
            (row["bin"][0], row["bin"][1]), row["mean_forecast"], row["observed_frequency"], row["n"], row["weight"]
        )

    def to_dict(self) -> dict:
        return {
            "bin": list(self.bin),
            "mean_forecast": self.mean_forecast,
            "observed_frequency": self.observed_frequency,
            "n": self.n,
            "weight": self.weight,
        }


@dataclass(frozen=True)
class QuestionScores:
    """A registered question re-asked about every target quarter of every origin."""

    id: str
    text: str
    kind: str
    n_resolved: int
    base_rate_observed: float | None = None  # the rest only when a re-asked question resolved
    scores: dict[str, Score] | None = None
    skill: dict[str, Skill] | None = None

    def to_dict(self) -> dict:
        d = {"id": self.id, "text": self.text, "kind": self.kind, "n_resolved": self.n_resolved}
        if self.scores is not None:
            d.update(
                base_rate_observed=self.base_rate_observed,
                scores={f: s.to_dict() for f, s in self.scores.items()},
                skill={f: s.to_dict() for f, s in (self.skill or {}).items()},
            )
        return d


@dataclass(frozen=True)
class LfoHypothesis:
    """One hypothesis's (or the model average's) leave-future-out elpd, beside the run's PSIS-LOO."""

    id: str
    elpd_lfo: float
    se: float
    n_blocks: int
    pareto_k_max: float | None
    elpd_diff: float  # from the best hypothesis, paired over the same quarters
    elpd_diff_se: float
    elpd_loo: float | None = None  # from the run, when the backtest analysed one
    elpd_loo_se: float | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "elpd_lfo": self.elpd_lfo,
            "se": self.se,
            "n_blocks": self.n_blocks,
            "pareto_k_max": self.pareto_k_max,
            "elpd_diff": self.elpd_diff,
            "elpd_diff_se": self.elpd_diff_se,
            "elpd_loo": self.elpd_loo,
            "elpd_loo_se": self.elpd_loo_se,
        }


@dataclass(frozen=True)
class Lfo:
    method: str  # "exact" or "approx"
    pareto_k_refit: float | None
    hypotheses: list[LfoHypothesis]
    note: str | None = None

    def to_dict(self) -> dict:
        d = {
            "method": self.method,
            "pareto_k_refit": self.pareto_k_refit,
            "hypotheses": [h.to_dict() for h in self.hypotheses],
        }
        if self.note is not None:
            d["note"] = self.note
        return d


@dataclass(frozen=True)
class OriginResult:
    """What was known at one origin and what the fits there gave."""

    origin: int
    n_known: int
    posterior_probabilities: dict[str, float]
    fits: dict[str, OriginFit]

    def to_dict(self) -> dict:
        return {
            "origin": quarter_label(self.origin),
            "n_known": self.n_known,
            "posterior_probabilities": self.posterior_probabilities,
            "fits": {h: f.to_dict() for h, f in self.fits.items()},
        }


@dataclass(frozen=True)
class BacktestSettings:
    sampler: SamplerSettings
    lfo: str
    pareto_k_refit: float
    pool: str | None = None  # where the refits ran

    def to_dict(self) -> dict:
        d = {**self.sampler.to_dict(), "lfo": self.lfo, "pareto_k_refit": self.pareto_k_refit}
        if self.pool is not None:
            d["pool"] = self.pool
        return d


@dataclass(frozen=True)
class BacktestResult:
    study: str
    origins: list[int]
    horizon: int
    lfo_method: str
    converged: bool
    hypotheses: list[str]
    scores: ScoreSummary
    coverage: dict[str, Coverage]  # hypothesis or BMA -> coverage
    calibration: dict[str, list[ReliabilityBin]]  # BMA and the baselines -> reliability bins
    questions: list[QuestionScores]
    lfo: Lfo
    by_origin: list[OriginResult]
    settings: BacktestSettings
    data_cutoff: str
    run_dir: str | None = None
    written: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def forecasters(self) -> list[str]:
        return [*self.hypotheses, BMA, *BASELINES]

    def calibration_values(self) -> dict[str, list[dict]]:
        """The reliability bins as plain values (what ``backtest.json`` stores, what plots take)."""
        return {f: [b.to_dict() for b in bins] for f, bins in self.calibration.items()}

    def to_dict(self) -> dict:
        d = {
            "schema_version": RESULTS_SCHEMA,
            "study": self.study,
            "run_dir": self.run_dir,
            "data_cutoff": self.data_cutoff,
            "origins": [quarter_label(o) for o in self.origins],
            "horizon": self.horizon,
            "converged": self.converged,
            "hypotheses": self.hypotheses,
            "forecasters": self.forecasters,
            "scores": self.scores.to_dict(),
            "coverage": {f: c.to_dict() for f, c in self.coverage.items()},
            "calibration": self.calibration_values(),
            "questions": [q.to_dict() for q in self.questions],
            "lfo": self.lfo.to_dict(),
            "by_origin": [o.to_dict() for o in self.by_origin],
            "settings": self.settings.to_dict(),
            "written": self.written,
            "timings": self.timings,
        }
        if not self.converged:
            d["warning"] = UNRELIABLE
        return jsonable(d)


@dataclass
class _Posterior:
    """A hypothesis's last refit, kept to carry forward by importance sampling (``lfo="approx"``)."""

    eta: np.ndarray  # (draws, G, D, window quarters)
    chains: int
    cells: CellData
    log_ml: float
    log_ml_se: float


@dataclass(frozen=True)
class OriginFit:
    origin: int
    hypothesis: str
    refit: bool
    pareto_k: float | None
    log_ml: float
    log_ml_se: float
    diagnostics: Diagnostics | None

    def to_dict(self) -> dict:
        return {
            "refit": self.refit,
            "pareto_k": self.pareto_k,
            "log_marginal_likelihood": self.log_ml,
            "converged": None if self.diagnostics is None else self.diagnostics.converged,
            "problems": [] if self.diagnostics is None else list(self.diagnostics.problems),
        }


@dataclass
class _Forecast:
    """One hypothesis at one origin: what the scoring needs, and nothing more (it travels between processes)."""

    fit: OriginFit
    share: np.ndarray | None  # (draws, G, D, targets): the cooperative share at the target quarters
    weights: np.ndarray  # (draws,)
    loglik_next: np.ndarray | None  # (draws,): log-likelihood of the next quarter's events
    k_next: float | None  # Pareto k of the weights (approximate LFO), None for a fit at this origin


def _origin_seed(seed: int, origin: int) -> int:
    return derive_seed(seed, origin)


def _forecast_from(post: _Posterior, study: Study, targets, next_block, fit: OriginFit, log_w, k) -> _Forecast:
    share = expit(post.eta[..., [q - study.time.start for q in targets]]) if targets else None
    ll = cell_loglik(post.eta, next_block) if next_block is not None and next_block.n_cells else None
    return _Forecast(fit, share, np.exp(log_w), ll, k)


def _refit(model: StudyModel, h, origin: int, cells_t: CellData, settings: SamplerSettings, say) -> tuple:
    study = model.study
    seeded = replace(settings, seed=_origin_seed(settings.seed, origin))
    judged = fit_hypothesis(model, h, seeded, cells=cells_t, with_loo=False, progress=say)
    fit, bridge = judged.fit, judged.bridge
    eta = logit_grid(draws_as_arrays(fit.trace.posterior, study), study, study.time.end, np.random.default_rng(0))
    post = _Posterior(eta, fit.settings.chains, cells_t, bridge.log_ml, bridge.se)
    return post, OriginFit(origin, h.id, True, None, bridge.log_ml, bridge.se, fit.diagnostics)


def fit_origin(
    model: StudyModel, origin: int, cells_t: CellData, targets: list[int], next_block, settings: SamplerSettings
) -> dict[str, _Forecast]:
    """Exact refits of every hypothesis on what was known at ``origin`` (one backtest task)."""
    out = {}
    for h in model.study.hypotheses:
        post, fit = _refit(model, h, origin, cells_t, settings, None)
        out[h.id] = _forecast_from(
            post, model.study, targets, next_block, fit, np.full(post.eta.shape[0], -np.log(post.eta.shape[0])), None
        )
    return out


def fit_origin_task(
    study: Study, cells: CellData, origin: int, cells_t: CellData, targets, next_block, settings
) -> dict[str, _Forecast]:
    """Worker entry point: ``fit_origin`` on this process's compiled model (built the first time)."""
    return fit_origin(cached_model(study, cells), origin, cells_t, targets, next_block, settings)


@dataclass(frozen=True)
class _Origin:
    origin: int
    known: pd.DataFrame
    cells: CellData
    targets: list[int]
    next_block: CellData | None


def _check_converged(forecasts: dict[str, _Forecast], origin: int, allow_unconverged: bool) -> bool:
    ok = True
    for h, f in forecasts.items():
        d = f.fit.diagnostics
        if d is not None and not d.converged:
            ok = False
            if not allow_unconverged:
                raise ConvergenceError(
                    f"origin {quarter_label(origin)}, hypothesis '{h}': the fit failed its convergence checks after "
                    f"one retry ({'; '.join(d.problems)}); nothing was written. "
                    "Try more --tune/--draws, later origins, or --allow-unconverged."
                )
    return ok


def backtest(
    study: Study,
    table: pd.DataFrame,
    model: StudyModel,
    origins: Sequence[int],
    horizon: int,
    settings: SamplerSettings,
    *,
    questions: Sequence[Question] = (),
    lfo: Literal["exact", "approx"] = "exact",
    allow_unconverged: bool = False,
    progress: Progress | None = None,
    pool: Pool | None = None,
) -> BacktestResult:
    """Fit at every origin, forecast the next ``horizon`` quarters, and score; see the module docstring.

    ``pool``: a ``forecast.fit.pool.Pool`` to fan the exact refits out over (one task per
    origin); by default, and always for ``lfo="approx"`` (each origin starts from the last), the
    origins run one after another in this process on ``model``.
    """
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    last_target = last_target_quarter(study, table)
    plan = []
    for origin in origins:
        known = known_at(table, origin)
        if known.empty:
            raise InputError(f"nothing was known by the end of {quarter_label(origin)}; start the origins later")
        nxt = cell_data(table[table["quarter"] == origin + 1], study) if origin + 1 <= last_target else None
        targets = [q for q in range(origin + 1, origin + horizon + 1) if q <= last_target]
        plan.append(_Origin(origin, known, cell_data(known, study), targets, nxt))

    converged = True
    results: dict[int, dict[str, _Forecast]] = {}
    if lfo == "exact" and pool is not None and pool.kind != "inline" and len(plan) > 1:
        say(f"fitting {len(plan)} origins on {pool.description}")
        local = replace(settings, cores=pool.cores_per_fit)
        done = 0

        def collect(index: int, forecasts: dict[str, _Forecast]) -> None:
            nonlocal converged, done
            origin = plan[index].origin
            converged &= _check_converged(forecasts, origin, allow_unconverged)
            done += 1
            say(f"[{done}/{len(plan)}] origin {quarter_label(origin)} fitted")

        tasks = [(study, model.cells, o.origin, o.cells, o.targets, o.next_block, local) for o in plan]
        fitted = fan_out(pool, fit_origin_task, tasks, collect)
        results = {o.origin: out for o, out in zip(plan, fitted, strict=True)}
    else:
        state: dict[str, _Posterior] = {}
        for i, o in enumerate(plan, start=1):
            say(f"[{i}/{len(plan)}] origin {quarter_label(o.origin)}: {len(o.known)} observations known")
            out: dict[str, _Forecast] = {}
            for h in study.hypotheses:
                post, k, log_w = state.get(h.id), None, None
                fit = None
                if lfo == "approx" and post is not None:
                    # Carry the last refit forward: the importance ratios are the likelihood of
                    # what became known since; refit when Pareto k says they are unreliable.
                    added = cell_loglik(post.eta, o.cells) - cell_loglik(post.eta, post.cells)
                    log_w, k = psis_log_weights(added, post.chains)
                    if k <= PARETO_K_REFIT:
                        log_ml = post.log_ml + float(logsumexp(added) - np.log(len(added)))
                        fit = OriginFit(o.origin, h.id, False, k, log_ml, post.log_ml_se, None)
                if fit is None:
                    post, fit = _refit(model, h, o.origin, o.cells, settings, say)
                    fit = replace(fit, pareto_k=k)  # the k that called for the refit, if any
                    state[h.id] = post
                    log_w, k = np.full(post.eta.shape[0], -np.log(post.eta.shape[0])), None
                out[h.id] = _forecast_from(post, study, o.targets, o.next_block, fit, log_w, k)
            converged &= _check_converged(out, o.origin, allow_unconverged)
            results[o.origin] = out
    return _score_backtest(study, table, plan, results, horizon, settings, questions, lfo, converged, t0)


def _score_backtest(study, table, plan, results, horizon, settings, questions, lfo, converged, t0) -> BacktestResult:
    hyp_ids = [h.id for h in study.hypotheses]
    prior = np.array([h.prior_probability for h in study.hypotheses])
    truth = distinct_events(table)
    truth_n, truth_k = _cell_counts(truth, study)
    events: list[dict] = []
    coverage_rows: list[dict] = []
    question_rows: list[dict] = []
    lfo_rows: list[dict] = []
    by_origin: list[OriginResult] = []
    for o in plan:
        fc = results[o.origin]
        log_ml = np.array([fc[h].fit.log_ml for h in hyp_ids])
        se = np.array([fc[h].fit.log_ml_se for h in hyp_ids])
        probs, _ = posterior_probabilities(log_ml, se, prior)
        by_origin.append(
            OriginResult(
                origin=o.origin,
                n_known=int(len(o.known)),
                posterior_probabilities=dict(zip(hyp_ids, map(float, probs), strict=True)),
                fits={h: fc[h].fit for h in hyp_ids},
            )
        )
        # Leave-future-out: the (weighted) predictive density of the next quarter's events.
        if fc[hyp_ids[0]].loglik_next is not None:
            block = []
            for h in hyp_ids:
                f = fc[h]
                elpd = float(logsumexp(np.log(f.weights) + f.loglik_next))
                block.append(elpd)
                lfo_rows.append({"origin": o.origin, "hypothesis": h, "elpd": elpd, "k": f.k_next})
            lfo_rows.append(
                {"origin": o.origin, "hypothesis": BMA, "elpd": float(logsumexp(block, b=probs)), "k": None}
            )
        if not o.targets:
            continue
        preds = {h: Predictive(fc[h].share, fc[h].weights, tuple(o.targets)) for h in hyp_ids}
        preds[BMA] = mixture([preds[h] for h in hyp_ids], probs)
        baselines = baseline_probabilities(o.known, study)
        _score_events(study, truth, o.targets, o.origin, preds, baselines, events)
        _check_intervals(study, truth_n, truth_k, o.targets, o.origin, preds, coverage_rows)
        if questions:
            rates = event_rates(o.known, study, study.time.start, o.origin)
            kn_n, kn_k = _cell_counts(distinct_events(o.known), study)
            for q in questions:
                g = [x.id for x in study.groups].index(q.group)
                d = [x.id for x in study.domains].index(q.domain)
                for target in o.targets:
                    asked = q.at_quarter(target)
                    j = target - study.time.start
                    outcome = asked.outcome(int(truth_n[g, d, j]), int(truth_k[g, d, j]))
                    if outcome is None:
                        continue
                    row = {"question": q.id, "origin": o.origin, "horizon": target - o.origin, "y": outcome}
                    for f, p in preds.items():
                        row[f] = question_probability(asked, p, rates, study)
                    row.update(question_baselines(asked, kn_n, kn_k, study, o.origin))
                    question_rows.append(row)
    forecasters = [*hyp_ids, BMA, *BASELINES]
    n_fits = sum(f.fit.refit for fc in results.values() for f in fc.values())
    return BacktestResult(
        study=study.name,
        origins=[o.origin for o in plan],
        horizon=horizon,
        lfo_method=lfo,
        converged=converged,
        hypotheses=hyp_ids,
        scores=_summarise_scores(pd.DataFrame(events), forecasters, hyp_ids),
        coverage=_summarise_coverage(pd.DataFrame(coverage_rows), [*hyp_ids, BMA]),
        calibration=_calibration(pd.DataFrame(events)),
        questions=_summarise_questions(pd.DataFrame(question_rows), questions, forecasters, hyp_ids),
        lfo=_summarise_lfo(pd.DataFrame(lfo_rows), hyp_ids, lfo),
        by_origin=by_origin,
        settings=BacktestSettings(settings, lfo, PARETO_K_REFIT),
        data_cutoff=str(table["report_date"].max().date()),
        timings={"total_s": time.perf_counter() - t0, "fits": int(n_fits)},
    )


def _score_events(study, truth, targets, origin, preds, baselines, out: list[dict]) -> None:
    gidx = {g.id: i for i, g in enumerate(study.groups)}
    didx = {d.id: i for i, d in enumerate(study.domains)}
    ev = truth[truth["quarter"].isin(targets)]
    if ev.empty:
        return
    g = ev["group"].map(gidx).to_numpy(int)
    d = ev["domain"].map(didx).to_numpy(int)
    q = ev["quarter"].to_numpy(int)
    pos = np.searchsorted(np.array(targets), q)
    cols = {
        "origin": origin,
        "horizon": q - origin,
        "group": ev["group"].to_numpy(),
        "domain": ev["domain"].to_numpy(),
        "y": ev["cooperative"].to_numpy(bool),
        "w": ev["weight"].to_numpy(float),
    }
    for f, p in preds.items():
        cols[f] = p.mean()[g, d, pos]
    for f, b in baselines.items():
        cols[f] = b[g, d]
    out.extend(pd.DataFrame(cols).to_dict("records"))


def _check_intervals(study, truth_n, truth_k, targets, origin, preds, out: list[dict]) -> None:
    """Coverage of the central 50%/90% predictive intervals of each (cell, quarter)'s cooperative count."""
    for k_pos, target in enumerate(targets):
        j = target - study.time.start
        gs, ds = np.nonzero(truth_n[..., j])
        for g, d in zip(gs, ds, strict=True):
            n, k = int(truth_n[g, d, j]), int(truth_k[g, d, j])
            row = {"origin": origin, "horizon": target - origin, "n": n}
            for f, p in preds.items():
                share = p.share[:, g, d, k_pos]
                below = float(p.weights @ stats.binom.cdf(k - 1, n, share)) if k > 0 else 0.0
                at = float(p.weights @ stats.binom.cdf(k, n, share))
                for level in LEVELS:
                    row[f"{f}@{level}"] = float(interval_coverage(below, at, level))
            out.append(row)


def _scores_of(frame: pd.DataFrame, forecasters: Sequence[str]) -> Scores:
    y, w = frame["y"].to_numpy(bool), frame["w"].to_numpy(float)
    return Scores(
        {
            f: Score(log_score(frame[f].to_numpy(float), y, w), brier(frame[f].to_numpy(float), y, w))
            for f in forecasters
        },
        n_events=int(len(frame)),
        weight=float(w.sum()),
    )


def _skills(scores: Mapping[str, Score] | Scores, models: Sequence[str]) -> dict[str, Skill]:
    def against(f: str, ref: str) -> Score:
        return Score(skill(scores[f].log_score, scores[ref].log_score), skill(scores[f].brier, scores[ref].brier))

    return {f: Skill(*(against(f, ref) for ref in BASELINES)) for f in models}


def _summarise_scores(events: pd.DataFrame, forecasters: list[str], hyp_ids: list[str]) -> ScoreSummary:
    if events.empty:
        return ScoreSummary(overall=None, skill=None)
    models = [*hyp_ids, BMA]
    overall = _scores_of(events, forecasters)
    by_horizon = {int(h): _scores_of(f, forecasters) for h, f in events.groupby("horizon")}
    by_cell = []
    for (g, d), f in events.groupby(["group", "domain"], sort=False):
        s = _scores_of(f, forecasters)
        by_cell.append(CellScores(g, d, s, _skills(s, models)))
    return ScoreSummary(overall=overall, skill=_skills(overall, models), by_horizon=by_horizon, by_cell=by_cell)


def _summarise_coverage(rows: pd.DataFrame, forecasters: list[str]) -> dict[str, Coverage]:
    if rows.empty:
        return {}
    return {
        f: Coverage(float(rows[f"{f}@0.5"].mean()), float(rows[f"{f}@0.9"].mean()), int(len(rows))) for f in forecasters
    }


def _calibration(events: pd.DataFrame) -> dict[str, list[ReliabilityBin]]:
    if events.empty:
        return {}
    y, w = events["y"].to_numpy(bool), events["w"].to_numpy(float)
    return {
        f: [ReliabilityBin.from_row(r) for r in reliability_table(events[f].to_numpy(float), y, w)]
        for f in (BMA, *BASELINES)
    }


def _summarise_questions(rows: pd.DataFrame, questions, forecasters, hyp_ids) -> list[QuestionScores]:
    out = []
    for q in questions:
        f = rows[rows["question"] == q.id] if not rows.empty else rows
        if not len(f):
            out.append(QuestionScores(q.id, q.text, q.kind, 0))
            continue
        y = f["y"].to_numpy(bool)
        scores = {
            name: Score(log_score(f[name].to_numpy(float), y), brier(f[name].to_numpy(float), y))
            for name in forecasters
        }
        out.append(
            QuestionScores(
                q.id,
                q.text,
                q.kind,
                int(len(f)),
                base_rate_observed=float(y.mean()),
                scores=scores,
                skill=_skills(scores, [*hyp_ids, BMA]),
            )
        )
    return out


def _summarise_lfo(rows: pd.DataFrame, hyp_ids: list[str], method: str) -> Lfo:
    entries: list[LfoHypothesis] = []
    if not rows.empty:
        per_block = rows.pivot(index="origin", columns="hypothesis", values="elpd")
        best = per_block[hyp_ids].sum().idxmax()
        for h in [*hyp_ids, BMA]:
            f = rows[rows["hypothesis"] == h]
            e = f["elpd"].to_numpy(float)
            ks = f["k"].dropna().to_numpy(float) if h != BMA else np.array([])
            entries.append(
                LfoHypothesis(
                    id=h,
                    elpd_lfo=float(e.sum()),
                    se=float(np.sqrt(len(e) * np.var(e))) if len(e) > 1 else 0.0,
                    n_blocks=int(len(e)),
                    pareto_k_max=float(ks.max()) if len(ks) else None,
                    # Difference from the best hypothesis, paired over the same quarters.
                    elpd_diff=float((per_block[h] - per_block[best]).sum()),
                    elpd_diff_se=float(np.sqrt(len(per_block) * np.var(per_block[h] - per_block[best]))),
                )
            )
    return Lfo(method, PARETO_K_REFIT if method == "approx" else None, entries)


def _parse_origins(text: str | None, study: Study, table: pd.DataFrame, n: int) -> list[int]:
    from forecast.spec.study import quarter_index

    if text is None:
        origins = default_origins(study, table, n)
    else:
        parts = text.split(":")
        try:
            first, last = (quarter_index(parts[0].strip()), quarter_index(parts[-1].strip()))
        except ValueError:
            raise InputError(f"--origins: '{text}' is not a quarter or a range like '2022Q4:2025Q3'") from None
        if len(parts) > 2 or last < first:
            raise InputError(f"--origins: '{text}' is not a range like '2022Q4:2025Q3' (first:last)")
        origins = list(range(first, last + 1))
    last_target = last_target_quarter(study, table)
    if not origins or origins[0] < study.time.start or origins[-1] >= last_target:
        raise InputError(
            f"--origins must lie in {quarter_label(study.time.start)}..{quarter_label(last_target - 1)}, "
            f"the quarters that have a later quarter with data to check forecasts against"
        )
    return origins


def run_backtest(
    study_path: str | Path,
    settings: SamplerSettings | None = None,
    *,
    origins: str | None = None,
    n_origins: int = DEFAULT_ORIGINS,
    horizon: int = 4,
    lfo: Literal["exact", "approx"] = "exact",
    runs_root: Path | None = None,
    allow_unconverged: bool = False,
    write: bool = True,
    today: dt.date | None = None,
    progress: Progress | None = None,
    scheduler: str | None = None,
    workers: int = 0,
    plot: Callable[[dict[str, list[dict]]], bytes] | None = None,
) -> BacktestResult:
    """Backtest a study and write backtest.json into its latest run (which must match the inputs).

    ``plot`` draws the reliability diagram from the stored calibration values (the command line
    passes ``forecast.reports.plots.backtest.reliability``); its PNG is written into the run too.
    ``workers`` local processes (or the Dask cluster at ``scheduler``) share the exact refits,
    one origin per task; by default they run in this process, which on a 2-core machine is as
    fast (nutpie already samples the chains on both cores) and compiles the model only once.
    """
    settings = settings or SamplerSettings()
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    if horizon < 1:
        raise InputError(f"--horizon must be at least 1, got {horizon}")
    if lfo not in ("exact", "approx"):
        raise InputError(f"--lfo must be 'exact' or 'approx', got '{lfo}'")
    study = load_study(study_path)
    questions = load_questions(study, today=today)
    obs = load_observations(study, today=today)
    if obs.n == 0:
        raise ObservationError(f"{obs.path}: no observations yet; nothing to backtest")
    origin_list = _parse_origins(origins, study, obs.table, n_origins)
    run = None
    if write:
        run = StoredRun.find(study=study, runs_root=runs_root or study.runs_path or default_root())
        run.check_inputs(study, obs.sha256)
        preflight(run.path.parent, run.id, need_bytes=RESULT_FILE_BYTES)  # before minutes of refits
    say(
        f"{study.name}: backtest at {len(origin_list)} origins {quarter_label(origin_list[0])}.."
        f"{quarter_label(origin_list[-1])}, horizon {horizon}, {len(study.hypotheses)} hypotheses "
        "(compiling the model once for every origin)"
    )
    model = StudyModel(study, cell_data(obs.table, study))
    run_it = functools.partial(
        backtest,
        study,
        obs.table,
        model,
        origin_list,
        horizon,
        settings,
        questions=questions,
        lfo=lfo,
        allow_unconverged=allow_unconverged,
        progress=say,
    )
    if lfo == "exact" and (scheduler or workers):
        register_model(model)  # an in-process pool reuses this compile
        with open_pool(scheduler, workers, len(origin_list), settings.cores) as pool:
            result = run_it(pool=pool)
        where = pool.description
    else:
        result = run_it()
        where = "in this process, one origin after another"
    loo = {}
    if run is not None:
        loo = {h["id"]: (h.get("elpd_loo"), h.get("elpd_loo_se")) for h in run.summary["hypotheses"]}
    entries = []
    for e in result.lfo.hypotheses:  # beside the run's PSIS-LOO elpd (None for the model average)
        elpd_loo, elpd_loo_se = loo.get(e.id, (None, None))
        entries.append(replace(e, elpd_loo=elpd_loo, elpd_loo_se=elpd_loo_se))
    n_blocks = entries[0].n_blocks if entries else 0
    note = (
        f"elpd_lfo sums, over {n_blocks} quarters, the log predictive density of each next quarter's events given "
        "what was known before it; elpd_loo (from the run) leaves out one event at a time from all the data. They "
        "answer different questions on different events: compare hypotheses within a column, not across."
    )
    result = replace(
        result,
        lfo=replace(result.lfo, hypotheses=entries, note=note),
        settings=replace(result.settings, pool=where),
        timings={**result.timings, "compile_s": model.compile_seconds, "total_s": time.perf_counter() - t0},
    )
    if run is not None:
        written = [str(run.path / BACKTEST)]
        if result.calibration and plot is not None:
            png = plot(result.calibration_values())
            written.append(str(run.write_with(BACKTEST_PLOT, lambda p: p.write_bytes(png))))
        result = replace(result, run_dir=str(run.path), written=written)
        run.write_json(BACKTEST, result.to_dict())
    return result
