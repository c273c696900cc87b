"""What `forecast history` returns and stores: support per quarter, and what moved it per interval.

``History.to_dict()`` is the ``--json`` object and the content of a run's ``history.json``;
``History.from_dict`` reads it back (a file written before attributions existed reads with
``attribution`` None, one written before constraint hypotheses existed with ``constraints``
None). A study's constraint hypotheses are ``History.constraints`` (``ConstraintHistory``,
``history.json``'s ``"constraints"``), apart from the prior-specified ``points``; a study with
constraint hypotheses only has empty ``hypotheses`` and ``points``. ``forecast.reports.text.history`` renders the record and
``forecast.reports.plots.history`` draws it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from forecast.errors import RunStoreError
from forecast.runs.layout import HISTORY, HISTORY_SCHEMA
from forecast.runs.store import dumps

SOURCES = ("prior", "fit", "reused", "run")


@dataclass(frozen=True)
class HistoryPoint:
    """Support after the evidence known by the end of one quarter."""

    quarter: str  # e.g. "2019Q3"
    as_of: str  # the last day of the quarter (ISO date)
    n_observations: int  # observations known by then
    new_observations: int  # since the previous point
    source: str  # "prior" (no evidence yet), "fit", "reused" (no new evidence), "run" (the run's own fit)
    probabilities: dict[str, float]
    probabilities_se: dict[str, float]
    log_marginal_likelihood: dict[str, float | None]
    log_marginal_likelihood_se: dict[str, float | None]
    converged: bool
    problems: dict[str, list[str]] = field(default_factory=dict)  # hypothesis id -> problems

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EventContribution:
    """One event's share of a change of the log Bayes factor (natural log units; > 0 favours the
    attribution's first hypothesis): its sequential log predictive density under the first
    hypothesis minus that under the second, given everything known before it."""

    id: str
    event_date: str
    report_date: str
    counterpart: str
    domain: str
    outcome: str  # "cooperative" or "conflictual"
    description: str
    weight: float  # the reliability weight the likelihood gives it
    contribution: float
    interval: str  # the interval it was new in, "2019Q4..2020Q4"
    replaces: list[str] = field(default_factory=list)  # reports of the same event it supersedes
    count: int = 1  # events it stands for (> 1: a block of one counterpart, domain and outcome)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EventContribution:
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class IntervalAttribution:
    """The change of the log Bayes factor between two consecutive evaluated quarters, and the new
    events that made it.

    ``change`` is the difference of the bridge-sampled log marginal likelihoods (the numbers the
    probabilities come from); ``importance_change`` is the same change estimated by importance
    sampling from the fits' posterior draws, the sum of every new event's contribution. They agree
    within Monte Carlo error (``agreement_z`` standard errors apart). ``attributed`` is False when
    the Pareto k of the importance weights is above the threshold: then only the interval's
    total is reported.
    """

    start: str  # quarter label of the earlier point
    end: str
    start_date: str  # the evidence known by the end of these days
    end_date: str
    new_observations: int  # rows that became known (reports that do not count included)
    n_events: int  # events whose likelihood terms are new (or changed) in the interval
    log_bf_before: float | None
    log_bf_after: float | None
    change: float | None
    change_se: float | None
    importance_change: float | None
    importance_change_se: float | None
    agreement_z: float | None
    pareto_k: dict[str, float | None]  # hypothesis id -> the largest k of the weights used
    pareto_k_threshold: float
    from_earlier_fit: dict[str, int]  # hypothesis id -> events weighted from the earlier fit's draws
    attributed: bool
    note: str | None
    top_events: list[EventContribution]
    other_events: int  # events not among the top ones
    other_contribution: float | None  # their summed contribution

    @property
    def label(self) -> str:
        return f"{self.start}..{self.end}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["top_events"] = [e.to_dict() for e in self.top_events]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> IntervalAttribution:
        return cls(**{**_known(cls, d), "top_events": [EventContribution.from_dict(e) for e in d["top_events"]]})


@dataclass(frozen=True)
class Attribution:
    """What moved the log Bayes factor of the two hypotheses leading at the end (``hypotheses``,
    the leader first) over the window, interval by interval (see the package docstring)."""

    hypotheses: list[str]
    log_bf: float | None  # at the end, from the bridge estimates
    log_bf_se: float | None
    intervals: list[IntervalAttribution]
    top_events: list[EventContribution]  # the events that moved it most over the whole window
    attributed_change: float  # sum of the attributed intervals' importance-sampled changes
    unattributed_change: float | None  # sum of the other intervals' (bridge) changes

    @property
    def n_unattributed(self) -> int:
        return sum(not i.attributed for i in self.intervals)

    def to_dict(self) -> dict:
        return {
            "hypotheses": self.hypotheses,
            "log_bf": self.log_bf,
            "log_bf_se": self.log_bf_se,
            "attributed_change": self.attributed_change,
            "unattributed_change": self.unattributed_change,
            "n_unattributed": self.n_unattributed,
            "intervals": [i.to_dict() for i in self.intervals],
            "top_events": [e.to_dict() for e in self.top_events],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Attribution:
        return cls(
            **{
                **_known(cls, d),
                "intervals": [IntervalAttribution.from_dict(i) for i in d["intervals"]],
                "top_events": [EventContribution.from_dict(e) for e in d["top_events"]],
            }
        )


@dataclass(frozen=True)
class ConstraintPoint:
    """The constraint hypotheses' support after the evidence known by the end of one quarter.

    ``log_bf`` is each hypothesis's log Bayes factor against the encompassing model (0 at the
    prior point); ``bound`` is "upper" where its region held no posterior draw (``log_bf`` is then
    the log of an upper bound, and the probability counts as 0 with ``probabilities_upper`` its
    bound).
    """

    quarter: str
    as_of: str
    n_observations: int
    new_observations: int
    source: str  # "prior", "fit", "reused", "run" (the run's stored encompassing fit)
    probabilities: dict[str, float]
    probabilities_se: dict[str, float]
    probabilities_upper: dict[str, float]
    log_bf: dict[str, float]
    log_bf_se: dict[str, float]
    bound: dict[str, str | None]
    posterior_mass: dict[str, float]
    leader: str
    converged: bool
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0  # the encompassing fit and the evaluation of the regions at this point

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ConstraintPoint:
        return cls(**_known(cls, d))

    def as_history_point(self) -> HistoryPoint:
        """The point in the form the attribution reads: log Bayes factors against the encompassing
        model as log marginal likelihoods (they differ by a constant shared by every hypothesis);
        a bound is not a figure to attribute."""
        ids = list(self.probabilities)
        return HistoryPoint(
            quarter=self.quarter,
            as_of=self.as_of,
            n_observations=self.n_observations,
            new_observations=self.new_observations,
            source=self.source,
            probabilities=self.probabilities,
            probabilities_se=self.probabilities_se,
            log_marginal_likelihood={h: None if self.bound.get(h) else self.log_bf[h] for h in ids},
            log_marginal_likelihood_se={h: None if self.bound.get(h) else self.log_bf_se[h] for h in ids},
            converged=self.converged,
        )


@dataclass(frozen=True)
class ConstraintHistory:
    """The constraint comparison over time (``history.json``'s ``"constraints"``)."""

    hypotheses: list[dict]  # id, label, claim, constraints, complement, prior_probability
    prior_masses: dict[str, dict]  # hypothesis id -> Mass.to_dict(), estimated once
    prior_draws: int
    seed: int
    points: list[ConstraintPoint]
    seconds: float  # the constraint comparison's own cost: prior masses, encompassing fits, regions, attribution
    prior_mass_seconds: float
    method: str
    attribution: Attribution | None = None

    @property
    def converged(self) -> bool:
        return all(p.converged for p in self.points)

    @property
    def n_fitted(self) -> int:
        return sum(p.source == "fit" for p in self.points)

    @property
    def leader(self) -> str | None:
        return self.points[-1].leader if self.points else None

    def to_dict(self) -> dict:
        d = {
            "hypotheses": self.hypotheses,
            "prior_masses": self.prior_masses,
            "prior_draws": self.prior_draws,
            "seed": self.seed,
            "leader": self.leader,
            "converged": self.converged,
            "n_points": len(self.points),
            "n_fitted": self.n_fitted,
            "seconds": self.seconds,
            "prior_mass_seconds": self.prior_mass_seconds,
            "method": self.method,
            "points": [p.to_dict() for p in self.points],
        }
        if self.attribution is not None:
            d["attribution"] = self.attribution.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ConstraintHistory:
        return cls(
            hypotheses=d["hypotheses"],
            prior_masses=d["prior_masses"],
            prior_draws=d["prior_draws"],
            seed=d["seed"],
            points=[ConstraintPoint.from_dict(p) for p in d["points"]],
            seconds=d["seconds"],
            prior_mass_seconds=d.get("prior_mass_seconds", 0.0),
            method=d.get("method", ""),
            attribution=Attribution.from_dict(d["attribution"]) if d.get("attribution") else None,
        )


@dataclass(frozen=True)
class History:
    """Support over time, as stored in a run's ``history.json``.

    ``written`` is where it was stored (not part of the file; None when it was not stored).
    ``attribution`` is None when there are fewer than two hypotheses, or in a file written before
    attributions existed.
    """

    study: str
    hypotheses: list[dict]  # id, label, prior_probability
    every: int
    settings: dict
    points: list[HistoryPoint]
    seconds: float
    schema_version: int = HISTORY_SCHEMA
    written: str | None = None
    attribution: Attribution | None = None
    constraints: ConstraintHistory | None = None  # the constraint hypotheses, kept apart from ``points``

    @property
    def converged(self) -> bool:
        return all(p.converged for p in self.points) and (self.constraints is None or self.constraints.converged)

    @property
    def n_fitted(self) -> int:
        """Quarters refitted here (the run's own last point not counted)."""
        fitted = sum(p.source == "fit" for p in self.points)
        return max(fitted, self.constraints.n_fitted) if self.constraints is not None else fitted

    def to_dict(self) -> dict:
        d = {
            "schema_version": self.schema_version,
            "study": self.study,
            "hypotheses": self.hypotheses,
            "every": self.every,
            "settings": self.settings,
            "converged": self.converged,
            "n_points": len(self.points),
            "n_fitted": self.n_fitted,
            "seconds": self.seconds,
            "points": [p.to_dict() for p in self.points],
        }
        if self.attribution is not None:
            d["attribution"] = self.attribution.to_dict()
        if self.constraints is not None:
            d["constraints"] = self.constraints.to_dict()
        if self.written is not None:
            d["written"] = self.written
        return d

    @classmethod
    def from_dict(cls, d: dict) -> History:
        if d.get("schema_version") != HISTORY_SCHEMA:
            raise RunStoreError(
                f"{HISTORY} was written with history schema {d.get('schema_version')!r}; this forecast reads "
                f"schema {HISTORY_SCHEMA}. Recompute it with `forecast history`."
            )
        points = [HistoryPoint(**p) for p in d["points"]]
        attribution = Attribution.from_dict(d["attribution"]) if d.get("attribution") else None
        constraints = None
        if d.get("constraints"):
            constraints = ConstraintHistory.from_dict(d["constraints"])
        return cls(
            d["study"],
            d["hypotheses"],
            d["every"],
            d["settings"],
            points,
            d["seconds"],
            attribution=attribution,
            constraints=constraints,
        )


def history_json(history: History) -> str:
    """``history.json``'s text (strict JSON)."""
    return dumps(history.to_dict()) + "\n"


def load_history(run_dir: str | Path) -> History | None:
    """A run's stored history, or None if it has none; an unreadable one is a RunStoreError."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return None
    try:
        return History.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise RunStoreError(f"{path}: unreadable ({e}); recompute it with `forecast history`") from None


def _known(cls, d: dict) -> dict:
    """The entries of a stored object that ``cls`` has fields for (a later version may add more)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}
