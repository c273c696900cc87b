"""Hand-made `forecast sensitivity` records for tests of their JSON and rendering (no fit)."""

from __future__ import annotations

from forecast.runs.layout import SENSITIVITY_SCHEMA
from forecast.workflows.sensitivity import GridSpec, SensitivityResult


def sensitivity_result(**fields: object) -> SensitivityResult:
    """A SensitivityResult of study 's' (s.toml, run runs/s/1, converged, the default grid with a
    Pareto k threshold of 0.7, psense threshold 0.05, no files, no warning, 1 s in total); ``fields``
    gives the rest (hypotheses, base, variants, ranges, tornado, verdict, prior_odds_text, psense,
    psense_flags) and may change any of these."""
    plain = dict(
        schema_version=SENSITIVITY_SCHEMA,
        study="s",
        study_path="s.toml",
        run_dir="runs/s/1",
        converged=True,
        grid=GridSpec().to_dict() | {"pareto_k_threshold": 0.7},
        sampler={},
        base={},
        prior_odds={},
        psense_threshold=0.05,
        scaleout={},
        files={},
        unreliable_variants=[],
        warning=None,
        timings={"total_s": 1.0},
    )
    return SensitivityResult(**(plain | fields))
