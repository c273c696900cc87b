"""Evidence variants: the same hypotheses fitted on the rows of other choices of whose acts count."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from forecast.data.observations import load_observations
from forecast.settings import SamplerSettings
from forecast.spec.study import load_study
from forecast.workflows.update import run_update
from forecast.workflows.variants import applicable

GOLDEN = Path(__file__).resolve().parent / "golden" / "inputs"
SMALL = SamplerSettings(draws=1000, tune=400, chains=4, seed=5)


def _with_initiators(tmp_path: Path, evidence: str | None = None) -> Path:
    """The golden study with an initiator column spread over the rows."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    study = (GOLDEN / "golden.toml").read_text(encoding="utf-8")
    if evidence:
        study += f"\n[evidence]\ninitiators = {evidence}\n"
    (tmp_path / "golden.toml").write_text(study, encoding="utf-8")
    with (GOLDEN / "events.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        row["initiator"] = (
            ("actor", "counterpart", "joint")[i % 3] if row["outcome"] == "conflictual" or i % 3 != 2 else "joint"
        )
        if row["outcome"] == "conflictual" and row["initiator"] == "joint":
            row["initiator"] = "actor"
    with (tmp_path / "events.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return tmp_path / "golden.toml"


def test_variants_apply_only_when_the_file_records_who_acted(tmp_path):
    shutil.copy(GOLDEN / "golden.toml", tmp_path / "golden.toml")
    shutil.copy(GOLDEN / "events.csv", tmp_path / "events.csv")
    assert not applicable(load_observations(load_study(tmp_path / "golden.toml")))
    with_column = _with_initiators(tmp_path / "w")
    assert applicable(load_observations(load_study(with_column)))


@pytest.mark.slow
def test_a_variant_equals_a_direct_fit_of_the_study_restricted_to_those_initiators(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    base = run_update(_with_initiators(tmp_path / "a"), SMALL, write=False, robustness=False)
    own = {v.id: v for v in base.evidence_variants}
    assert own["all_rows"].as_fitted and not own["own_only"].as_fitted
    assert own["all_rows"].n_observations == base.n_observations
    direct = run_update(
        _with_initiators(tmp_path / "b", '["actor"]'), SMALL, write=False, variants=False, robustness=False
    )
    assert direct.n_observations == base.n_observations  # rows read; the cells use the chosen ones
    variant = own["own_only"]
    for h in direct.hypotheses:
        # Same rows, same priors, same seed; the compiled model's parameterisation may differ, so
        # compare within Monte Carlo error.
        assert variant.log_marginal_likelihood[h.id] == pytest.approx(
            h.log_marginal_likelihood, abs=4 * max(h.log_marginal_likelihood_se, 0.05)
        )
    assert sum(variant.posterior_probability.values()) == pytest.approx(1.0)
    assert np.isfinite(list(variant.posterior_probability_se.values())).all()
