"""`forecast predict`: forecasts from a stored run.

``predict`` reads the study's latest run through ``StoredRun`` (its posterior draws and
posterior probabilities; it never refits), checks that the run matches the current inputs (the
one staleness rule), and writes ``forecasts.json`` into that run: the forecast shares per (group,
domain, quarter) under each hypothesis and averaged over them, a probability for every
registered question, and the milestones (cells ranked by how diagnostic their next quarter is).
The run's creation time and the issue time travel with the forecasts, so ``forecast score``
(``forecast.workflows.score``) can later judge each question with the last forecast issued
before it resolved, against the observations then in the data file.

Stale data are said plainly (``staleness``): when forecast quarters or questions' quarters are
already over on ``today`` (injectable; the system date by default), the result carries warnings
that name them, today's date and the date of the latest observation, so a forecast of quarters
whose events have happened but are not yet coded is never mistaken for a prediction.
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
from forecast.model.record import concentration_draws
from forecast.runs.layout import FORECASTS, RESULTS_SCHEMA
from forecast.runs.store import default_root, jsonable
from forecast.runs.stored import StoredRun
from forecast.settings import DEFAULT_SEED, Progress, derive_rng
from forecast.spec.constraints import require_prior_hypotheses
from forecast.spec.questions import Question, load_questions, quarter_end, quarter_of
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


def latest_observation(obs: Observations) -> dt.date:
    """The date of the latest observed event."""
    return obs.table["event_date"].max().date()


def hypothesis_rng(seed: int, hypothesis: str) -> np.random.Generator:
    return derive_rng(seed, hypothesis, 2)


# --- stale data -------------------------------------------------------------------------------


def _labels(quarters: list[int]) -> str:
    names = [quarter_label(q) for q in quarters]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _age(days: int) -> str:
    if days < 62:
        return f"{days} days"
    return f"{round(days / 30.44)} months"


@dataclass(frozen=True)
class Staleness:
    """Which forecast quarters and questions already lie in the past on ``today``.

    A quarter is *over* when it ended before today and *under way* when today falls in it.
    ``questions_over``: questions whose quarter is over (their events have happened);
    ``questions_resolved``: those of them whose resolution date has passed as well.
    """

    today: dt.date
    latest_observation: dt.date
    quarters_over: tuple[int, ...]
    quarter_under_way: int | None
    questions_over: tuple[str, ...]
    questions_resolved: tuple[str, ...]
    question_dates: dict[str, tuple[int, dt.date]] = field(default_factory=dict)  # id -> (quarter, resolves)

    @property
    def days_since_latest_observation(self) -> int:
        return (self.today - self.latest_observation).days

    def warnings(self) -> list[str]:
        """Plain sentences, one per problem: forecast quarters over, then questions over."""
        out = []
        data = (
            f"the latest observation is from {self.latest_observation.isoformat()} "
            f"({_age(self.days_since_latest_observation)} before today, {self.today.isoformat()})"
        )
        if self.quarters_over:
            n = len(self.quarters_over)
            over = ("forecast quarter " if n == 1 else "forecast quarters ") + _labels(list(self.quarters_over))
            verb = "is" if n == 1 else "are"
            now = ""
            if self.quarter_under_way is not None:
                now = f" and {quarter_label(self.quarter_under_way)} is under way"
            start = quarter_of(self.today)  # the first quarter that is not over
            out.append(
                f"Stale data: {over} {verb} already over{now}, but {data}. The figures for "
                f"{'it' if n == 1 and not now else 'them'} are about events that have happened and are not yet "
                "coded: read them as estimates of the past, not as predictions. "
                f"Code the events since {self.latest_observation.isoformat()} and rerun `forecast update`, or "
                f"forecast from {quarter_label(start)} on with --origin {quarter_label(start - 1)}."
            )
        if self.questions_over:
            parts = []
            for qid in self.questions_over:
                quarter, resolves = self.question_dates[qid]
                if qid in self.questions_resolved:
                    parts.append(f"'{qid}' ({quarter_label(quarter)}, resolved on {resolves.isoformat()})")
                else:
                    parts.append(f"'{qid}' ({quarter_label(quarter)} is over; it resolves on {resolves.isoformat()})")
            score = ""
            if len(parts) == 1 and self.questions_resolved:
                score = " Score it with `forecast score` once its events are coded."
            elif self.questions_resolved:
                score = " Score the resolved ones with `forecast score` once their events are coded."
            if len(parts) == 1:
                which, so = "1 question of the study asks about a quarter", "its probability is a forecast"
            else:
                which, so = (
                    f"{len(parts)} questions of the study ask about quarters",
                    "their probabilities are forecasts",
                )
            out.append(
                f"Stale questions: {which} that {'is' if len(parts) == 1 else 'are'} already over: "
                f"{', '.join(parts)}; {data}, so {so} of the past.{score}"
            )
        return out

    def to_dict(self) -> dict:
        return {
            "today": self.today.isoformat(),
            "latest_observation": self.latest_observation.isoformat(),
            "days_since_latest_observation": self.days_since_latest_observation,
            "quarters_over": [quarter_label(q) for q in self.quarters_over],
            "quarter_under_way": None if self.quarter_under_way is None else quarter_label(self.quarter_under_way),
            "questions_over": list(self.questions_over),
            "questions_resolved": list(self.questions_resolved),
        }


def staleness(
    today: dt.date, latest: dt.date, forecast_quarters: list[int], questions: tuple[Question, ...] | list[Question]
) -> Staleness:
    """Which forecast quarters and questions lie in the past relative to ``today``."""
    now = quarter_of(today)
    over = tuple(q for q in forecast_quarters if quarter_end(q) < today)
    under_way = now if now in forecast_quarters else None
    q_over = tuple(q.id for q in questions if quarter_end(q.quarter) < today)
    q_resolved = tuple(q.id for q in questions if q.id in q_over and q.resolves < today)
    dates = {q.id: (q.quarter, q.resolves) for q in questions}
    return Staleness(today, latest, over, under_way, q_over, q_resolved, dates)


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
    stale: Staleness | None = None

    @property
    def warnings(self) -> list[str]:
        """Stale data said plainly: forecast quarters or questions that are already over (else [])."""
        return self.stale.warnings() if self.stale is not None else []

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
        if self.stale is not None:
            d["today"] = self.stale.today.isoformat()
            d["latest_observation"] = self.stale.latest_observation.isoformat()
            d["staleness"] = self.stale.to_dict()
        d["warnings"] = self.warnings
        if not self.converged:
            d["warning"] = UNRELIABLE
        return jsonable(d)


def run_predict(
    study_path: str | Path,
    *,
    horizon: int = 4,
    origin: str | None = None,
    runs_root: Path | None = None,
    run_dir: Path | None = None,
    allow_unconverged: bool = False,
    seed: int = DEFAULT_SEED,
    write: bool = True,
    today: dt.date | None = None,
    progress: Progress | None = None,
) -> PredictResult:
    """Forecasts for the quarters after ``origin`` (default: the last quarter with observations) from the latest run.

    ``today`` (default: the system date) is the date the forecasts are judged against: the
    result's ``warnings`` name forecast quarters and questions that are already over on it.
    ``run_dir`` forecasts from that run (it must match the current inputs) instead of the latest.
    """
    t0 = time.perf_counter()
    today = today or dt.date.today()
    say = progress or (lambda _msg: None)
    if horizon < 1:
        raise InputError(f"--horizon must be at least 1, got {horizon}")
    study = load_study(study_path)
    require_prior_hypotheses(study, "forecast predict", "its forecasts average the hypotheses' posteriors")
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
    run = StoredRun.find(run_dir, study=study, runs_root=runs_root or study.runs_path or default_root())
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
        post = run.open_posterior(h.id)
        arrays = draws_as_arrays(post, study)
        preds[h.id] = predictive(
            arrays, study, quarters, hypothesis_rng(seed, h.id), concentration=concentration_draws(post, study)
        )
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
        stale=staleness(today, latest_observation(obs), forecast_quarters, questions),
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
