"""`forecast predict`: forecasts from a stored run.

``predict`` reads the study's latest run through ``StoredRun`` (its posterior draws and
posterior probabilities; it never refits), checks that the run matches the current inputs (the
one staleness rule), and writes ``forecasts.json`` into that run: the forecast shares per (group,
domain, quarter) under each hypothesis and averaged over them, a probability for every
registered question, and the milestones (cells ranked by how diagnostic their next quarter is).
The run's creation time and the issue time travel with the forecasts, so ``forecast score``
(``forecast.workflows.score``) can later judge each question with the last forecast issued
before it resolved, against the observations then in the data file.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from forecast.data.observations import Observations, load_observations
from forecast.errors import ConvergenceError, InputError, ObservationError
from forecast.model.build import draws_as_arrays
from forecast.model.milestones import Milestone, milestones
from forecast.model.predictive import (
    Predictive,
    QuestionForecast,
    event_rates,
    forecast_question,
    forecast_table,
    mixture,
    predictive,
)
from forecast.runs.layout import FORECASTS, RESULTS_SCHEMA
from forecast.runs.store import default_root, jsonable
from forecast.runs.stored import StoredRun
from forecast.settings import DEFAULT_SEED, Progress, derive_rng
from forecast.spec.questions import load_questions
from forecast.spec.study import load_study, quarter_index, quarter_label

UNRELIABLE = "UNRELIABLE: the run's fits failed their convergence checks"

ASSUMPTIONS = {
    "share": "The forecast share is the expected share of cooperative interactions in a cell, sigmoid(eta) per "
    "posterior draw; its intervals are central posterior intervals of that share (not of an observed proportion).",
    "future_quarters": "Quarters after the study's time window continue each draw's trend and extend its random walk "
    "with fresh Normal(0, volatility) steps.",
    "event_counts": "Questions about observed events also need how many events a cell sees: per (group, domain), "
    "Poisson with a Gamma(n + 1/2, T) posterior rate from its n distinct events in the T quarters up to the data "
    "cutoff (stationary, and independent of the share). Rows with an origin_id corroborate another row and are "
    "not counted again.",
    "model_average": "Averaged over hypotheses with the run's posterior probabilities (Bayesian model averaging).",
    "milestones": "Milestones rank cells by the expected absolute change of the log Bayes factor between the two "
    "leading hypotheses from the next quarter's observations (at full reliability), with the expected information "
    "gain in nats.",
}


def run_probabilities(run: StoredRun) -> dict[str, float]:
    """Each hypothesis's posterior probability, as the run stored it."""
    return {h["id"]: float(h["posterior_probability"]) for h in run.summary["hypotheses"]}


def data_cutoff(obs: Observations) -> dt.date:
    """The last date the observations can speak for: their latest report date."""
    return obs.table["report_date"].max().date()


def hypothesis_rng(seed: int, hypothesis: str) -> np.random.Generator:
    return derive_rng(seed, hypothesis, 2)


# --- predict --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictResult:
    study: str
    run_dir: str
    run_created: str
    issued: str
    data_cutoff: str
    origin: int
    horizon: int
    converged: bool
    hypotheses: list[dict]  # id, label, posterior_probability
    forecasts: list[dict]
    questions: list[QuestionForecast]
    milestones: list[Milestone]
    leading: tuple[str, str] | None
    seed: int
    written: str | None = None
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {
            "schema_version": RESULTS_SCHEMA,
            "study": self.study,
            "run_dir": self.run_dir,
            "run_created": self.run_created,
            "issued": self.issued,
            "data_cutoff": self.data_cutoff,
            "origin": quarter_label(self.origin),
            "horizon": self.horizon,
            "quarters": [quarter_label(self.origin + k) for k in range(1, self.horizon + 1)],
            "converged": self.converged,
            "hypotheses": self.hypotheses,
            "forecasts": self.forecasts,
            "questions": [
                {**q.to_dict(), "resolved": q.question.resolves < dt.date.fromisoformat(self.issued[:10])}
                for q in self.questions
            ],
            "milestones": {
                "quarter": quarter_label(self.origin + 1),
                "leading": list(self.leading) if self.leading else None,
                "cells": [m.to_dict() for m in self.milestones],
            },
            "assumptions": ASSUMPTIONS,
            "seed": self.seed,
            "written": self.written,
            "timings": self.timings,
        }
        if not self.converged:
            d["warning"] = UNRELIABLE
        return jsonable(d)


