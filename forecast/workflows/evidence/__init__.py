"""`forecast evidence`: which observations drive the conclusion, and what if one of them is wrong.

Reads the study's latest run (posterior draws and log marginal likelihoods) and, for every
observation:

- *diagnosticity*: its leave-one-out log predictive density under each hypothesis,
  log p(y_i | y_-i, H), and the differences between hypotheses (log predictive likelihood
  ratios). The larger the spread between hypotheses, the more diagnostic the item (ACH).
- *critical items* (ACH step 6, "what if this evidence is wrong?"): the posterior probability of
  each hypothesis if the observation were removed, or its outcome reversed. Without refitting:

      log p(y_-i | H)       = log p(y | H) - log p(y_i | y_-i, H)
      log p(y_-i, y'_i | H) = log p(y_-i | H) + log p(y'_i | y_-i, H)

  with both predictive densities estimated by Pareto-smoothed importance sampling from the
  posterior draws (the same weights as PSIS-LOO). Where the Pareto k of those weights is above
  min(1 - 1/log10(S), 0.7) the estimate is unreliable, and the hypothesis is refitted on the
  changed data instead (bridge sampling on the refit), up to a budget of refits.
- *evidence quality*: the same, with every observation of reliability weight below a threshold
  dropped at once.

Corroboration (see ``forecast.data.cells``): reports of one event count once, through the report
with the highest weight. Removing or reversing a report that is not counted changes nothing;
removing the counted report lets the next-best report of the same event count instead. Event
membership is fixed by the full file, so removing a report never splits its event.

Every change of the data is expressed as the terms of the likelihood it removes and adds, so
one importance-sampling estimator serves removals, reversals and quality filters:

    log p(y') - log p(y) = -log E_w[exp(L_removed)] + log E_w[exp(L_added)],

where E_w is the PSIS-weighted mean over posterior draws with weights exp(-L_removed).

Constraint hypotheses (a study's ``[[constraint_hypotheses]]``): each observation's and each
evidence group's influence on their probabilities, by PSIS reweighting of the run's stored
encompassing fit, in ``EvidenceResult.constraints`` (``constraints``), apart from the above.

Modules: ``records`` (the typed result records), ``statistics`` (likelihood terms, importance
sampling, diagnosticity: pure functions of draws), ``context`` (a run read with the draws evidence
needs), ``scenarios`` (each changed data set: its estimate, refit and posterior), ``constraints`` (the
constraint hypotheses' what-ifs), ``run`` (the orchestration: ``run_evidence``).
"""

from forecast.workflows.evidence.context import (
    RunContext,
    base_posterior,
    flatten_origins,
    load_run,
    posterior_with_se,
)
from forecast.workflows.evidence.records import (
    CorroboratedEvent,
    Corroboration,
    EvidenceResult,
    ObservationEvidence,
    QualityCheck,
    ScenarioOutcome,
)
from forecast.workflows.evidence.run import (
    CORROBORATION_RULE,
    DEFAULT_MAX_REFITS,
    DEFAULT_SHIFT,
    MIN_FREE_BYTES,
    UNRELIABLE_RUN,
    run_evidence,
)
from forecast.workflows.evidence.scenarios import (
    Scenario,
    estimate,
    finish,
    item_scenarios,
    quality_scenario,
    refit_log_ml,
    refit_unreliable,
)
from forecast.workflows.evidence.statistics import (
    Change,
    Term,
    change_of_log_ml,
    diagnosticity,
    pattern_terms,
    psis_weights,
    term_loglik,
    terms,
)

__all__ = [
    "CORROBORATION_RULE",
    "DEFAULT_MAX_REFITS",
    "DEFAULT_SHIFT",
    "MIN_FREE_BYTES",
    "UNRELIABLE_RUN",
    "Change",
    "CorroboratedEvent",
    "Corroboration",
    "EvidenceResult",
    "ObservationEvidence",
    "QualityCheck",
    "RunContext",
    "Scenario",
    "ScenarioOutcome",
    "Term",
    "base_posterior",
    "change_of_log_ml",
    "diagnosticity",
    "estimate",
    "finish",
    "flatten_origins",
    "item_scenarios",
    "load_run",
    "pattern_terms",
    "posterior_with_se",
    "psis_weights",
    "quality_scenario",
    "refit_log_ml",
    "refit_unreliable",
    "run_evidence",
    "term_loglik",
    "terms",
]
