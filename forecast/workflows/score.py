"""`forecast score`: score the forecast questions whose resolution date has passed.

Each registered question is judged with the last forecast `forecast predict` stored for it (in
any run of the study) before it resolved, against the observations now in the data file: Brier
and log score per question, and their running averages. The scores are written as
``scores.json`` into the study's latest run, which must match the current inputs (the one
staleness rule: after adding the observations that resolve a question, run `forecast update`
first, so the scores land in the run fitted on them).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.data.observations import load_observations
from forecast.model.predictive import distinct_events
from forecast.runs.layout import FORECASTS, RESULTS_SCHEMA, SCORES
from forecast.runs.store import default_root, jsonable
from forecast.runs.stored import StoredRun
from forecast.spec.questions import Question, load_questions, quarter_end
from forecast.spec.study import load_study
from forecast.stats.scoring import log_probability, running_mean
from forecast.workflows.predict import data_cutoff


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
        return jsonable(d)


def resolve_question(question: Question, table: pd.DataFrame) -> bool | None:
    """The outcome of a question on the observations (None: void, no event in a share question's cell)."""
    t = distinct_events(table)
    cell = t[(t["group"] == question.group) & (t["domain"] == question.domain) & (t["quarter"] == question.quarter)]
    return question.outcome(len(cell), int(cell["cooperative"].sum()))


def stored_forecasts(study_dir: Path) -> list[dict]:
    """Every question forecast stored in the study's runs, with the run and issue time."""
    out = []
    if not study_dir.is_dir():
        return out
    for path in sorted(p for p in study_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (path / FORECASTS).is_file():
            continue
        data = StoredRun.open(path).read_json(FORECASTS, RESULTS_SCHEMA) or {}
        for q in data.get("questions", []):
            out.append({"run_dir": str(path), "issued": data["issued"], "forecast": q})
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
    latest = StoredRun.find(study=study, runs_root=runs_root or study.runs_path or default_root())
    latest.check_inputs(study, obs.sha256)
    cutoff = data_cutoff(obs) if obs.n else None
    stored = stored_forecasts(latest.path.parent)
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
        path = latest.write_json(SCORES, result.to_dict())
        result = replace(result, written=str(path))
    return result
