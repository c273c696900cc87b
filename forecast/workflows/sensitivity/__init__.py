"""`forecast sensitivity`: would the conclusion change under other reasonable priors?

Three answers, all from the latest run of the study (its posterior draws and log marginal
likelihoods), so most of the work is importance sampling, not refitting:

1. **Power-scaling** (Kallioinen et al. 2024; ArviZ's ``psense_summary``): for each hypothesis
   and hyperparameter, how much the posterior moves when the hyperparameters' priors or the
   likelihood are raised to a power near 1. Prior and likelihood sensitivity both above 0.05
   flag a prior-data conflict; prior sensitivity alone flags a prior-dominated parameter.
   Only the priors a hypothesis states (tilt, spread, trend, volatility) are power-scaled; the
   standard-normal domain effects and random-walk steps are part of the model's structure.
2. **A perturbation grid**: every hypothesis's priors are shifted (real-valued
   hyperparameters: mu by ± ``shift`` prior standard deviations) and widened or narrowed (the
   scale multiplied or divided by ``scale``; for positive hyperparameters every quantile is
   scaled), one hyperparameter at a time and jointly. A variant differs from its base only in
   the prior, so with ``r = p_variant(θ) / p_base(θ)`` over the base posterior draws:
   ``log p_variant(y) - log p_base(y) = log E_post[r]`` and the variant's posterior is the
   base's reweighted by ``r``. Both are Pareto-smoothed (PSIS); where Pareto k exceeds
   ``min(1 - 1/log10(S), 0.7)`` the estimate is unreliable and the variant is refitted on the
   compiled model (fanned out by forecast.fit.pool). Each variant gives every hypothesis a
   posterior probability; the output is their ranges, a tornado plot and a verdict on whether
   the leading hypothesis leads in every variant.
3. **Prior odds**: the posterior probability of each hypothesis as a function of its prior
   probability (the others keep their relative prior odds), exact from the Bayes factors, and
   the prior probability at which the leading hypothesis changes.

The run is found and checked by the one rule (``StoredRun.check_inputs``); when no run matches
the current inputs, ``forecast update`` runs first and the result says why (``ran_update``).
Results go into that run: ``sensitivity.json`` and the two PNG plots, each written atomically.

Modules: ``grid`` (the strict grid schema and the variants), ``reweight`` (PSIS reweighting,
power-scaling, prior odds: pure functions), ``record`` (the summaries and ``SensitivityResult``),
``run`` (the orchestration).
"""

from forecast.workflows.sensitivity.grid import (
    GridSpec,
    SensitivitySpecError,
    Variant,
    build_grid,
    check_spec,
    grid_spec_from,
    parse_grid_spec,
    read_grid_file,
    scale_prior,
    shift_prior,
)
from forecast.workflows.sensitivity.record import SensitivityResult
from forecast.workflows.sensitivity.reweight import (
    Reweight,
    default_k_threshold,
    log_prior_ratio,
    power_scaling,
    prior_odds,
    psis_reweight,
)
from forecast.workflows.sensitivity.run import BaseRun, Plots, load_base, run_sensitivity

__all__ = [
    "BaseRun",
    "GridSpec",
    "Plots",
    "Reweight",
    "SensitivityResult",
    "SensitivitySpecError",
    "Variant",
    "build_grid",
    "check_spec",
    "default_k_threshold",
    "grid_spec_from",
    "load_base",
    "log_prior_ratio",
    "parse_grid_spec",
    "power_scaling",
    "prior_odds",
    "psis_reweight",
    "read_grid_file",
    "run_sensitivity",
    "scale_prior",
    "shift_prior",
]
