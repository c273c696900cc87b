"""Forecast questions: what an analyst wants a probability for, stated so that it can be scored.

A question names one cell of the study's grid (a counterpart group, a domain and a quarter) and
what would make it come true, judged on the coded observations once the quarter has passed:

- ``share_above`` / ``share_below``: the share of cooperative interactions among the cell's
  events in that quarter is above / below ``threshold`` (raw event counts; a quarter without
  any event in the cell leaves the question void, so it is not scored);
- ``any_conflictual`` / ``any_cooperative``: at least one conflictual / cooperative event in the
  cell in that quarter.

Questions are ``[[questions]]`` tables in the study file. The study schema keeps them as raw
tables; this module checks them against the resolved study (strict keys, known groups and
domains, parseable dates and quarters, a resolution date after the creation date) and reports
every problem at once, each with its question's index and id.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict

from forecast.errors import StudyError, allowed_list, did_you_mean
from forecast.spec.priors import shown
from forecast.spec.study import ID_RULE, MAX_ID_LENGTH, Study, quarter_index, quarter_label

KINDS = ("share_above", "share_below", "any_conflictual", "any_cooperative")
SHARE_KINDS = ("share_above", "share_below")
_ID = re.compile(rf"[a-z][a-z0-9_]{{0,{MAX_ID_LENGTH - 1}}}")


class _QuestionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)

    id: str
    text: str
    group: str
    domain: str
    quarter: str
    kind: Literal["share_above", "share_below", "any_conflictual", "any_cooperative"]
    threshold: float | None = None
    created: dt.date
    resolves: dt.date | None = None


@dataclass(frozen=True)
class Question:
    """A validated forecast question (``quarter`` counts quarters as ``study.quarter_index``)."""

    id: str
    text: str
    group: str
    domain: str
    quarter: int
    kind: str
    threshold: float | None
    created: dt.date
    resolves: dt.date

    @property
    def quarter_label(self) -> str:
        return quarter_label(self.quarter)

    def at_quarter(self, quarter: int) -> Question:
        """The same question asked about another quarter (for backtests)."""
        return replace(self, quarter=quarter, resolves=quarter_end(quarter))

    def resolved_by(self, today: dt.date) -> bool:
        return self.resolves < today

    def outcome(self, n_events: int, n_cooperative: int) -> bool | None:
        """Whether the question came true, given its cell's events that quarter (None: void)."""
        if self.kind == "any_conflictual":
            return n_events > n_cooperative
        if self.kind == "any_cooperative":
            return n_cooperative > 0
        if n_events == 0:
            return None
        share = n_cooperative / n_events
        return share > self.threshold if self.kind == "share_above" else share < self.threshold

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "text": self.text,
            "group": self.group,
            "domain": self.domain,
            "quarter": self.quarter_label,
            "kind": self.kind,
            "threshold": self.threshold,
            "created": self.created.isoformat(),
            "resolves": self.resolves.isoformat(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Question:
        """Read back a question stored by ``to_dict`` (e.g. in forecasts.json)."""
        return cls(
            id=d["id"],
            text=d["text"],
            group=d["group"],
            domain=d["domain"],
            quarter=quarter_index(d["quarter"]),
            kind=d["kind"],
            threshold=d.get("threshold"),
            created=dt.date.fromisoformat(d["created"]),
            resolves=dt.date.fromisoformat(d["resolves"]),
        )


def quarter_start(quarter: int) -> dt.date:
    return dt.date(quarter // 4, 3 * (quarter % 4) + 1, 1)


def quarter_end(quarter: int) -> dt.date:
    return quarter_start(quarter + 1) - dt.timedelta(days=1)


def quarter_of(date: dt.date) -> int:
    return date.year * 4 + (date.month - 1) // 3


def load_questions(study: Study, *, today: dt.date | None = None) -> tuple[Question, ...]:
    """Check the study's ``[[questions]]`` tables; raise StudyError listing every problem."""
    today = today or dt.date.today()
    problems: list[str] = []
    out: list[Question] = []
    seen: set[str] = set()
    groups = [g.id for g in study.groups]
    domains = [d.id for d in study.domains]
    allowed_keys = list(_QuestionSpec.model_fields)
    for i, raw in enumerate(study.questions_raw):
        qid = raw.get("id") if isinstance(raw, dict) else None
        where = f"questions[{i}]" + (f" ({shown(qid)})" if isinstance(qid, str) else "")
        if not isinstance(raw, dict):
            problems.append(f"{where}: expected a table ([[questions]]), got {type(raw).__name__}")
            continue
        try:
            spec = _QuestionSpec.model_validate(raw)
        except pydantic.ValidationError as e:
            for err in e.errors():
                key = ".".join(str(p) if re.fullmatch(r"\w{1,64}", str(p)) else shown(str(p)) for p in err["loc"])
                if err["type"] == "extra_forbidden":
                    problems.append(
                        f"{where}.{key}: unknown key{did_you_mean(key, allowed_keys)}; "
                        f"allowed: {allowed_list(allowed_keys)}"
                    )
                elif err["type"] == "missing":
                    problems.append(f"{where}.{key}: required key is missing")
                elif key == "kind":
                    problems.append(
                        f"{where}.kind: {shown(err.get('input'))} is not a question kind"
                        f"{did_you_mean(str(err.get('input')), KINDS)}; allowed: {allowed_list(KINDS)}"
                    )
                elif key in ("created", "resolves"):
                    problems.append(
                        f"{where}.{key}: {shown(err.get('input'))} is not a date like 2026-11-27 (YYYY-MM-DD)"
                    )
                else:
                    problems.append(f"{where}.{key}: {err['msg']} (got {shown(err.get('input'))})")
            continue
        n_before = len(problems)
        if not _ID.fullmatch(spec.id):
            problems.append(f"{where}.id: {shown(spec.id)} {ID_RULE}")
        if spec.id in seen:
            problems.append(f"{where}.id: {shown(spec.id)} is used by an earlier question")
        seen.add(spec.id)
        if not spec.text.strip():
            problems.append(f"{where}.text: state the question in words")
        if spec.group not in groups:
            problems.append(
                f"{where}.group: unknown group {shown(spec.group)}{did_you_mean(spec.group, groups)}; "
                f"known: {allowed_list(groups)}"
            )
        if spec.domain not in domains:
            problems.append(
                f"{where}.domain: unknown domain {shown(spec.domain)}{did_you_mean(spec.domain, domains)}; "
                f"known: {allowed_list(domains)}"
            )
        quarter = None
        try:
            quarter = quarter_index(spec.quarter)
        except ValueError:
            problems.append(f"{where}.quarter: {shown(spec.quarter)} is not a quarter like '2027Q1'")
        if quarter is not None and quarter < study.time.start:
            problems.append(
                f"{where}.quarter: {spec.quarter} is before the study's first quarter {quarter_label(study.time.start)}"
            )
        if spec.kind in SHARE_KINDS:
            if spec.threshold is None:
                problems.append(f"{where}.threshold: a '{spec.kind}' question needs a threshold share in (0, 1)")
            elif not 0 < spec.threshold < 1:
                problems.append(f"{where}.threshold: must lie strictly between 0 and 1, got {spec.threshold}")
        elif spec.threshold is not None:
            problems.append(f"{where}.threshold: a '{spec.kind}' question has no threshold; remove it")
        if spec.created > today:
            problems.append(f"{where}.created: {spec.created} is in the future (today is {today.isoformat()})")
        resolves = spec.resolves
        if quarter is not None:
            end = quarter_end(quarter)
            if resolves is None:
                resolves = end
            elif resolves < end:
                problems.append(
                    f"{where}.resolves: {resolves} is before the end of {spec.quarter} ({end}); "
                    "a question resolves when its quarter is over (or later, to allow for late reports)"
                )
            if resolves <= spec.created:
                problems.append(
                    f"{where}: resolves on {resolves}, on or before it was created ({spec.created}); "
                    "a question must be asked before its outcome is known"
                )
        if len(problems) == n_before and quarter is not None and resolves is not None:
            out.append(
                Question(
                    id=spec.id,
                    text=" ".join(spec.text.split()),
                    group=spec.group,
                    domain=spec.domain,
                    quarter=quarter,
                    kind=spec.kind,
                    threshold=spec.threshold,
                    created=spec.created,
                    resolves=resolves,
                )
            )
    if problems:
        raise StudyError(problems, heading=f"{study.path}: the forecast questions have problems")
    return tuple(out)
