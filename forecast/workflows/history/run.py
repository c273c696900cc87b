"""The workflow of `forecast history`: a stored run in, ``history.json`` stored into it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from forecast.data.observations import Observations, load_observations
from forecast.errors import ConvergenceError, InputError, RunStoreError
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.runs.layout import CONSTRAINTS, CONSTRAINTS_SCHEMA, HISTORY
from forecast.runs.store import preflight
from forecast.runs.stored import StoredRun
from forecast.settings import Progress
from forecast.spec.constraints import ENCOMPASSING_ID
from forecast.spec.study import Study, load_study
from forecast.workflows.history.compute import FinalResult, compute_history
from forecast.workflows.history.records import History

HISTORY_FILE_BYTES = 1024 * 1024  # room checked for history.json before any fitting


def run_history(
    study_path: str | Path | None = None,
    *,
    run_dir: str | Path | None = None,
    runs_root: Path | None = None,
    every: int = 1,
    settings: SamplerSettings | None = None,
    overrides: Mapping[str, int] | None = None,
    allow_unconverged: bool = False,
    progress: Progress | None = None,
    today: dt.date | None = None,
) -> History:
    """Compute support over time for a run and store it as the run's ``history.json``.

    The run is ``run_dir`` (a run directory or a study's run folder) or the latest run of the
    study at ``study_path`` (under ``runs_root``, the study's ``runs`` or ``reports/runs``). With
    ``study_path`` the current study and observations are used and the run must match them (the
    one staleness rule, exit 2 otherwise); without it, the run's own copies are used.

    ``settings`` default to the run's own sampler settings (the last quarter is then the run's
    stored result, not a refit); ``overrides`` replace single fields of them (e.g. ``{"draws":
    500}``). A run that failed its convergence checks is refused (exit 3) unless
    ``allow_unconverged``; points whose refits fail are flagged, not refused.
    """
    if every < 1:
        raise InputError(f"--every must be a whole number of quarters >= 1, got {every}")
    study = load_study(study_path) if study_path is not None else None
    run = StoredRun.find(run_dir, study=study, runs_root=runs_root)
    if study is None:
        study = run.stored_study()
        obs = load_observations(study, run.observations_path, today=today)
    else:
        obs = load_observations(study, today=today)
    # history.json goes into the run: check it can be written before minutes of fitting.
    preflight(run.path.parent, run.path.name, need_bytes=HISTORY_FILE_BYTES)
    return history_for_run(
        run,
        study,
        obs,
        every=every,
        settings=settings,
        overrides=overrides,
        allow_unconverged=allow_unconverged,
        progress=progress,
    )


def history_for_run(
    run: StoredRun,
    study: Study,
    obs: Observations,
    *,
    model: StudyModel | None = None,
    every: int = 1,
    settings: SamplerSettings | None = None,
    overrides: Mapping[str, int] | None = None,
    allow_unconverged: bool = False,
    progress: Progress | None = None,
) -> History:
    """``run_history`` once the run and the inputs are in hand (``update --history`` calls it on
    the run it is writing, with the model it has compiled): check, compute, store."""
    run.check_inputs(study, obs.sha256)
    if not run.converged and not allow_unconverged:
        raise ConvergenceError(
            f"run {run.path} failed its convergence checks, so support over time was not computed. "
            "Refit with more --tune/--draws, or pass --allow-unconverged to compute it anyway (flagged)."
        )
    own = run_settings(run)
    chosen = replace(settings or own, **dict(overrides or {}))
    history = compute_history(
        study,
        obs,
        model,
        chosen,
        every=every,
        progress=progress,
        final=run_result(run) if chosen == own else None,
        final_draws=lambda hid: _stored_posterior(run, hid),
    )
    path = run.write_json(HISTORY, history.to_dict())
    return replace(history, written=str(path))


def run_settings(run: StoredRun) -> SamplerSettings:
    """The sampler settings a run was fitted with (from its summary)."""
    names = {f.name for f in fields(SamplerSettings)}
    stored = {k: v for k, v in (run.summary.get("settings") or {}).items() if k in names}
    return SamplerSettings(**stored)


def run_result(run: StoredRun) -> FinalResult:
    """Each hypothesis's log marginal likelihood, its error and its problems, as the run stored them."""
    out: FinalResult = {}
    for h in run.summary.get("hypotheses", []):
        d = h.get("diagnostics", {})
        problems = [] if d.get("converged") else list(d.get("problems", ["failed"]))
        # Stored JSON has null for an unknown figure (e.g. a bridge error that cannot be estimated).
        value, se = (
            np.nan if v is None else float(v) for v in (h["log_marginal_likelihood"], h["log_marginal_likelihood_se"])
        )
        out[h["id"]] = (value, se, problems)
    # The encompassing fit of the constraint hypotheses (no marginal likelihood: only its problems).
    try:
        constraints = run.read_json(CONSTRAINTS, CONSTRAINTS_SCHEMA)
    except RunStoreError:
        constraints = None
    if constraints is not None:
        d = constraints.get("diagnostics") or {}
        converged = d.get("converged", constraints.get("converged", True))
        out[ENCOMPASSING_ID] = (np.nan, np.nan, [] if converged else list(d.get("problems", ["failed"])))
    return out


def _stored_posterior(run: StoredRun, hypothesis_id: str):
    """The run's posterior draws of a hypothesis, or None when they cannot be read (the run's
    support figures do not need them; only the last interval's attribution then has one side)."""
    try:
        return run.open_posterior(hypothesis_id)
    except RunStoreError:
        return None
