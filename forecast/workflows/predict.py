"""`forecast predict` and `forecast score`: forecasts from a stored run, and their scores once resolved.

``predict`` reads the study's latest run (its posterior draws and posterior probabilities; it
never refits), checks that the run was fitted on the current observations and model, and
writes ``forecasts.json`` into that run: the forecast shares per (group, domain, quarter) under
each hypothesis and averaged over them, a probability for every registered question, and the
milestones (cells ranked by how diagnostic their next quarter is). The run's creation time and
the issue time travel with the forecasts, so ``score`` can later judge each question with the
last forecast issued before it resolved, against the observations then in the data file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from forecast.data.observations import Observations, load_observations
from forecast.errors import ConvergenceError, InputError, ObservationError, RunStoreError, StudyError
from forecast.model.build import draws_as_arrays
from forecast.model.milestones import Milestone, milestones
from forecast.model.predictive import (
    Predictive,
    QuestionForecast,
    distinct_events,
    event_rates,
    forecast_question,
    forecast_table,
    mixture,
    predictive,
)
from forecast.runs.store import MANIFEST, POSTERIOR_DIR, default_root, dumps, latest_run, load_summary
from forecast.settings import derive_rng
from forecast.spec.questions import Question, load_questions, quarter_end
from forecast.spec.study import Study, load_study, quarter_label
from forecast.stats.scoring import log_probability, running_mean

Progress = Callable[[str], None]
FORECASTS = "forecasts.json"
SCORES = "scores.json"
RESULTS_SCHEMA = 1
from forecast.settings import DEFAULT_SEED  # noqa: E402

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


# --- the run directory --------------------------------------------------------------------


def write_run_file(run_dir: Path, name: str, writer: Callable[[Path], None]) -> Path:
    """Write ``run_dir/name`` atomically: a temporary file in the same directory, fsync, rename."""
    final = Path(run_dir) / name
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        writer(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final


def write_run_json(run_dir: Path, name: str, obj: dict) -> Path:
    text = dumps(obj) + "\n"
    return write_run_file(run_dir, name, lambda p: p.write_text(text, encoding="utf-8"))


def _jsonable(obj: object):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path | dt.date):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in JSON")


def json_safe(obj):
    """``obj`` with every NaN or infinite float replaced by None (strict JSON has neither)."""
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def _fitting_content(study: Study) -> tuple:
    """What a fit depends on: grid, counterparts, reliability weights, hypotheses' priors."""
    return (
        study.time,
        tuple((g.id, g.counterparts) for g in study.groups),
        tuple(d.id for d in study.domains),
        sorted(study.reliability_source.items()),
        sorted(study.reliability_credibility.items()),
        tuple((h.id, round(h.prior_probability, 12), sorted(h.priors.items())) for h in study.hypotheses),
    )


@dataclass(frozen=True)
class FittedRun:
    path: Path
    summary: dict
    manifest: dict

    @property
    def created(self) -> str:
        return self.manifest.get("created", "")

    @property
    def converged(self) -> bool:
        return bool(self.summary.get("converged"))

    def posterior_probabilities(self) -> dict[str, float]:
        return {h["id"]: float(h["posterior_probability"]) for h in self.summary["hypotheses"]}


