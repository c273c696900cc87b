"""`forecast history`: the posterior probability of each hypothesis after each quarter of evidence.

For each quarter, the observations *known* by its end (``report_date`` on or before the last day
of the quarter) are refitted under every hypothesis on the SAME compiled model (only the cell
data are swapped in), each log marginal likelihood is estimated by bridge sampling, and the
posterior probabilities follow. A quarter that brings no new evidence reuses the previous
result; before the first observation the support is the prior. The last quarter sees every
observation, so it is the run's own result: with the run's own sampler settings (the default) it
is taken from the run instead of being refitted.

Sampler settings default to the run's own (4 chains x 1500 draws). Lighter settings are possible
but were measured to mislead on the default study: with 500 draws per chain most fits failed the
gate and the bridge estimates in its ~160 dimensions were off by up to 1.7 nats, against a
reported MC error of ~0.2. Points are flagged when a fit fails the gate; they are not gated.

Cost: one fit and one bridge estimate per hypothesis and evaluated quarter, on one compiled
model; the default study has 44 quarters x 3 hypotheses, so ``every=N`` evaluates every N-th
quarter (and always the last) at about 1/N of the cost.

What moved it: each change of the log Bayes factor between the two hypotheses leading at the end,
from one evaluated quarter to the next, is split over the events that became known in between.
By the chain rule the change is exactly the sum of the new events' sequential log predictive
differences; each is estimated by Pareto-smoothed importance sampling of the earlier quarter's
posterior draws (``attribution``), and their sum is checked against the change of the
bridge-sampled log marginal likelihoods. Where the importance weights are too heavy-tailed
(Pareto k), the interval's total is reported without shares. This reuses the fits' draws: no
extra fit, a few seconds.

Constraint hypotheses (a study's ``[[constraint_hypotheses]]``, forecast.spec.constraints): their
probabilities at the same quarters from ONE encompassing fit per quarter, the regions' prior
masses estimated once; stored under ``history.json``'s ``"constraints"``, never merged with the
prior-specified hypotheses' ``points``; what moved them by the same chain rule on the draws inside
each region (``constraints``). A study with constraint hypotheses only has no ``points``.

``run_history`` is the workflow (`forecast history`, `update --history`, `report --history`): it
reads the run through ``StoredRun``, applies the one staleness rule, computes and stores
``history.json`` into that run. ``compute_history`` is the computation alone.

Modules: ``records`` (the typed records and ``history.json``), ``compute`` (the refits per
quarter), ``attribution`` (what moved it: event terms, importance sampling, the chain rule),
``constraints`` (the constraint hypotheses over time), ``run`` (the workflow: ``run_history``,
``history_for_run``).
"""

from forecast.runs.layout import HISTORY, HISTORY_SCHEMA
from forecast.workflows.history.attribution import Collector, decompose, psis_log_means
from forecast.workflows.history.compute import (
    FinalResult,
    compute_history,
    evaluation_quarters,
    known_quarter,
    quarter_end,
)
from forecast.workflows.history.records import (
    SOURCES,
    Attribution,
    ConstraintHistory,
    ConstraintPoint,
    EventContribution,
    History,
    HistoryPoint,
    IntervalAttribution,
    history_json,
    load_history,
)
from forecast.workflows.history.run import HISTORY_FILE_BYTES, history_for_run, run_history, run_result, run_settings

__all__ = [
    "HISTORY",
    "HISTORY_FILE_BYTES",
    "HISTORY_SCHEMA",
    "SOURCES",
    "Attribution",
    "Collector",
    "ConstraintHistory",
    "ConstraintPoint",
    "EventContribution",
    "FinalResult",
    "History",
    "HistoryPoint",
    "IntervalAttribution",
    "compute_history",
    "decompose",
    "evaluation_quarters",
    "history_for_run",
    "history_json",
    "known_quarter",
    "load_history",
    "psis_log_means",
    "quarter_end",
    "run_history",
    "run_result",
    "run_settings",
]
