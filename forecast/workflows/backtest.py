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
a Dask cluster, each worker compiling the model once.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable, Sequence
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
from forecast.fit.hypothesis import checked, marginal_likelihood
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
from forecast.settings import derive_seed
from forecast.spec.questions import Question, load_questions, quarter_start
from forecast.spec.study import Study, load_study, quarter_label
from forecast.stats.loo import posterior_probabilities
from forecast.stats.scoring import brier, interval_coverage, log_score, reliability_table, skill
from forecast.workflows.predict import RESULTS_SCHEMA, fitted_run, json_safe, write_run_file, write_run_json

Progress = Callable[[str], None]
BACKTEST = "backtest.json"
RELIABILITY_PLOT = "backtest_reliability.png"
BMA = "bma"
BASELINES = ("base_rate", "last_quarter")
DEFAULT_ORIGINS = 12
PARETO_K_REFIT = 0.7
SMOOTHING = 0.5  # add-a-half smoothing of the baselines' frequencies
LEVELS = (0.5, 0.9)
UNRELIABLE = "UNRELIABLE: at least one backtest fit failed its convergence checks"


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


@dataclass
class BacktestResult:
    study: str
    origins: list[int]
    horizon: int
    lfo_method: str
    converged: bool
    hypotheses: list[str]
    scores: dict
    coverage: dict
    calibration: dict
    questions: list[dict]
    lfo: dict
    by_origin: list[dict]
    settings: dict
    data_cutoff: str
    run_dir: str | None = None
    written: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)

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
            "forecasters": [*self.hypotheses, BMA, *BASELINES],
            "scores": self.scores,
            "coverage": self.coverage,
            "calibration": self.calibration,
            "questions": self.questions,
            "lfo": self.lfo,
            "by_origin": self.by_origin,
            "settings": self.settings,
            "written": self.written,
            "timings": self.timings,
        }
        if not self.converged:
            d["warning"] = UNRELIABLE
        return json_safe(d)


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
    fit = model.fit(h, replace(settings, seed=_origin_seed(settings.seed, origin)), say, cells=cells_t)
    bridge = marginal_likelihood(model, h, fit, _origin_seed(settings.seed, origin), cells_t)
    fit = checked(fit, bridge)
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


# Compiled models of worker processes (and of this process), keyed like forecast.fit.pool's.
_MODELS: dict[str, StudyModel] = {}


