"""What `forecast evidence` returns: each observation's diagnosticity and what-ifs, quality, corroboration.

``EvidenceResult.to_dict()`` is the ``--json`` object and the content of ``evidence.json``;
``forecast.reports.text.evidence`` renders the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from forecast.runs.records import Record

if TYPE_CHECKING:
    from forecast.workflows.evidence.constraints import ConstraintEvidence


@dataclass(frozen=True)
class ScenarioOutcome(Record):
    """The conclusion on a changed data set (an item removed or reversed, or a quality filter)."""

    posterior_probability: dict[str, float]
    posterior_probability_se: dict[str, float]
    log_marginal_likelihood_change: dict[str, float]
    leading: str
    max_shift: float  # largest change of a posterior probability against the run's
    method: dict[str, str]  # per hypothesis: 'unchanged', 'psis', 'refit' or 'unreliable'
    pareto_k: dict[str, float | None]
    converged: bool

    @property
    def approximate(self) -> bool:
        """Refitted or unreliable for some hypothesis (flagged with * in the text)."""
        return any(m in ("refit", "unreliable") for m in self.method.values())


@dataclass(frozen=True)
class ObservationEvidence(Record):
    """One observation: how diagnostic it is, and the conclusion without it or with it reversed."""

    id: str
    event_date: str
    report_date: str
    counterpart: str
    domain: str
    outcome: str  # 'cooperative' or 'conflictual'
    reliability: str
    weight: float
    description: str
    counted: bool
    event: str  # the event it reports (its own id for a root report)
    corroborates: str | None
    elpd_loo: dict[str, float] | None  # None for a report that is not counted
    pareto_k: dict[str, float] | None
    diagnosticity: float
    favours: str | None
    disfavours: str | None
    log_predictive_ratio: dict[str, float]
    if_removed: ScenarioOutcome
    if_reversed: ScenarioOutcome
    changes_leading: tuple[str, ...]  # 'removed' and/or 'reversed'
    critical: bool
    rank: int = 0  # 1 = most diagnostic

    @property
    def max_shift(self) -> float:
        return max(self.if_removed.max_shift, self.if_reversed.max_shift)


@dataclass(frozen=True)
class QualityCheck:
    """The conclusion without every observation whose reliability weight is below a threshold."""

    reliability_below: float
    n_dropped: int
    dropped: tuple[str, ...]
    outcome: ScenarioOutcome
    changes_leading: bool

    def to_dict(self) -> dict:
        return {
            "reliability_below": self.reliability_below,
            "n_dropped": self.n_dropped,
            "dropped": list(self.dropped),
            **self.outcome.to_dict(),
            "changes_leading": self.changes_leading,
        }


@dataclass(frozen=True)
class CorroboratedEvent(Record):
    event: str
    reports: tuple[str, ...]
    counted: str  # the report through which the event counts


@dataclass(frozen=True)
class Corroboration(Record):
    n_events: int
    n_reports_not_counted: int
    rule: str
    events: tuple[CorroboratedEvent, ...]  # events with more than one report


@dataclass(frozen=True)
class EvidenceResult(Record):
    """What `forecast evidence` found: diagnosticity, critical items, evidence quality, corroboration."""

    _optional = ("written", "constraints")

    study: str
    run_dir: str
    hypotheses: tuple[str, ...]
    prior_probability: dict[str, float]
    posterior_probability: dict[str, float]
    leading: str | None  # None for a study with constraint hypotheses only
    n_observations: int
    n_counted: int
    shift_threshold: float
    pareto_k_threshold: float
    pareto_k_threshold_default: float
    n_refits: int
    n_unreliable: int  # PSIS estimates above the Pareto k threshold that were not refitted
    converged: bool
    critical: tuple[str, ...]  # ids, the most consequential first
    observations: tuple[ObservationEvidence, ...]  # the most diagnostic first
    corroboration: Corroboration
    quality: QualityCheck | None
    warnings: tuple[str, ...]
    timings: dict[str, float]
    written: str | None = None  # where evidence.json was written
    # The constraint hypotheses' evidence (forecast.workflows.evidence.constraints), kept apart.
    constraints: ConstraintEvidence | None = None

    def observation(self, ident: str) -> ObservationEvidence:
        for x in self.observations:
            if x.id == ident:
                return x
        raise KeyError(ident)
