"""`forecast calibrate`: simulation-based calibration of the hypothesis test itself.

Following Schad, Nicenboim, Bürkner, Betancourt & Vasishth (2023, "Workflow techniques for the
robust use of Bayes factors"), the whole pipeline of `forecast update` is run on data sets whose
truth is known:

1. draw a hypothesis H from the study's prior probabilities, and parameters from H's prior;
2. simulate a data set of the study's size and shape (``forecast.workflows.simulate``);
3. fit every hypothesis, estimate each log marginal likelihood by bridge sampling, and compute
   the posterior probabilities, exactly as `forecast update` does (convergence gate included).

If the computation is right, the posterior probabilities are calibrated, whatever the priors:

- *data-averaged posterior*: the average of P(H | y) over the simulated data sets equals the
  prior probability P(H) (checked per hypothesis with its Monte Carlo standard error; averaged
  within each true hypothesis and weighted by the prior, which removes the noise of how often
  each hypothesis happened to be drawn);
- *calibration*: among data sets where the tool says P(H | y) = p, H is true a fraction p of the
  time (binned, each bin with the band exact calibration allows);
- *Brier check*: the mean of sum_H (1{H true} - P(H | y))^2 - P(H | y) (1 - P(H | y)) is zero
  in expectation; over-confident probabilities make it positive, timid ones negative.

The same runs give a *design analysis*: how often, at the study's current data size, the tool
puts the most probability on the true hypothesis, how often it is decisive (P >= 0.9 for the
true one) and how often misleading (P >= 0.9 for a false one).

A verdict needs enough data sets: below ``MIN_DATASETS`` the checks are shown but the answer is
"too few data sets to judge". With every verdict comes the power of the check at that number of
data sets, computed from the Monte Carlo errors of the checks themselves: the smallest
miscalibration, in probability points, that it would detect with probability ``POWER`` at the
band level (for a normal test statistic, a true shift of (z_band + z_power) standard errors).

The data sets are independent, so they are fanned out over worker processes (or a Dask
cluster) through ``forecast.fit.pool.open_pool``; each data set gets the model `forecast update`
would build for it (its own centring), compiled once per process and structure and refitted with
new data (``StudyModel.fit(..., cells=...)``). A line per finished data set, with an estimate of
the time left, goes to ``progress``.

A study with constraint hypotheses (forecast.spec.constraints) has its constraint comparison
calibrated the same way on its own data sets (``constraints``): the truth is a constraint
hypothesis and parameters from the encompassing prior restricted to its region, and each data set
needs ONE encompassing fit whatever the number of hypotheses; its checks are reported apart
(``CalibrationResult.constraints``, ``calibration.json``'s ``"constraints"``). ``comparison``
chooses "prior", "constraints" or "both" (default: every comparison the study has).

Modules: ``replicates`` (one simulated data set and the full update on it: the worker entry
point), ``checks`` (the calibration checks, their power and the design analysis: pure functions
of the replicates), ``records`` (the typed result records), ``run`` (the orchestration:
``run_calibration``), ``constraints`` (the constraint comparison's data sets).
"""

from forecast.workflows.calibrate.checks import (
    BAND_LEVEL,
    CONSISTENT,
    DECISIVE,
    DEFAULT_BINS,
    MIN_DATASETS,
    NOT_CONSISTENT,
    POWER,
    TOO_FEW,
    calibration_checks,
    design_analysis,
    detectable_shift,
)
from forecast.workflows.calibrate.constraints import (
    MAX_CANDIDATES,
    ConstraintReplicate,
    ConstraintSetup,
    constraint_setup,
    restricted_draw,
    run_constraint_replicate,
    simulate_constraint_replicate,
)
from forecast.workflows.calibrate.records import (
    BinCheck,
    BrierCheck,
    CalibrationChecks,
    CalibrationResult,
    ConstraintCalibration,
    ConstraintReplicateResult,
    DesignAnalysis,
    MeanPosteriorCheck,
    PoolInfo,
    Power,
    RejectionInfo,
    ReplicateResult,
    TruthAnalysis,
)
from forecast.workflows.calibrate.replicates import (
    Replicate,
    design_table,
    replicate_seed,
    run_replicate,
    simulate_replicate,
)
from forecast.workflows.calibrate.run import COMPARISONS, MIN_FREE_BYTES, NO_RUN_FOLDER, run_calibration

__all__ = [
    "BAND_LEVEL",
    "COMPARISONS",
    "MAX_CANDIDATES",
    "CONSISTENT",
    "DECISIVE",
    "DEFAULT_BINS",
    "MIN_DATASETS",
    "MIN_FREE_BYTES",
    "NOT_CONSISTENT",
    "NO_RUN_FOLDER",
    "POWER",
    "TOO_FEW",
    "BinCheck",
    "BrierCheck",
    "CalibrationChecks",
    "CalibrationResult",
    "ConstraintCalibration",
    "ConstraintReplicate",
    "ConstraintReplicateResult",
    "ConstraintSetup",
    "DesignAnalysis",
    "MeanPosteriorCheck",
    "PoolInfo",
    "Power",
    "Replicate",
    "RejectionInfo",
    "ReplicateResult",
    "TruthAnalysis",
    "calibration_checks",
    "constraint_setup",
    "design_analysis",
    "design_table",
    "detectable_shift",
    "replicate_seed",
    "restricted_draw",
    "run_calibration",
    "run_constraint_replicate",
    "run_replicate",
    "simulate_constraint_replicate",
    "simulate_replicate",
]
