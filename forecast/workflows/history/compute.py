"""The computation of support over time: a refit per evaluated quarter, and what moved it."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from forecast.data.cells import cell_data
from forecast.data.observations import Observations
from forecast.errors import InputError
from forecast.fit.hypothesis import fit_hypothesis
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.settings import Progress
from forecast.spec.constraints import ENCOMPASSING_ID
from forecast.spec.study import Study, quarter_label
from forecast.stats.loo import posterior_probabilities
from forecast.workflows.history.attribution import PRIOR_DRAWS_FACTOR, Collector
from forecast.workflows.history.constraints import ConstraintTracker
from forecast.workflows.history.records import History, HistoryPoint

# hypothesis id -> (log marginal likelihood, its MC standard error, convergence problems)
FinalResult = dict[str, tuple[float, float, list[str]]]
# hypothesis id -> the posterior draws of the final result (an xarray Dataset), for "what moved it"
FinalDraws = Callable[[str], object]


def quarter_end(index: int) -> dt.date:
    """The last day of the quarter with index ``year * 4 + quarter - 1``."""
    year, q = divmod(index, 4)
    first_of_next = dt.date(year + (q == 3), (3 * (q + 1)) % 12 + 1, 1)
    return first_of_next - dt.timedelta(days=1)


def known_quarter(table: pd.DataFrame) -> np.ndarray:
    """The quarter index in which each observation became known (its report date)."""
    rd = table["report_date"]
    return (rd.dt.year * 4 + (rd.dt.month - 1) // 3).to_numpy(dtype=np.int64)


def evaluation_quarters(known: np.ndarray, every: int) -> list[int]:
    """Every ``every``-th quarter from the first with evidence to the last, always ending at the last."""
    if len(known) == 0:
        return []
    first, last = int(known.min()), int(known.max())
    quarters = list(range(first, last + 1, every))
    if quarters[-1] != last:
        quarters.append(last)
    return quarters


def compute_history(
    study: Study,
    obs: Observations,
    model: StudyModel | None = None,
    settings: SamplerSettings | None = None,
    *,
    every: int = 1,
    progress: Progress | None = None,
    final: FinalResult | None = None,
    final_draws: FinalDraws | None = None,
    attribution: bool = True,
) -> History:
    """Posterior probabilities after each (every N-th) quarter of evidence; see the package docstring.

    ``model`` is the study's compiled model (e.g. the one `forecast update` just used); one is
    built for ``obs`` if not given. ``settings`` default to ``SamplerSettings()``. ``final`` is the
    result of fitting all of ``obs`` with the same settings (the run itself), used for the last
    quarter instead of a refit, and ``final_draws`` gives its posterior draws per hypothesis (for
    the attribution of the last interval; without them that interval is weighted from the earlier
    fit only). ``attribution=False`` skips "what moved it" (the probabilities are the same).

    A study with constraint hypotheses also gets ``History.constraints`` (``ConstraintTracker``):
    one encompassing fit per evaluated quarter, the regions' prior masses once; at the last
    quarter ``final_draws(ENCOMPASSING_ID)`` (the run's stored encompassing fit), when given with
    ``final``, replaces the refit, and ``final[ENCOMPASSING_ID]``'s problems flag that point.
    """
    if every < 1:
        raise InputError(f"every must be a whole number of quarters >= 1, got {every}")
    t0 = time.perf_counter()
    settings = settings or SamplerSettings()
    say = progress or (lambda _msg: None)
    table = obs.table
    known = known_quarter(table)
    ids = [h.id for h in study.hypotheses]
    full_cells = cell_data(table, study) if model is None or study.constraints is not None else None
    model = (model or StudyModel(study, full_cells)) if ids else None
    prior = np.array([h.prior_probability for h in study.hypotheses])
    quarters = evaluation_quarters(known, every)
    n_fits = sum(1 for i, q in enumerate(quarters) if _new(known, quarters, i) > 0)
    tracker = None
    if study.constraints is not None:
        say(f"constraint hypotheses: their prior masses once ({study.constraints.prior_draws} prior draws)")
        tracker = ConstraintTracker(
            study,
            full_cells,
            settings,
            collector=Collector(study, table, known, quarters) if attribution and quarters else None,
            progress=say,
        )
    say(
        f"history: {len(quarters)} quarter(s) {quarter_label(quarters[0]) if quarters else ''}.."
        f"{quarter_label(quarters[-1]) if quarters else ''}, every {every}, up to "
        f"{n_fits * (len(ids) + (tracker is not None))} fits ({settings.chains} chains x {settings.draws} draws)"
        + (" (one encompassing fit per quarter for the constraint hypotheses)" if tracker is not None else "")
    )
    collector = Collector(study, table, known, quarters) if attribution and len(ids) > 1 and quarters else None

    points: list[HistoryPoint] = []
    if quarters:
        before = quarters[0] - 1
        if ids:
            points.append(_prior_point(ids, prior, before))
        if tracker is not None:
            tracker.prior_point(before, quarter_end(before).isoformat())
        if collector is not None:
            for h in study.hypotheses:
                collector.prior(h, PRIOR_DRAWS_FACTOR * settings.chains * settings.draws, settings.seed)
    for i, q in enumerate(quarters):
        j = i + 1  # this quarter's index among the points (0 is the prior)
        mask = known <= q
        n_known = int(mask.sum())
        new = _new(known, quarters, i)
        as_of = quarter_end(q).isoformat()
        if new == 0 and i > 0:
            if ids:
                points.append(
                    replace(points[-1], quarter=quarter_label(q), as_of=as_of, new_observations=0, source="reused")
                )
            if tracker is not None:
                tracker.reuse(q, as_of)
            continue
        t_q = time.perf_counter()
        cells = cell_data(table[mask], study)
        everything = n_known == len(table)
        if ids:
            p = _hypotheses_point(
                study, model, settings, cells, j, q, n_known, new, everything, final, final_draws, collector
            )
            points.append(p)
            flag = "" if p.converged else "  NOT CONVERGED: " + ", ".join(p.problems)
            say(
                f"  {p.quarter}: {n_known} observations (+{new}), "
                + ", ".join(f"{k} {v:.3f}" for k, v in p.probabilities.items())
                + ("  [the run's own fit]" if p.source == "run" else f"  [{time.perf_counter() - t_q:.1f} s]")
                + flag
            )
        if tracker is not None:
            stored = final_draws(ENCOMPASSING_ID) if final is not None and everything and final_draws else None
            if stored is not None:
                cp = tracker.run_point(j, q, as_of, n_known, new, stored, _run_problems(final, ENCOMPASSING_ID))
            else:
                cp = tracker.fit_point(j, q, as_of, n_known, new, cells, say)
            say(
                f"  {cp.quarter} constraints: "
                + ", ".join(f"{k} {v:.3f}" for k, v in cp.probabilities.items())
                + ("  [the run's encompassing fit]" if cp.source == "run" else f"  [{cp.seconds:.1f} s]")
                + ("" if cp.converged else "  NOT CONVERGED: " + "; ".join(cp.problems))
            )
    moved = collector.attribution(points) if collector is not None else None
    if moved is not None:
        say(
            f"  what moved it: {len(moved.intervals)} interval(s), {moved.n_unattributed} not split by event "
            f"(log Bayes factor {moved.hypotheses[0]} : {moved.hypotheses[1]})"
        )
    return History(
        study=study.name,
        hypotheses=[{"id": h.id, "label": h.label, "prior_probability": h.prior_probability} for h in study.hypotheses],
        every=every,
        settings=settings.to_dict(),
        points=points,
        seconds=time.perf_counter() - t0,
        attribution=moved,
        constraints=tracker.history() if tracker is not None else None,
    )


def _hypotheses_point(
    study, model, settings, cells, j, q, n_known, new, everything, final, final_draws, collector
) -> HistoryPoint:
    """The prior-specified hypotheses after the evidence known by quarter ``q``: the run's own
    result when every observation is known and ``final`` is given, else a refit of each."""
    ids = [h.id for h in study.hypotheses]
    log_ml, log_ml_se, problems = [], [], {}
    source = "fit"
    if final is not None and everything and set(ids) <= set(final):
        source = "run"  # every observation is known: this is the run's own result
        for hid in ids:
            value, se, issues = final[hid]
            log_ml.append(value)
            log_ml_se.append(se)
            if any(not p.startswith("warning") for p in issues):
                problems[hid] = list(issues)
            if collector is not None:
                posterior = final_draws(hid) if final_draws is not None else None
                if posterior is None:
                    collector.without_draws(j, hid)
                else:
                    collector.posterior(j, hid, posterior, int(posterior.sizes["chain"]))
    else:
        for h in study.hypotheses:
            judged = fit_hypothesis(model, h, settings, cells=cells, with_loo=False)
            log_ml.append(judged.bridge.log_ml)
            log_ml_se.append(judged.bridge.se)
            if not judged.converged:
                problems[h.id] = list(judged.fit.diagnostics.problems)
            if collector is not None:
                collector.posterior(j, h.id, judged.fit.trace.posterior, judged.fit.settings.chains)
    p, p_se = posterior_probabilities(
        np.array(log_ml), np.array(log_ml_se), np.array([h.prior_probability for h in study.hypotheses])
    )
    return HistoryPoint(
        quarter=quarter_label(q),
        as_of=quarter_end(q).isoformat(),
        n_observations=n_known,
        new_observations=new,
        source=source,
        probabilities=dict(zip(ids, map(float, p), strict=True)),
        probabilities_se=dict(zip(ids, map(float, p_se), strict=True)),
        log_marginal_likelihood=dict(zip(ids, map(float, log_ml), strict=True)),
        log_marginal_likelihood_se=dict(zip(ids, map(float, log_ml_se), strict=True)),
        converged=not problems,
        problems=problems,
    )


def _run_problems(final: FinalResult | None, hid: str) -> list[str]:
    """The run's convergence problems of a fit (none when the run does not say)."""
    issues = (final or {}).get(hid, (None, None, []))[2]
    return [p for p in issues if not p.startswith("warning")]


def _new(known: np.ndarray, quarters: list[int], i: int) -> int:
    lower = quarters[i - 1] if i > 0 else -np.inf
    return int(((known > lower) & (known <= quarters[i])).sum())


def _prior_point(ids: list[str], prior: np.ndarray, quarter: int) -> HistoryPoint:
    return HistoryPoint(
        quarter=quarter_label(quarter),
        as_of=quarter_end(quarter).isoformat(),
        n_observations=0,
        new_observations=0,
        source="prior",
        probabilities=dict(zip(ids, map(float, prior), strict=True)),
        probabilities_se=dict.fromkeys(ids, 0.0),
        log_marginal_likelihood=dict.fromkeys(ids),
        log_marginal_likelihood_se=dict.fromkeys(ids),
        converged=True,
    )