def fit_origin_task(
    study: Study, cells: CellData, origin: int, cells_t: CellData, targets, next_block, settings
) -> dict[str, _Forecast]:
    """Worker entry point: ``fit_origin`` on this process's compiled model (built the first time)."""
    from forecast.fit.pool import model_key

    key = model_key(study, cells)
    model = _MODELS.get(key) or _MODELS.setdefault(key, StudyModel(study, cells))
    return fit_origin(model, origin, cells_t, targets, next_block, settings)


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
    pool=None,
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
        from concurrent.futures import as_completed

        local = replace(settings, cores=pool.cores_per_fit)

        def submit(o: _Origin):
            return pool.executor.submit(
                fit_origin_task, study, model.cells, o.origin, o.cells, o.targets, o.next_block, local
            )

        pending = list(plan)
        if pool.warm_first:  # one origin alone first, so the others start with warm compile caches
            first = pending.pop(0)
            results[first.origin] = submit(first).result()
            converged &= _check_converged(results[first.origin], first.origin, allow_unconverged)
        futures = {submit(o): o.origin for o in pending}
        try:
            for i, fut in enumerate(as_completed(futures), start=len(results) + 1):
                origin = futures[fut]
                results[origin] = fut.result()
                converged &= _check_converged(results[origin], origin, allow_unconverged)
                say(f"[{i}/{len(plan)}] origin {quarter_label(origin)} fitted")
        except BaseException:
            for f in futures:
                f.cancel()
            raise
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
    by_origin: list[dict] = []
    for o in plan:
        fc = results[o.origin]
        log_ml = np.array([fc[h].fit.log_ml for h in hyp_ids])
        se = np.array([fc[h].fit.log_ml_se for h in hyp_ids])
        probs, _ = posterior_probabilities(log_ml, se, prior)
        by_origin.append(
            {
                "origin": quarter_label(o.origin),
                "n_known": int(len(o.known)),
                "posterior_probabilities": dict(zip(hyp_ids, map(float, probs), strict=True)),
                "fits": {h: fc[h].fit.to_dict() for h in hyp_ids},
            }
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
        settings={**settings.to_dict(), "lfo": lfo, "pareto_k_refit": PARETO_K_REFIT},
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


def _scores_of(frame: pd.DataFrame, forecasters: Sequence[str]) -> dict:
    y, w = frame["y"].to_numpy(bool), frame["w"].to_numpy(float)
    return {
        f: {
            "log_score": log_score(frame[f].to_numpy(float), y, w),
            "brier": brier(frame[f].to_numpy(float), y, w),
        }
        for f in forecasters
    } | {"n_events": int(len(frame)), "weight": float(w.sum())}


def _skills(scores: dict, models: Sequence[str]) -> dict:
    return {
        f: {
            ref: {
                "log_score": skill(scores[f]["log_score"], scores[ref]["log_score"]),
                "brier": skill(scores[f]["brier"], scores[ref]["brier"]),
            }
            for ref in BASELINES
        }
        for f in models
    }


def _summarise_scores(events: pd.DataFrame, forecasters: list[str], hyp_ids: list[str]) -> dict:
    if events.empty:
        return {"overall": None, "skill": None, "by_horizon": {}, "by_cell": []}
    models = [*hyp_ids, BMA]
    overall = _scores_of(events, forecasters)
    by_horizon = {str(h): _scores_of(f, forecasters) for h, f in events.groupby("horizon")}
    by_cell = []
    for (g, d), f in events.groupby(["group", "domain"], sort=False):
        s = _scores_of(f, forecasters)
        by_cell.append({"group": g, "domain": d, **s, "skill": _skills(s, models)})
    return {
        "overall": overall,
        "skill": _skills(overall, models),
        "by_horizon": by_horizon,
        "by_cell": by_cell,
    }


def _summarise_coverage(rows: pd.DataFrame, forecasters: list[str]) -> dict:
    if rows.empty:
        return {}
    return {
        f: {
            "interval_50": float(rows[f"{f}@0.5"].mean()),
            "interval_90": float(rows[f"{f}@0.9"].mean()),
            "n_cells": int(len(rows)),
        }
        for f in forecasters
    }


def _calibration(events: pd.DataFrame) -> dict:
    if events.empty:
        return {}
    y, w = events["y"].to_numpy(bool), events["w"].to_numpy(float)
    return {f: reliability_table(events[f].to_numpy(float), y, w) for f in (BMA, *BASELINES)}


def _summarise_questions(rows: pd.DataFrame, questions, forecasters, hyp_ids) -> list[dict]:
    out = []
    for q in questions:
        f = rows[rows["question"] == q.id] if not rows.empty else rows
        entry = {"id": q.id, "text": q.text, "kind": q.kind, "n_resolved": int(len(f))}
        if len(f):
            y = f["y"].to_numpy(bool)
            scores = {
                name: {"log_score": log_score(f[name].to_numpy(float), y), "brier": brier(f[name].to_numpy(float), y)}
                for name in forecasters
            }
            entry.update(base_rate_observed=float(y.mean()), scores=scores, skill=_skills(scores, [*hyp_ids, BMA]))
        out.append(entry)
    return out


def _summarise_lfo(rows: pd.DataFrame, hyp_ids: list[str], method: str) -> dict:
    out = {"method": method, "pareto_k_refit": PARETO_K_REFIT if method == "approx" else None, "hypotheses": []}
    if rows.empty:
        return out
    per_block = rows.pivot(index="origin", columns="hypothesis", values="elpd")
    best = per_block[hyp_ids].sum().idxmax()
    for h in [*hyp_ids, BMA]:
        f = rows[rows["hypothesis"] == h]
        e = f["elpd"].to_numpy(float)
        ks = f["k"].dropna().to_numpy(float) if h != BMA else np.array([])
        out["hypotheses"].append(
            {
                "id": h,
                "elpd_lfo": float(e.sum()),
                "se": float(np.sqrt(len(e) * np.var(e))) if len(e) > 1 else 0.0,
                "n_blocks": int(len(e)),
                "pareto_k_max": float(ks.max()) if len(ks) else None,
                # Difference from the best hypothesis, paired over the same quarters.
                "elpd_diff": float((per_block[h] - per_block[best]).sum()),
                "elpd_diff_se": float(np.sqrt(len(per_block) * np.var(per_block[h] - per_block[best]))),
            }
        )
    return out


def plot_reliability(calibration: dict, path: Path) -> None:
    """Reliability diagram: observed frequency against mean forecast, per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="calibrated")
    for name, style in ((BMA, "o-"), ("base_rate", "s:"), ("last_quarter", "^:")):
        rows = calibration.get(name) or []
        if rows:
            x = [r["mean_forecast"] for r in rows]
            y = [r["observed_frequency"] for r in rows]
            ax.plot(x, y, style, label={"bma": "model average"}.get(name, name.replace("_", " ")))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("forecast probability of a cooperative interaction")
    ax.set_ylabel("observed frequency")
    ax.set_title("Backtest calibration")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


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
) -> BacktestResult:
    """Backtest a study and write backtest.json and the reliability plot into its latest run.

    ``workers`` local processes (or the Dask cluster at ``scheduler``) share the exact refits,
    one origin per task; by default they run in this process, which on a 2-core machine is as
    fast (nutpie already samples the chains on both cores) and compiles the model only once.
    """
    from forecast.runs.store import default_root

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
    run = fitted_run(runs_root or study.runs_path or default_root(), study, obs) if write else None
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
        from forecast.fit.pool import model_key, open_pool

        _MODELS[model_key(study, model.cells)] = model  # an in-process pool reuses this compile
        with open_pool(scheduler, workers, len(origin_list), settings.cores) as pool:
            result = run_it(pool=pool)
        result.settings["pool"] = pool.description
    else:
        result = run_it()
        result.settings["pool"] = "in this process, one origin after another"
    loo = {}
    if run is not None:
        loo = {h["id"]: (h.get("elpd_loo"), h.get("elpd_loo_se")) for h in run.summary["hypotheses"]}
    for entry in result.lfo["hypotheses"]:
        entry["elpd_loo"], entry["elpd_loo_se"] = loo.get(entry["id"], (None, None))
    n_blocks = result.lfo["hypotheses"][0]["n_blocks"] if result.lfo["hypotheses"] else 0
    result.lfo["note"] = (
        f"elpd_lfo sums, over {n_blocks} quarters, the log predictive density of each next quarter's events given "
        "what was known before it; elpd_loo (from the run) leaves out one event at a time from all the data. They "
        "answer different questions on different events: compare hypotheses within a column, not across."
    )
    result.timings.update(compile_s=model.compile_seconds, total_s=time.perf_counter() - t0)
    if run is not None:
        result.run_dir = str(run.path)
        written = [str(run.path / BACKTEST)]
        if result.calibration:
            write_run_file(run.path, RELIABILITY_PLOT, lambda p: plot_reliability(result.calibration, p))
            written.append(str(run.path / RELIABILITY_PLOT))
        result.written = written
        write_run_json(run.path, BACKTEST, result.to_dict())
    return result


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "—" if x is None or not np.isfinite(x) else format(x, spec)


def render_backtest(result: BacktestResult) -> str:
    d = result.to_dict()
    lines = []
    if not result.converged:
        lines += ["!" * 80, "WARNING: " + UNRELIABLE + "; every figure below is UNRELIABLE.", "!" * 80, ""]
    lines.append(
        f"Study '{result.study}': backtest at {len(result.origins)} origins {d['origins'][0]}..{d['origins'][-1]}, "
        f"forecasting 1..{result.horizon} quarters ahead from what was known at each origin"
    )
    overall = result.scores.get("overall")
    if overall:
        lines += [
            f"{overall['n_events']} forecast events. Log score: higher is better; Brier: lower is better; "
            "skill = 1 - score / baseline's (> 0 beats the baseline).",
            "",
            f"{'forecaster':<16} {'log score':>9} {'Brier':>7}  {'skill vs base rate':>18}  {'skill vs last qtr':>17}"
            f"  {'cover 50%':>9} {'cover 90%':>9}",
        ]
        for f in d["forecasters"]:
            s = overall[f]
            sk = (result.scores["skill"] or {}).get(f)
            cov = result.coverage.get(f)
            skill_base = (
                f"{_fmt(sk['base_rate']['log_score'], '+.3f')} / {_fmt(sk['base_rate']['brier'], '+.3f')}" if sk else ""
            )
            skill_last = (
                f"{_fmt(sk['last_quarter']['log_score'], '+.3f')} / {_fmt(sk['last_quarter']['brier'], '+.3f')}"
                if sk
                else ""
            )
            lines.append(
                f"{f[:16]:<16} {_fmt(s['log_score']):>9} {_fmt(s['brier']):>7}  {skill_base:>18}  {skill_last:>17}  "
                f"{_fmt(cov['interval_50'], '.2f') if cov else '':>9} {_fmt(cov['interval_90'], '.2f') if cov else '':>9}"
            )
        lines.append("(skill columns: log score / Brier)")
    if result.lfo["hypotheses"]:
        lines += ["", f"Leave-future-out elpd ({result.lfo['method']}), beside the run's PSIS-LOO elpd:"]
        for h in result.lfo["hypotheses"]:
            loo = (
                f"{_fmt(h.get('elpd_loo'), '.1f')} ± {_fmt(h.get('elpd_loo_se'), '.1f')}"
                if h.get("elpd_loo") is not None
                else "—"
            )
            lines.append(
                f"  {h['id']:<16} elpd_lfo {h['elpd_lfo']:>8.1f} ± {h['se']:<5.1f} "
                f"(Δ {h['elpd_diff']:>5.1f} ± {h['elpd_diff_se']:<4.1f})  elpd_loo {loo}"
            )
        lines.append("  " + result.lfo["note"])
    for q in result.questions:
        if q["n_resolved"]:
            s = q["scores"]
            lines.append(
                f"Question {q['id']} ({q['n_resolved']} resolved): Brier model average {s[BMA]['brier']:.3f}, "
                f"base rate {s['base_rate']['brier']:.3f}, last quarter {s['last_quarter']['brier']:.3f}"
            )
    if result.written:
        lines += ["", "Written: " + ", ".join(result.written)]
    return "\n".join(lines)
