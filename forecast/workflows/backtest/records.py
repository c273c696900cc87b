"""What `forecast backtest` returns: scores, coverage, calibration, questions, LFO, per-origin fits.

``BacktestResult.to_dict()`` is the ``--json`` object and the content of ``backtest.json``;
``forecast.reports.text.backtest`` renders the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from forecast.fit.sampler import Diagnostics, SamplerSettings
from forecast.runs.layout import RESULTS_SCHEMA
from forecast.runs.store import jsonable
from forecast.spec.study import quarter_label

BMA = "bma"
BASELINES = ("base_rate", "last_quarter")
UNRELIABLE = "UNRELIABLE: at least one backtest fit failed its convergence checks"


@dataclass(frozen=True)
class Score:
    """A forecaster's mean log score (higher is better) and Brier score (lower is better); as a
    skill, ``1 - score / baseline's`` of each (> 0 beats the baseline)."""

    log_score: float
    brier: float

    def to_dict(self) -> dict:
        return {"log_score": self.log_score, "brier": self.brier}


@dataclass(frozen=True)
class Skill:
    """A forecaster's skill against each baseline."""

    base_rate: Score
    last_quarter: Score

    def to_dict(self) -> dict:
        return {"base_rate": self.base_rate.to_dict(), "last_quarter": self.last_quarter.to_dict()}


@dataclass(frozen=True)
class Scores:
    """Every forecaster's scores on one set of events (all, one horizon, or one cell)."""

    by_forecaster: dict[str, Score]
    n_events: int
    weight: float  # total reliability weight of the events

    def __getitem__(self, forecaster: str) -> Score:
        return self.by_forecaster[forecaster]

    def to_dict(self) -> dict:
        return {f: s.to_dict() for f, s in self.by_forecaster.items()} | {
            "n_events": self.n_events,
            "weight": self.weight,
        }


@dataclass(frozen=True)
class CellScores:
    group: str
    domain: str
    scores: Scores
    skill: dict[str, Skill]  # hypothesis or BMA -> skill

    def to_dict(self) -> dict:
        return {
            "group": self.group,
            "domain": self.domain,
            **self.scores.to_dict(),
            "skill": {f: s.to_dict() for f, s in self.skill.items()},
        }


@dataclass(frozen=True)
class ScoreSummary:
    """The event scores: overall, by horizon (quarters ahead) and by (group, domain)."""

    overall: Scores | None  # None when no event fell in a forecast quarter
    skill: dict[str, Skill] | None
    by_horizon: dict[int, Scores] = field(default_factory=dict)
    by_cell: list[CellScores] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "overall": None if self.overall is None else self.overall.to_dict(),
            "skill": None if self.skill is None else {f: s.to_dict() for f, s in self.skill.items()},
            "by_horizon": {str(h): s.to_dict() for h, s in self.by_horizon.items()},
            "by_cell": [c.to_dict() for c in self.by_cell],
        }


@dataclass(frozen=True)
class Coverage:
    """How often the central 50% / 90% predictive intervals of a cell's cooperative count held it."""

    interval_50: float
    interval_90: float
    n_cells: int

    def to_dict(self) -> dict:
        return {"interval_50": self.interval_50, "interval_90": self.interval_90, "n_cells": self.n_cells}


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram (``forecast.stats.scoring.reliability_table``)."""

    bin: tuple[float, float]
    mean_forecast: float
    observed_frequency: float
    n: int
    weight: float

    @classmethod
    def from_row(cls, row: Mapping) -> ReliabilityBin:
        return cls(
            (row["bin"][0], row["bin"][1]), row["mean_forecast"], row["observed_frequency"], row["n"], row["weight"]
        )

    def to_dict(self) -> dict:
        return {
            "bin": list(self.bin),
            "mean_forecast": self.mean_forecast,
            "observed_frequency": self.observed_frequency,
            "n": self.n,
            "weight": self.weight,
        }


@dataclass(frozen=True)
class QuestionScores:
    """A registered question re-asked about every target quarter of every origin."""

    id: str
    text: str
    kind: str
    n_resolved: int
    base_rate_observed: float | None = None  # the rest only when a re-asked question resolved
    scores: dict[str, Score] | None = None
    skill: dict[str, Skill] | None = None

    def to_dict(self) -> dict:
        d = {"id": self.id, "text": self.text, "kind": self.kind, "n_resolved": self.n_resolved}
        if self.scores is not None:
            d.update(
                base_rate_observed=self.base_rate_observed,
                scores={f: s.to_dict() for f, s in self.scores.items()},
                skill={f: s.to_dict() for f, s in (self.skill or {}).items()},
            )
        return d


@dataclass(frozen=True)
class LfoHypothesis:
    """One hypothesis's (or the model average's) leave-future-out elpd, beside the run's PSIS-LOO."""

    id: str
    elpd_lfo: float
    se: float
    n_blocks: int
    pareto_k_max: float | None
    elpd_diff: float  # from the best hypothesis, paired over the same quarters
    elpd_diff_se: float
    elpd_loo: float | None = None  # from the run, when the backtest analysed one
    elpd_loo_se: float | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "elpd_lfo": self.elpd_lfo,
            "se": self.se,
            "n_blocks": self.n_blocks,
            "pareto_k_max": self.pareto_k_max,
            "elpd_diff": self.elpd_diff,
            "elpd_diff_se": self.elpd_diff_se,
            "elpd_loo": self.elpd_loo,
            "elpd_loo_se": self.elpd_loo_se,
        }


