"""What `forecast calibrate` returns: the checks, their power, the design analysis, each data set.

``CalibrationResult.to_dict()`` is the ``--json`` object and the content of ``calibration.json``;
``forecast.reports.text.calibrate`` renders the record.
"""

from __future__ import annotations

from dataclasses import dataclass

from forecast.runs.records import Record


@dataclass(frozen=True)
class MeanPosteriorCheck(Record):
    """The data-averaged posterior of one hypothesis against its prior probability."""

    prior: float
    mean_posterior: float
    se: float
    estimator: str
    plain_mean: float
    plain_se: float
    band_low: float  # the band exact calibration allows, clipped to [0, 1]
    band_high: float
    z: float
    within: bool
    fraction_true: float
    hypothesis: str
    detectable: float  # the smallest shift of the average it detects with probability POWER


@dataclass(frozen=True)
class BinCheck(Record):
    """One bin of stated probabilities: how often the hypothesis was true there."""

    _optional = ("mean_predicted", "observed", "band_low", "band_high", "within", "detectable")

    low: float
    high: float
    n: int
    mean_predicted: float | None = None  # the rest is None for an empty bin
    observed: float | None = None
    band_low: float | None = None  # clipped to [0, 1]
    band_high: float | None = None
    within: bool | None = None
    detectable: float | None = None  # the smallest gap it detects with probability POWER


@dataclass(frozen=True)
class BrierCheck(Record):
    statistic: float
    se: float
    z: float
    within: bool
    meaning: str


@dataclass(frozen=True)
class Power(Record):
    """What the checks could detect at this number of data sets (probabilities, not points)."""

    probability: float  # POWER
    band_level: float
    n_datasets: int
    mean_posterior: float  # largest over hypotheses of the shift of the average posterior detected
    bins: float | None  # smallest over non-empty bins of the gap detected (None: no bin with spread)


@dataclass(frozen=True)
class CalibrationChecks(Record):
    band_level: float
    mean_posterior: tuple[MeanPosteriorCheck, ...]
    bins: tuple[BinCheck, ...]
    brier: BrierCheck
    consistent: bool | None  # None: too few data sets to judge
    min_datasets: int
    verdict: str  # CONSISTENT, NOT_CONSISTENT or TOO_FEW
    power: Power


@dataclass(frozen=True)
class TruthAnalysis(Record):
    n: int
    picks_true: float | None
    decisive: float | None
    mean_posterior_of_true: float | None


@dataclass(frozen=True)
class DesignAnalysis(Record):
    picks_true: float
    decisive: float
    misleading: float
    decisive_threshold: float
    mean_posterior_of_true: float
    by_truth: dict[str, TruthAnalysis]


@dataclass(frozen=True)
class ReplicateResult(Record):
    index: int
    true: str
    posterior_probability: dict[str, float]
    log_marginal_likelihood: dict[str, float]
    log_marginal_likelihood_se: dict[str, float]
    n_cooperative: int
    converged: bool
    problems: tuple[str, ...]
    seconds: float
    worker: str


@dataclass(frozen=True)
class PoolInfo(Record):
    description: str
    workers: int


@dataclass(frozen=True)
class CalibrationResult(Record):
    """What `forecast calibrate` found, and where it was written."""

    _optional = ("warning", "written", "note")

    study: str
    hypotheses: tuple[str, ...]
    prior_probability: dict[str, float]
    n_datasets: int
    n_events: int
    design: str
    settings: dict
    pool: PoolInfo
    converged: bool
    n_unconverged: int
    calibration: CalibrationChecks
    consistent: bool | None  # None: too few data sets to judge
    design_analysis: DesignAnalysis
    replicates: tuple[ReplicateResult, ...]
    timings: dict[str, float]
    warning: str | None = None
    written: str | None = None
    run_dir: str | None = None  # the run calibration.json was added to (None: no run matched)
    note: str | None = None  # why it is not in a run

    @property
    def verdict(self) -> str:
        return self.calibration.verdict