def run_predict(
    study_path: str | Path,
    *,
    horizon: int = 4,
    origin: str | None = None,
    runs_root: Path | None = None,
    allow_unconverged: bool = False,
    seed: int = DEFAULT_SEED,
    write: bool = True,
    today: dt.date | None = None,
    progress: Progress | None = None,
) -> PredictResult:
    """Forecasts for the quarters after ``origin`` (default: the last quarter with observations) from the latest run."""
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    if horizon < 1:
        raise InputError(f"--horizon must be at least 1, got {horizon}")
    study = load_study(study_path)
    questions = load_questions(study, today=today)
    obs = load_observations(study, today=today)
    if obs.n == 0:
        raise ObservationError(f"{obs.path}: no observations yet; nothing to forecast from")
    cutoff = data_cutoff(obs)
    last_q = int(obs.table["quarter"].max())  # the last quarter with observations
    origin_q = last_q if origin is None else _parse_quarter(origin, "--origin")
    if origin_q < last_q:
        raise InputError(
            f"--origin {quarter_label(origin_q)} is before the last quarter with observations ({quarter_label(last_q)}): "
            "the fitted posterior already knows those quarters; use `forecast backtest` to evaluate past forecasts"
        )
    run = StoredRun.find(study=study, runs_root=runs_root or study.runs_path or default_root())
    run.check_inputs(study, obs.sha256)
    if not run.converged and not allow_unconverged:
        raise ConvergenceError(
            f"the latest run {run.path} failed its convergence checks, so no forecasts were made. "
            "Refit with more --tune/--draws, or pass --allow-unconverged to forecast anyway (flagged as unreliable)."
        )
    forecast_quarters = [origin_q + k for k in range(1, horizon + 1)]
    quarters = sorted(set(forecast_quarters) | {q.quarter for q in questions})
    say(
        f"{study.name}: forecasting {quarter_label(quarters[0])}..{quarter_label(quarters[-1])} from run {run.path.name}"
    )
    probs = run_probabilities(run)
    preds: dict[str, Predictive] = {}
    for h in study.hypotheses:
        arrays = draws_as_arrays(run.open_posterior(h.id), study)
        preds[h.id] = predictive(arrays, study, quarters, hypothesis_rng(seed, h.id))
    bma = mixture(list(preds.values()), [probs[h] for h in preds])
    rates = event_rates(obs.table, study, study.time.start, last_q)
    table = forecast_table(
        {h: p.select(forecast_quarters) for h, p in preds.items()},
        bma.select(forecast_quarters),
        rates,
        study,
        origin_q,
    )
    question_forecasts = [forecast_question(q, preds, bma, rates, study) for q in questions]
    ranked, leading = milestones(preds, probs, rates, study, origin_q + 1)
    issued = dt.datetime.now(dt.UTC)
    result = PredictResult(
        study=study.name,
        run_dir=str(run.path),
        run_created=run.created,
        issued=issued.isoformat(timespec="seconds"),
        data_cutoff=cutoff.isoformat(),
        origin=origin_q,
        horizon=horizon,
        converged=run.converged,
        hypotheses=[{"id": h.id, "label": h.label, "posterior_probability": probs[h.id]} for h in study.hypotheses],
        forecasts=table,
        questions=question_forecasts,
        milestones=ranked,
        leading=leading,
        seed=seed,
    )
    written = None
    if write:
        written = str(run.write_json(FORECASTS, result.to_dict()))
    return PredictResult(**{**result.__dict__, "written": written, "timings": {"total_s": time.perf_counter() - t0}})


def _parse_quarter(text: str, option: str) -> int:
    try:
        return quarter_index(text.strip())
    except ValueError:
        raise InputError(f"{option}: '{text}' is not a quarter like '2026Q1'") from None