def fitted_run(root: Path, study: Study, obs: Observations) -> FittedRun:
    """The study's latest run, checked to have been fitted on these observations and this model."""
    run = latest_run(root, study.name)
    summary = load_summary(run)
    try:
        manifest = json.loads((run / MANIFEST).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise RunStoreError(f"{run}: unreadable {MANIFEST} ({e}); run `forecast update` again") from None
    stale = []
    if manifest.get("observations", {}).get("sha256") != obs.sha256:
        stale.append(f"the observations in {obs.path.name} have changed")
    try:
        fitted = load_study(run / "study.toml")
        if _fitting_content(fitted) != _fitting_content(study):
            stale.append("the study's model (time, groups, domains, reliability or hypotheses) has changed")
    except StudyError:
        stale.append("its copy of the study file no longer validates")
    if stale:
        raise RunStoreError(
            f"the latest run {run} does not match the current inputs: {'; '.join(stale)}. "
            "Run `forecast update` to fit them first."
        )
    return FittedRun(run, summary, manifest)


def load_posterior_arrays(run: Path, study: Study, hypothesis: str) -> dict[str, np.ndarray]:
    import xarray as xr

    path = Path(run) / POSTERIOR_DIR / f"{hypothesis}.nc"
    if not path.is_file():
        raise RunStoreError(f"{run}: no posterior for hypothesis '{hypothesis}' ({path.name}); run `forecast update`")
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return draws_as_arrays(tree["posterior"].to_dataset().load(), study)


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
        return json_safe(d)


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
    import time

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
    root = runs_root or study.runs_path or default_root()
    run = fitted_run(root, study, obs)
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
    probs = run.posterior_probabilities()
    preds: dict[str, Predictive] = {}
    for h in study.hypotheses:
        arrays = load_posterior_arrays(run.path, study, h.id)
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
        written = str(write_run_json(run.path, FORECASTS, result.to_dict()))
    return PredictResult(**{**result.__dict__, "written": written, "timings": {"total_s": time.perf_counter() - t0}})


def _parse_quarter(text: str, option: str) -> int:
    from forecast.spec.study import quarter_index

    try:
        return quarter_index(text.strip())
    except ValueError:
        raise InputError(f"{option}: '{text}' is not a quarter like '2026Q1'") from None


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def render_predict(result: PredictResult) -> str:
    """The forecasts as text: BMA shares with 90% intervals, questions, the top milestones."""
    d = result.to_dict()
    lines = []
    if not result.converged:
        lines += ["!" * 80, "WARNING: " + UNRELIABLE + "; every figure below is UNRELIABLE.", "!" * 80, ""]
    probs = ", ".join(f"{h['label']} {h['posterior_probability']:.2f}" for h in d["hypotheses"])
    lines += [
        f"Study '{result.study}': forecasts from run {Path(result.run_dir).name} (data to {result.data_cutoff}), "
        f"averaged over hypotheses ({probs})",
        "",
        "Expected share of cooperative interactions, with its 90% interval (expected events per quarter):",
    ]
    quarters = d["quarters"]
    head = f"{'group':<12} {'domain':<12} {'events':>6}  " + "  ".join(f"{q:^17}" for q in quarters)
    lines += [head, "-" * len(head)]
    by_cell: dict[tuple[str, str], dict[str, dict]] = {}
    for row in result.forecasts:
        by_cell.setdefault((row["group"], row["domain"]), {})[row["quarter"]] = row
    for (g, dom), rows in by_cell.items():
        first = next(iter(rows.values()))
        cells = []
        for q in quarters:
            r = rows[q]
            lo, hi = r["interval_90"]
            cells.append(f"{_pct(r['mean']):>4} ({_pct(lo)}-{_pct(hi)})".center(17))
        lines.append(f"{g[:12]:<12} {dom[:12]:<12} {first['expected_events']:>6.2f}  " + "  ".join(cells))
    if result.questions:
        lines += ["", "Questions (probability averaged over hypotheses; per hypothesis in brackets):"]
        for qf in result.questions:
            q = qf.question
            per = ", ".join(f"{h} {p:.2f}" for h, p in qf.by_hypothesis.items())
            void = f"; void (no events) with probability {qf.probability_void:.2f}" if qf.probability_void else ""
            lines.append(f"  {q.id}: {qf.probability:.2f} [{per}]{void}")
            lines.append(f"    {q.text} (resolves {q.resolves})")
    if result.leading:
        lines += [
            "",
            f"Milestones for {quarter_label(result.origin + 1)}: where one more quarter of observations is expected to "
            f"move the log Bayes factor '{result.leading[0]}' vs '{result.leading[1]}' most:",
            f"  {'group':<12} {'domain':<12} {'E|dlogBF|':>9} {'info (nats)':>11} {'per event':>9} "
            f"{'if coop':>8} {'if confl':>8}",
        ]
        for m in result.milestones[:10]:
            lines.append(
                f"  {m.group[:12]:<12} {m.domain[:12]:<12} {m.expected_abs_log_bf_change:>9.3f} "
                f"{m.expected_information_gain:>11.4f} {m.abs_log_bf_change_per_event:>9.3f} "
                f"{m.log_bf_if_cooperative:>+8.2f} {m.log_bf_if_conflictual:>+8.2f}"
            )
    if result.written:
        lines += ["", f"Forecasts written to {result.written}"]
    return "\n".join(lines)


# --- score ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreResult:
    study: str
    today: str
    data_cutoff: str | None
    questions: list[dict]
    written: str | None = None

    @property
    def scored(self) -> list[dict]:
        return [q for q in self.questions if q["status"] == "scored"]

    def to_dict(self) -> dict:
        scored = self.scored
        d = {
            "schema_version": RESULTS_SCHEMA,
            "study": self.study,
            "today": self.today,
            "data_cutoff": self.data_cutoff,
            "n_scored": len(scored),
            "mean_brier": float(np.mean([q["brier"] for q in scored])) if scored else None,
            "mean_log_score": float(np.mean([q["log_score"] for q in scored])) if scored else None,
            "questions": self.questions,
            "written": self.written,
        }
        return json_safe(d)


def resolve_question(question: Question, table) -> bool | None:
    """The outcome of a question on the observations (None: void, no event in a share question's cell)."""
    t = distinct_events(table)
    cell = t[(t["group"] == question.group) & (t["domain"] == question.domain) & (t["quarter"] == question.quarter)]
    return question.outcome(len(cell), int(cell["cooperative"].sum()))


def _stored_forecasts(study_dir: Path) -> list[dict]:
    """Every question forecast stored in the study's runs, with the run and issue time."""
    out = []
    if not study_dir.is_dir():
        return out
    for run in sorted(p for p in study_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        path = run / FORECASTS
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise RunStoreError(f"{path}: unreadable ({e})") from None
        if data.get("schema_version") != RESULTS_SCHEMA:
            raise RunStoreError(f"{path}: forecasts schema {data.get('schema_version')!r}, expected {RESULTS_SCHEMA}")
        for q in data.get("questions", []):
            out.append({"run_dir": str(run), "issued": data["issued"], "forecast": q})
    return out


def run_score(
    study_path: str | Path,
    *,
    runs_root: Path | None = None,
    write: bool = True,
    today: dt.date | None = None,
) -> ScoreResult:
    """Score every registered question whose resolution date has passed, with the last forecast
    issued before it resolved, against the observations now in the data file."""
    today = today or dt.date.today()
    study = load_study(study_path)
    current = {q.id: q for q in load_questions(study, today=today)}
    obs = load_observations(study, today=today)
    root = runs_root or study.runs_path or default_root()
    latest = latest_run(root, study.name)
    cutoff = data_cutoff(obs) if obs.n else None
    stored = _stored_forecasts(latest.parent)
    groups, domains = {g.id for g in study.groups}, {d.id for d in study.domains}
    by_id: dict[str, list[dict]] = {}
    for rec in stored:
        by_id.setdefault(rec["forecast"]["id"], []).append(rec)
    rows = []
    for qid in sorted(set(by_id) | set(current)):
        recs = by_id.get(qid, [])
        spec = Question.from_dict(recs[-1]["forecast"]) if recs else current[qid]
        row = {**spec.to_dict(), "status": "", "probability": None, "issued": None, "run_dir": None}
        before = [r for r in recs if dt.datetime.fromisoformat(r["issued"]).date() < spec.resolves]
        if before:
            chosen = max(before, key=lambda r: r["issued"])
            spec = Question.from_dict(chosen["forecast"])
            row.update(spec.to_dict())
            row.update(
                probability=float(chosen["forecast"]["probability"]),
                issued=chosen["issued"],
                run_dir=chosen["run_dir"],
                lead_days=(spec.resolves - dt.datetime.fromisoformat(chosen["issued"]).date()).days,
            )
        if qid in current and current[qid].to_dict() != spec.to_dict():
            row["changed_since_forecast"] = True
        if not spec.resolved_by(today):
            row["status"] = "open"
        elif not before:
            row["status"] = "no forecast before resolution" if recs else "never forecast"
        elif spec.group not in groups or spec.domain not in domains:
            row["status"] = "unknown cell (the study no longer has this group or domain)"
        elif spec.quarter > study.time.end or cutoff is None or cutoff < quarter_end(spec.quarter):
            row["status"] = (
                f"awaiting data (observations run to {cutoff}; code the events of {spec.quarter_label}"
                + (", and extend time.end to cover it" if spec.quarter > study.time.end else "")
                + ")"
            )
        else:
            outcome = resolve_question(spec, obs.table)
            if outcome is None:
                row.update(status="void (no event in the cell that quarter)", outcome=None)
            else:
                p = row["probability"]
                row.update(
                    status="scored",
                    outcome=outcome,
                    brier=float((p - outcome) ** 2),
                    log_score=float(log_probability(np.array([p]), np.array([outcome]))[0]),
                )
        rows.append(row)
    scored = sorted((r for r in rows if r["status"] == "scored"), key=lambda r: (r["resolves"], r["id"]))
    for r, b, lg in zip(
        scored,
        running_mean(np.array([r["brier"] for r in scored])),
        running_mean(np.array([r["log_score"] for r in scored])),
        strict=True,
    ):
        r["running_brier"], r["running_log_score"] = float(b), float(lg)
    order = {id(r): i for i, r in enumerate(scored)}
    rows.sort(key=lambda r: (0, order[id(r)]) if id(r) in order else (1, r["resolves"], r["id"]))
    result = ScoreResult(study.name, today.isoformat(), cutoff.isoformat() if cutoff else None, rows)
    if write:
        path = write_run_json(latest, SCORES, result.to_dict())
        result = ScoreResult(**{**result.__dict__, "written": str(path)})
    return result


def render_score(result: ScoreResult) -> str:
    d = result.to_dict()
    lines = [f"Study '{result.study}': {d['n_scored']} question(s) scored on the observations to {result.data_cutoff}"]
    if not result.questions:
        lines.append("No questions registered ([[questions]] in the study file) and no stored forecasts.")
    for r in result.questions:
        if r["status"] == "scored":
            lines.append(
                f"  {r['id']}: forecast {r['probability']:.2f}, outcome {'yes' if r['outcome'] else 'no'}; "
                f"Brier {r['brier']:.3f}, log score {r['log_score']:.3f} (running {r['running_brier']:.3f}, "
                f"{r['running_log_score']:.3f})"
            )
        else:
            lines.append(f"  {r['id']}: {r['status']}")
    if d["n_scored"]:
        lines.append(f"Average: Brier {d['mean_brier']:.3f}, log score {d['mean_log_score']:.3f}")
    if result.written:
        lines.append(f"Scores written to {result.written}")
    return "\n".join(lines)
