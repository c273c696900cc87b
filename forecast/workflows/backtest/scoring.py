"""The backtest's numbers as pure functions: baselines, scores, coverage, leave-future-out elpd.

Event scores against two baselines, predictive interval coverage, re-asked questions, and each
hypothesis's leave-future-out elpd (importance-weighted for ``lfo="approx"``).

``_score_backtest`` turns the forecasts made at every origin into a ``BacktestResult``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import logsumexp

from forecast.data.cells import CellData
from forecast.model.predictive import Predictive, distinct_events, event_rates, mixture, question_probability
from forecast.spec.questions import Question
from forecast.spec.study import Study
from forecast.stats.loo import cell_loglik as stats_cell_loglik
from forecast.stats.loo import posterior_probabilities
from forecast.stats.scoring import brier, interval_coverage, log_score, reliability_table, skill
from forecast.workflows.backtest.records import (
    BASELINES,
    BMA,
    BacktestResult,
    BacktestSettings,
    CellScores,
    Coverage,
    Lfo,
    LfoHypothesis,
    OriginResult,
    QuestionScores,
    ReliabilityBin,
    Score,
    Scores,
    ScoreSummary,
    Skill,
)

PARETO_K_REFIT = 0.7
SMOOTHING = 0.5  # add-a-half smoothing of the baselines' frequencies
LEVELS = (0.5, 0.9)


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


# --- leave-future-out: the log-likelihood of a block, and importance weights ----------------------


def cell_loglik(eta: np.ndarray, cells: CellData, concentration: np.ndarray | None = None) -> np.ndarray:
    """The model's reliability-weighted log-likelihood of ``cells`` per draw, from (draws, G, D, Q) log-odds.

    ``concentration`` (draws,): an overdispersed model's; each cell's term is then the Polya cell
    likelihood (``forecast.stats.loo.cell_loglik``), not the sum of its events' Bernoulli terms.
    Cells are independent given the parameters either way, so the difference of two blocks' values
    is the log-likelihood of what one block adds to the other, cell by cell.
    """
    if cells.n_cells == 0:
        return np.zeros(eta.shape[0])
    e = eta[:, cells.group, cells.domain, cells.quarter]
    if concentration is not None:
        return stats_cell_loglik(e, cells, concentration).sum(axis=-1)
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


# --- scoring the forecasts of every origin ------------------------------------------------------


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
        preds = {h: Predictive(fc[h].share, fc[h].weights, tuple(o.targets), fc[h].concentration) for h in hyp_ids}
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
                cdf = _count_cdf(n, share, p.concentration)
                below = float(p.weights @ cdf(k - 1)) if k > 0 else 0.0
                at = float(p.weights @ cdf(k))
                for level in LEVELS:
                    row[f"{f}@{level}"] = float(interval_coverage(below, at, level))
            out.append(row)


def _count_cdf(n: int, share: np.ndarray, concentration: np.ndarray | None):
    """The cdf of a cell's cooperative count among ``n`` events, per draw: binomial at the share, or
    (overdispersed) beta-binomial, the cell's share drawn from Beta(p phi, (1 - p) phi)."""
    if concentration is None:
        return lambda k: stats.binom.cdf(k, n, share)
    share = np.clip(share, 1e-300, 1.0 - 1e-16)
    a, b = share * concentration, (1.0 - share) * concentration
    return lambda k: stats.betabinom.cdf(k, n, a, b)


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
