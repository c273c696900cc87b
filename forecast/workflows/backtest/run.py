"""`forecast backtest` from start to end: origins, fits, scores, and ``backtest.json`` in the run.

The exact refits run in this process or fanned out (one origin per task); the reliability
diagram, when a ``plot`` function is given, is written into the run beside ``backtest.json``.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.errors import InputError, ObservationError
from forecast.fit.pool import Pool, fan_out, open_pool, register_model
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.runs.layout import BACKTEST, BACKTEST_PLOT
from forecast.runs.store import default_root, preflight
from forecast.runs.stored import StoredRun
from forecast.settings import Progress
from forecast.spec.constraints import require_prior_hypotheses
from forecast.spec.questions import Question, load_questions
from forecast.spec.study import Study, load_study, quarter_label
from forecast.workflows.backtest.origins import (
    DEFAULT_ORIGINS,
    _check_converged,
    _Forecast,
    _forecast_from,
    _Origin,
    _parse_origins,
    _Posterior,
    _refit,
    fit_origin_task,
    known_at,
    last_target_quarter,
)
from forecast.workflows.backtest.records import BacktestResult, OriginFit
from forecast.workflows.backtest.scoring import PARETO_K_REFIT, _score_backtest, cell_loglik, psis_log_weights

RESULT_FILE_BYTES = 16 * 1024 * 1024  # room checked for backtest.json and its plot before any fitting


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
                    phi = post.concentration
                    added = cell_loglik(post.eta, o.cells, phi) - cell_loglik(post.eta, post.cells, phi)
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
    require_prior_hypotheses(study, "forecast backtest", "it scores the hypotheses' forecasts")
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