@dataclass(frozen=True)
class Lfo:
    method: str  # "exact" or "approx"
    pareto_k_refit: float | None
    hypotheses: list[LfoHypothesis]
    note: str | None = None

    def to_dict(self) -> dict:
        d = {
            "method": self.method,
            "pareto_k_refit": self.pareto_k_refit,
            "hypotheses": [h.to_dict() for h in self.hypotheses],
        }
        if self.note is not None:
            d["note"] = self.note
        return d


@dataclass(frozen=True)
class OriginResult:
    """What was known at one origin and what the fits there gave."""

    origin: int
    n_known: int
    posterior_probabilities: dict[str, float]
    fits: dict[str, OriginFit]

    def to_dict(self) -> dict:
        return {
            "origin": quarter_label(self.origin),
            "n_known": self.n_known,
            "posterior_probabilities": self.posterior_probabilities,
            "fits": {h: f.to_dict() for h, f in self.fits.items()},
        }


@dataclass(frozen=True)
class BacktestSettings:
    sampler: SamplerSettings
    lfo: str
    pareto_k_refit: float
    pool: str | None = None  # where the refits ran

    def to_dict(self) -> dict:
        d = {**self.sampler.to_dict(), "lfo": self.lfo, "pareto_k_refit": self.pareto_k_refit}
        if self.pool is not None:
            d["pool"] = self.pool
        return d


@dataclass(frozen=True)
class BacktestResult:
    study: str
    origins: list[int]
    horizon: int
    lfo_method: str
    converged: bool
    hypotheses: list[str]
    scores: ScoreSummary
    coverage: dict[str, Coverage]  # hypothesis or BMA -> coverage
    calibration: dict[str, list[ReliabilityBin]]  # BMA and the baselines -> reliability bins
    questions: list[QuestionScores]
    lfo: Lfo
    by_origin: list[OriginResult]
    settings: BacktestSettings
    data_cutoff: str
    run_dir: str | None = None
    written: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def forecasters(self) -> list[str]:
        return [*self.hypotheses, BMA, *BASELINES]

    def calibration_values(self) -> dict[str, list[dict]]:
        """The reliability bins as plain values (what ``backtest.json`` stores, what plots take)."""
        return {f: [b.to_dict() for b in bins] for f, bins in self.calibration.items()}

    def to_dict(self) -> dict:
        d = {
            "schema_version": RESULTS_SCHEMA,
            "study": self.study,
            "run_dir": self.run_dir,
            "data_cutoff": self.data_cutoff,
            "origins": [quarter_label(o) for o in self.origins],
            "horizon": self.horizon,
            "converged": self.converged,
            "hypotheses": self.hypotheses,
            "forecasters": self.forecasters,
            "scores": self.scores.to_dict(),
            "coverage": {f: c.to_dict() for f, c in self.coverage.items()},
            "calibration": self.calibration_values(),
            "questions": [q.to_dict() for q in self.questions],
            "lfo": self.lfo.to_dict(),
            "by_origin": [o.to_dict() for o in self.by_origin],
            "settings": self.settings.to_dict(),
            "written": self.written,
            "timings": self.timings,
        }
        if not self.converged:
            d["warning"] = UNRELIABLE
        return jsonable(d)


@dataclass(frozen=True)
class OriginFit:
    origin: int
    hypothesis: str
    refit: bool
    pareto_k: float | None
    log_ml: float
    log_ml_se: float
    diagnostics: Diagnostics | None

    def to_dict(self) -> dict:
        return {
            "refit": self.refit,
            "pareto_k": self.pareto_k,
            "log_marginal_likelihood": self.log_ml,
            "converged": None if self.diagnostics is None else self.diagnostics.converged,
            "problems": [] if self.diagnostics is None else list(self.diagnostics.problems),
        }
