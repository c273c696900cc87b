"""`forecast backtest`: rolling-origin evaluation of the forecasts, and leave-future-out elpd.

For every origin quarter t in a range, each hypothesis is fitted on what was *known* at the
end of t (observations with ``report_date`` on or before t's last day) on the one compiled
model (new data, no recompilation), and its forecasts for quarters t+1..t+h are compared with
what is now known to have happened in them:

- every event in those quarters is a forecast of one interaction being cooperative, scored
  (log score and Brier score, weighted by the event's reliability) for each hypothesis, their
  average (BMA, with the posterior probabilities at t) and two baselines an analyst would use:
  the cell's historical base rate and its last observed share;
- every (cell, quarter) with events checks the 50% and 90% predictive intervals of its number
  of cooperative events (coverage, counted as the expected coverage of a randomised PIT);
- every registered question is re-asked about each target quarter and scored the same way;
- the forecasts of the next quarter give each hypothesis's leave-future-out elpd (LFO, Bürkner,
  Gabry & Vehtari 2020): from exact refits at every origin, or (``lfo="approx"``) carried
  forward by Pareto-smoothed importance sampling with a refit whenever Pareto k exceeds 0.7.
  The LFO elpd uses the model's own reliability-weighted likelihood, like the PSIS-LOO elpd of
  the run it is reported beside.

Events that corroborate another row (``origin_id``) are not scored again. By default the
origins run one after another in this process on one compiled model (on a 2-core machine that is
as fast as fanning out: nutpie already samples the chains on both cores). Exact refits can be
fanned out, one origin per task, over ``forecast.fit.pool``'s pools: local worker processes or
a Dask cluster, each worker compiling the model once (``forecast.fit.pool.cached_model``).

``run_backtest`` reads the study's latest run through ``StoredRun`` (it must match the current
inputs), and writes ``backtest.json`` (and, given a ``plot`` function, the reliability diagram)
into it. The result is a typed ``BacktestResult``; ``forecast.reports.text.backtest`` renders it.

Modules: ``records`` (the typed result records), ``scoring`` (baselines, event, interval and
question scores, leave-future-out elpd: pure functions), ``origins`` (what was known at each
origin, and the fits there: exact refits, the worker entry point), ``run`` (the orchestration:
``backtest`` and ``run_backtest``).
"""

from forecast.workflows.backtest.origins import (
    DEFAULT_ORIGINS,
    default_origins,
    fit_origin,
    fit_origin_task,
    known_at,
    last_target_quarter,
)
from forecast.workflows.backtest.records import (
    BASELINES,
    BMA,
    UNRELIABLE,
    BacktestResult,
    BacktestSettings,
    CellScores,
    Coverage,
    Lfo,
    LfoHypothesis,
    OriginFit,
    OriginResult,
    QuestionScores,
    ReliabilityBin,
    Score,
    Scores,
    ScoreSummary,
    Skill,
)
from forecast.workflows.backtest.run import RESULT_FILE_BYTES, backtest, run_backtest
from forecast.workflows.backtest.scoring import (
    LEVELS,
    PARETO_K_REFIT,
    SMOOTHING,
    baseline_probabilities,
    cell_loglik,
    psis_log_weights,
    question_baselines,
)

__all__ = [
    "BASELINES",
    "BMA",
    "DEFAULT_ORIGINS",
    "LEVELS",
    "PARETO_K_REFIT",
    "RESULT_FILE_BYTES",
    "SMOOTHING",
    "UNRELIABLE",
    "BacktestResult",
    "BacktestSettings",
    "CellScores",
    "Coverage",
    "Lfo",
    "LfoHypothesis",
    "OriginFit",
    "OriginResult",
    "QuestionScores",
    "ReliabilityBin",
    "Score",
    "ScoreSummary",
    "Scores",
    "Skill",
    "backtest",
    "baseline_probabilities",
    "cell_loglik",
    "default_origins",
    "fit_origin",
    "fit_origin_task",
    "known_at",
    "last_target_quarter",
    "psis_log_weights",
    "question_baselines",
    "run_backtest",
]
