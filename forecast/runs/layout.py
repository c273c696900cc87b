"""Every file of a run directory and the schema version of each, in one table.

A run is ``<runs root>/<study name>/<UTC time>/``; the study's ``LATEST`` file names its latest
complete run. ``forecast update`` writes the first five entries; every other command adds its
own file to the run it analysed (never to "whatever is latest at the time").

While a file or run is being written (``forecast.runs.store``), the study's run folder also
holds ``.<run id>.partial-<pid>`` (the run being assembled) beside an empty ``<run id>``
placeholder, and ``.<name>.tmp-<pid>`` files (``LATEST`` or a file being replaced); the pid
says whose they are, and what a dead process left is swept by the next command that touches
the folder (``store.sweep_leftovers``).
"""

from __future__ import annotations

from dataclasses import dataclass

LATEST = "LATEST"
SUMMARY = "summary.json"
MANIFEST = "manifest.json"
POSTERIOR_DIR = "posterior"
POINTWISE = "loo_pointwise.csv"
STUDY_COPY = "study.toml"
OBSERVATIONS_COPY = "observations.csv"
HISTORY = "history.json"
FORECASTS = "forecasts.json"
SCORES = "scores.json"
BACKTEST = "backtest.json"
BACKTEST_PLOT = "backtest_reliability.png"
EVIDENCE = "evidence.json"
CALIBRATION = "calibration.json"
SENSITIVITY = "sensitivity.json"
SENSITIVITY_TORNADO_PLOT = "sensitivity_tornado.png"
SENSITIVITY_PRIOR_ODDS_PLOT = "sensitivity_prior_odds.png"
PRIOR_PREDICTIVE = "prior_predictive.json"
PRIOR_PREDICTIVE_PLOT = "prior_predictive.png"
REPORT_STEM = "report"  # report.html, report.md, report.json
SIMULATIONS = "simulations"  # `forecast simulate --from posterior` adds its data sets here
CONSTRAINTS = "constraints.json"  # `update` on a study with [[constraint_hypotheses]]: their comparison
# The encompassing model's fit is stored like a hypothesis's, as POSTERIOR_DIR/<ENCOMPASSING_ID>.nc
# (forecast.spec.constraints.ENCOMPASSING_ID, "encompassing": an id no hypothesis may take).

# Beside a study's runs (``<runs root>/<study>/``), not inside one run:
IMPORTS_DIR = "imports"  # the report of each `forecast import`
CALIBRATION_DIR = "calibration"  # calibration.json of a calibration that matched no run
IMPORT_ROWS_SUFFIX = ".rows.jsonl.gz"  # in IMPORTS_DIR: an import's full per-row report
INGEST_LEDGER = "ingested.json"  # in IMPORTS_DIR: the files `forecast ingest` has imported, by content
INGEST_LOCK = ".ingest.lock"  # beside the runs of a study: held while an ingest runs

# Schema versions: bump one when the layout of its file changes incompatibly.
SCHEMA_VERSION = 1  # summary.json and manifest.json
HISTORY_SCHEMA = 1
RESULTS_SCHEMA = 1  # forecasts.json, scores.json, backtest.json
SENSITIVITY_SCHEMA = 1
PRIOR_PREDICTIVE_SCHEMA = 1
REPORT_SCHEMA = 1
CONSTRAINTS_SCHEMA = 1


@dataclass(frozen=True)
class RunFile:
    name: str
    written_by: str
    schema: int | None
    content: str


FILES: tuple[RunFile, ...] = (
    RunFile(SUMMARY, "update", SCHEMA_VERSION, "the support table, diagnostics, settings and conclusion"),
    RunFile(MANIFEST, "update", SCHEMA_VERSION, "input hashes, seed, sampler settings, gate thresholds, versions"),
    RunFile(POSTERIOR_DIR + "/<hypothesis>.nc", "update", None, "posterior draws and sampler statistics"),
    RunFile(POINTWISE, "update", None, "per-event PSIS-LOO terms"),
    RunFile(STUDY_COPY, "update", None, "copy of the study file"),
    RunFile(OBSERVATIONS_COPY, "update", None, "copy of the observation file"),
    RunFile(CONSTRAINTS, "update", CONSTRAINTS_SCHEMA, "constraint hypotheses compared on the encompassing fit"),
    RunFile(HISTORY, "history", HISTORY_SCHEMA, "support over time"),
    RunFile(FORECASTS, "predict", RESULTS_SCHEMA, "forecasts, question probabilities, milestones"),
    RunFile(SCORES, "score", RESULTS_SCHEMA, "scores of earlier forecasts"),
    RunFile(BACKTEST, "backtest", RESULTS_SCHEMA, "rolling-origin forecast skill"),
    RunFile(EVIDENCE, "evidence", None, "diagnosticity of each observation, critical items"),
    RunFile(CALIBRATION, "calibrate", None, "simulation-based calibration of the support"),
    RunFile(SENSITIVITY, "sensitivity", SENSITIVITY_SCHEMA, "prior-sensitivity grid, power-scaling, prior odds"),
    RunFile(PRIOR_PREDICTIVE, "priors", PRIOR_PREDICTIVE_SCHEMA, "prior predictive check of each hypothesis"),
    RunFile(REPORT_STEM + ".{html,md,json}", "report", REPORT_SCHEMA, "the report"),
)
