"""What the report needs from a stored run, read through ``forecast.runs.stored.StoredRun`` only.

The report reads the run's own copies of its inputs (never the current files: a report shows
what the run was fitted on), the posterior draws, the per-event LOO table, and the optional
analyses other commands stored in the run (``history.json``, ``sensitivity.json``,
``prior_predictive.json``, ``forecasts.json``, ``backtest.json``, ``evidence.json``,
``calibration.json``). A missing or unreadable optional file is a note in the report, not
an error; a run without its inputs or posteriors is a RunStoreError (exit 2) that says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forecast.data.cells import CellData, cell_data
from forecast.data.observations import Observations, load_observations
from forecast.errors import InputError, RunStoreError
from forecast.runs.layout import (
    BACKTEST,
    CALIBRATION,
    CONSTRAINTS,
    CONSTRAINTS_SCHEMA,
    EVIDENCE,
    FORECASTS,
    HISTORY,
    HISTORY_SCHEMA,
    OBSERVATIONS_COPY,
    POINTWISE,
    POSTERIOR_DIR,
    PRIOR_PREDICTIVE,
    PRIOR_PREDICTIVE_SCHEMA,
    RESULTS_SCHEMA,
    SENSITIVITY,
    SENSITIVITY_SCHEMA,
    STUDY_COPY,
    SUMMARY,
)
from forecast.runs.stored import StoredRun
from forecast.spec.constraints import ENCOMPASSING_ID
from forecast.spec.study import Study, load_study

OLDER = "it was written by an older version of forecast or is incomplete; re-run `forecast update`"


@dataclass
class RunData:
    stored: StoredRun
    summary: dict
    manifest: dict | None
    study: Study
    obs: Observations
    cells: CellData
    posteriors: dict  # hypothesis id -> xarray Dataset (posterior)
    sample_stats: dict  # hypothesis id -> xarray Dataset of tree depths, or None
    pointwise: pd.DataFrame | None
    history: dict | None  # history.json as stored
    sensitivity: dict | None  # sensitivity.json as stored
    prior_predictive: dict | None  # prior_predictive.json as stored
    notes: list[str]
    forecasts: dict | None = None  # forecasts.json (`forecast predict`)
    backtest: dict | None = None  # backtest.json (`forecast backtest`)
    evidence: dict | None = None  # evidence.json (`forecast evidence`)
    calibration: dict | None = None  # calibration.json (`forecast calibrate`)
    constraints: dict | None = None  # constraints.json (`forecast update` on a study with constraint hypotheses)
    encompassing: object | None = None  # the encompassing model's posterior (xarray Dataset), when stored

    @property
    def run_dir(self) -> Path:
        return self.stored.path


def find_run(run: Path | None, *, study_path: Path | None = None, runs_root: Path | None = None) -> StoredRun:
    """RUN (a run directory, a study's run folder, or a study file: its latest run) or the latest
    run of ``study_path``."""
    if run is not None and Path(run).suffix == ".toml" and Path(run).is_file():
        run, study_path = None, Path(run)
    if run is not None and not Path(run).exists():
        raise RunStoreError(f"{run}: no such run directory or study file")
    if run is not None and not Path(run).is_dir():
        raise RunStoreError(f"{run}: expected a run directory (with {SUMMARY}) or a study file (.toml)")
    study = load_study(study_path) if run is None and study_path is not None else None
    return StoredRun.find(run, study=study, runs_root=runs_root)


def load_run(stored: StoredRun) -> RunData:
    """Everything the report needs from a run; a clear RunStoreError if a required part is missing."""
    run_dir = stored.path
    notes: list[str] = []
    for name in (STUDY_COPY, OBSERVATIONS_COPY):
        if not stored.has(name):
            raise RunStoreError(f"{run_dir}: the run has no copy of its inputs ({name} is missing), so {OLDER}")
    manifest = stored.manifest or None
    if manifest is None:
        notes.append("the run has no manifest.json; data hashes and package versions are not shown")
    study = stored.stored_study()  # the run's own copy: what it was fitted on
    try:
        obs = load_observations(study, stored.observations_path)
    except InputError as e:
        raise RunStoreError(f"{run_dir}: the stored inputs no longer validate ({e}); {OLDER}") from None
    ids = stored.hypothesis_ids
    if ids != [h.id for h in study.hypotheses]:
        raise RunStoreError(
            f"{run_dir}: {SUMMARY} lists hypotheses {ids} but the stored study has "
            f"{[h.id for h in study.hypotheses]}; {OLDER}"
        )
    constraints = _optional(stored, CONSTRAINTS, CONSTRAINTS_SCHEMA, "forecast update", notes)
    if not ids and constraints is None:
        raise RunStoreError(
            f"{run_dir}: {SUMMARY} lists no hypotheses and the run holds no {CONSTRAINTS}; nothing to report. "
            "Re-run `forecast update`"
        )
    posteriors, stats = {}, {}
    for hid in ids:
        posteriors[hid] = stored.open_posterior(hid)
        try:
            ds = stored.open_posterior(hid, "sample_stats")
            stats[hid] = ds[[v for v in ("depth", "maxdepth_reached") if v in ds]]
        except RunStoreError:
            stats[hid] = None
    return RunData(
        stored=stored,
        summary=stored.summary,
        manifest=manifest,
        study=study,
        obs=obs,
        cells=cell_data(obs.table, study),
        posteriors=posteriors,
        sample_stats=stats,
        pointwise=_pointwise_table(stored, ids, obs, notes) if ids else None,
        history=_optional(stored, HISTORY, HISTORY_SCHEMA, "forecast history", notes),
        sensitivity=_optional(stored, SENSITIVITY, SENSITIVITY_SCHEMA, "forecast sensitivity", notes),
        prior_predictive=_optional(stored, PRIOR_PREDICTIVE, PRIOR_PREDICTIVE_SCHEMA, "forecast priors", notes),
        notes=notes,
        forecasts=_optional(stored, FORECASTS, RESULTS_SCHEMA, "forecast predict", notes),
        backtest=_optional(stored, BACKTEST, RESULTS_SCHEMA, "forecast backtest", notes),
        evidence=_optional(stored, EVIDENCE, None, "forecast evidence", notes),
        calibration=_optional(stored, CALIBRATION, None, "forecast calibrate", notes),
        constraints=constraints,
        encompassing=_encompassing(stored, constraints, notes),
    )


def _encompassing(stored: StoredRun, constraints: dict | None, notes: list[str]):
    """The encompassing model's stored posterior (constraint hypotheses), or None (with a note if damaged)."""
    if constraints is None or not (stored.path / POSTERIOR_DIR / f"{ENCOMPASSING_ID}.nc").is_file():
        return None
    try:
        return stored.open_posterior(ENCOMPASSING_ID)
    except RunStoreError as e:
        notes.append(f"the encompassing model's posterior was not used: {e}")
        return None


def _pointwise_table(stored: StoredRun, ids: list[str], obs: Observations, notes: list[str]) -> pd.DataFrame | None:
    """The stored per-event LOO table, or None (with a note) when it must be recomputed."""
    if not stored.has(POINTWISE):
        notes.append(
            f"the run has no {POINTWISE} (written by an older version); pointwise LOO was recomputed from the draws"
        )
        return None
    try:
        pointwise = pd.read_csv(stored.path / POINTWISE, dtype={"id": str})
    except (OSError, ValueError) as e:
        notes.append(f"{POINTWISE} is unreadable ({type(e).__name__}); pointwise LOO was recomputed")
        return None
    wanted = [f"{kind}__{hid}" for hid in ids for kind in ("elpd_loo", "pareto_k")]
    if "id" not in pointwise or any(c not in pointwise for c in wanted):
        notes.append(f"{POINTWISE} lacks some hypotheses' columns; pointwise LOO was recomputed")
        return None
    if list(pointwise["id"]) != list(obs.table["id"]):
        notes.append(f"{POINTWISE} does not match the stored observations; pointwise LOO was recomputed")
        return None
    return pointwise


def _optional(stored: StoredRun, name: str, schema: int, command: str, notes: list[str]) -> dict | None:
    """An analysis another command stored in the run, or None: absent, or unreadable (with a note)."""
    try:
        return stored.read_json(name, schema)
    except RunStoreError as e:
        notes.append(f"{name} was not shown: {e}; run `{command}` again to replace it")
        return None
