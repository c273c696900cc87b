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
class RejectionInfo(Record):
    """How the parameters of one constraint hypothesis's data sets were drawn (by rejection)."""

    prior_mass: float  # the region's prior mass under the encompassing prior
    expected_candidates: float  # encompassing prior draws needed per accepted draw, on average (1 / mass)
    n_draws: int  # data sets drawn from this hypothesis
    candidates: int  # encompassing prior draws they took in all
    max_candidates: int  # the most one data set took


@dataclass(frozen=True)
class ConstraintReplicateResult(Record):
    index: int
    true: str
    posterior_probability: dict[str, float]
    log_bayes_factor: dict[str, float]  # against the encompassing model
    log_bayes_factor_se: dict[str, float]
    bound: dict[str, str | None]  # "upper" where no posterior draw fell inside the region
    posterior_mass: dict[str, float]
    n_cooperative: int
    candidates: int  # encompassing prior draws the rejection sampler took for this data set
    converged: bool
    problems: tuple[str, ...]
    seconds: float
    worker: str


@dataclass(frozen=True)
class ConstraintCalibration(Record):
    """The calibration of the constraint comparison (``calibration.json``'s ``"constraints"``).

    One encompassing fit per data set; the regions' prior masses estimated once.
    """

    _optional = ("warning",)

    hypotheses: tuple[str, ...]
    prior_probability: dict[str, float]
    prior_masses: dict[str, dict]  # hypothesis -> Mass.to_dict(), estimated once for every data set
    prior_draws: int
    rejection: dict[str, RejectionInfo]
    n_datasets: int
    converged: bool
    n_unconverged: int
    calibration: CalibrationChecks
    consistent: bool | None  # None: too few data sets to judge
    design_analysis: DesignAnalysis
    replicates: tuple[ConstraintReplicateResult, ...]
    timings: dict[str, float]
    method: str
    warning: str | None = None

    @property
    def verdict(self) -> str:
        return self.calibration.verdict


@dataclass(frozen=True)
class CalibrationResult(Record):
    """What `forecast calibrate` found, and where it was written.

    The prior-specified comparison's fields (``hypotheses`` ... ``replicates``) are None, and left
    out of the dict, when only the constraint comparison was calibrated; ``constraints`` is None
    when it was not. ``converged``, ``n_unconverged`` and ``consistent`` cover every comparison run.
    """

    _optional = (
        "hypotheses",
        "prior_probability",
        "calibration",
        "design_analysis",
        "replicates",
        "warning",
        "written",
        "note",
        "constraints",
    )

    study: str
    hypotheses: tuple[str, ...] | None = None
    prior_probability: dict[str, float] | None = None
    n_datasets: int = 0
    n_events: int = 0
    design: str = ""
    settings: dict | None = None
    pool: PoolInfo | None = None
    converged: bool = True
    n_unconverged: int = 0
    calibration: CalibrationChecks | None = None
    consistent: bool | None = None  # None: too few data sets to judge
    design_analysis: DesignAnalysis | None = None
    replicates: tuple[ReplicateResult, ...] | None = None
    timings: dict[str, float] | None = None
    warning: str | None = None
    written: str | None = None
    run_dir: str | None = None  # the run calibration.json was added to (None: no run matched)
    note: str | None = None  # why it is not in a run
    comparisons: tuple[str, ...] = ("prior",)  # which comparisons were calibrated: "prior", "constraints"
    constraints: ConstraintCalibration | None = None  # the constraint comparison's calibration

    @property
    def verdict(self) -> str:
        return (self.calibration or self.constraints.calibration).verdict
