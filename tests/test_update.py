"""End-to-end: the default study through `forecast update`, plus the invariants of a fit."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from helpers import SHORT_EVENTS_HEADER, two_group_event_lines, two_group_study_toml

from forecast.cli import main
from forecast.cli.app import default_study
from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.errors import RunStoreError, SamplingError
from forecast.fit.hypothesis import checked, marginal_likelihood
from forecast.fit.sampler import Diagnostics, Fit, SamplerSettings, StudyModel
from forecast.runs.layout import (
    CONSTRAINTS,
    CONSTRAINTS_SCHEMA,
    MANIFEST,
    OBSERVATIONS_COPY,
    POINTWISE,
    POSTERIOR_DIR,
    STUDY_COPY,
    SUMMARY,
)
from forecast.runs.store import latest_run, load_summary
from forecast.runs.stored import StoredRun
from forecast.spec.constraints import ENCOMPASSING_ID
from forecast.spec.study import load_study
from forecast.stats.bridge import bridge_sampling
from forecast.stats.loo import Loo
from forecast.workflows.update import complete, gate_thresholds, pointwise_table, run_update

CONTRACT_KEYS = {
    "id",
    "label",
    "prior_probability",
    "log_marginal_likelihood",
    "log_marginal_likelihood_se",
    "posterior_probability",
    "posterior_probability_se",
    "elpd_loo",
    "elpd_loo_se",
    "loo_weight",
    "diagnostics",
}
DIAGNOSTIC_KEYS = {"rhat_max", "ess_bulk_min", "ess_tail_min", "divergences", "converged"}
SMALL = SamplerSettings(draws=1000, tune=500, chains=4, seed=7)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default study fitted once (slow: only the tests marked slow use it)."""
    root = tmp_path_factory.mktemp("runs")
    return run_update(default_study(), SamplerSettings(seed=11), runs_root=root, robustness=False), root


@pytest.mark.slow
def test_default_study_update_meets_the_json_contract(default_run):
    result, _ = default_run
    d = json.loads(json.dumps(result.to_dict()))
    assert {"study", "run_dir", "converged", "hypotheses"} <= set(d)
    assert d["study"] == "turkey_nato"
    assert [h["id"] for h in d["hypotheses"]] == ["hedging", "realignment", "alignment"]
    for h in d["hypotheses"]:
        assert CONTRACT_KEYS <= set(h)
        assert DIAGNOSTIC_KEYS <= set(h["diagnostics"])
        assert np.isfinite(h["log_marginal_likelihood"]) and 0 < h["log_marginal_likelihood_se"] < 1
        assert 0 <= h["posterior_probability"] <= 1
    assert sum(h["posterior_probability"] for h in d["hypotheses"]) == pytest.approx(1.0, abs=1e-12)
    assert sum(h["loo_weight"] for h in d["hypotheses"]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.slow
def test_default_study_fits_pass_the_convergence_gate(default_run):
    result, _ = default_run
    assert result.converged
    for h in result.hypotheses:
        assert h.diagnostics.rhat_max <= 1.01
        assert min(h.diagnostics.ess_bulk_min, h.diagnostics.ess_tail_min) >= 400
        assert h.diagnostics.divergences == 0


@pytest.mark.slow
def test_update_writes_a_complete_run_directory(default_run):
    result, root = default_run
    run = latest_run(root, "turkey_nato")
    assert str(run) == result.run_dir
    summary = load_summary(run)
    assert [h["id"] for h in summary["hypotheses"]] == ["hedging", "realignment", "alignment"]
    manifest = json.loads((run / "manifest.json").read_text())
    study = load_study(default_study())
    assert manifest["study"]["sha256"] == study.sha256
    assert manifest["observations"]["sha256"] == load_observations(study).sha256
    assert manifest["seed"] == 11 and manifest["packages"]["pymc"].startswith("6.")
    # The gate the run was judged by travels with it.
    assert manifest["gate"]["rhat_max"] == 1.01 and manifest["gate"]["ess_min"] == 400
    assert manifest["gate"]["bridge_se_max"] == 0.5 and manifest["gate"]["retry"]["attempts"] == 3
    assert StoredRun.open(run).gate == manifest["gate"]
    assert {p.name for p in run.iterdir()} >= {
        SUMMARY,
        MANIFEST,
        POINTWISE,
        POSTERIOR_DIR,
        STUDY_COPY,
        OBSERVATIONS_COPY,
    }
    posterior = xr.open_datatree(run / "posterior" / "hedging.nc", engine="h5netcdf")
    assert posterior.posterior.sizes["chain"] == 4 and "tilt__russia" in posterior.posterior


@pytest.mark.slow
def test_default_study_update_also_compares_its_constraint_hypotheses_and_says_if_they_agree(default_run):
    result, _ = default_run
    d = json.loads(json.dumps(result.to_dict()))
    c = d["constraints"]
    assert [h["id"] for h in c["hypotheses"]] == ["hedging", "realignment", "alignment", "none_of_these"]
    assert sum(h["posterior_probability"] for h in c["hypotheses"]) == pytest.approx(1.0)
    assert c["agreement"]["prior_leader"] == d["judgement"]["leader"]
    assert c["agreement"]["agree"] == (c["leader"] == d["judgement"]["leader"])
    run = StoredRun.open(result.run_dir)
    assert run.read_json(CONSTRAINTS, CONSTRAINTS_SCHEMA)["agreement"] == c["agreement"]
    assert run.hypothesis_ids == ["hedging", "realignment", "alignment"]
    assert (run.path / POSTERIOR_DIR / f"{ENCOMPASSING_ID}.nc").is_file()


def test_a_study_without_constraint_hypotheses_has_null_constraints_in_its_json():
    from forecast.workflows.update import UpdateResult

    result = UpdateResult("s", "s.toml", "q", None, True, 0, None, [], "", "", {})
    assert result.to_dict()["constraints"] is None


def test_a_plain_studys_json_says_its_model_has_no_overdispersion():
    from forecast.workflows.update import UpdateResult

    result = UpdateResult("s", "s.toml", "q", None, True, 0, None, [], "", "", {})
    assert result.to_dict()["model"] == {"overdispersion": "none"}


@pytest.fixture(scope="module")
def small_static(tmp_path_factory):
    """A two-group static study, fitted once and shared by the invariant tests below."""
    d = tmp_path_factory.mktemp("static")
    (d / "obs.csv").write_text(SHORT_EVENTS_HEADER + "".join(two_group_event_lines(40)))
    (d / "s.toml").write_text(two_group_study_toml("static"))
    study = load_study(d / "s.toml")
    cells = cell_data(load_observations(study).table, study)
    return study, cells, StudyModel(study, cells)


@pytest.mark.slow
def test_same_seed_gives_the_same_numbers(small_static):
    study, _, model = small_static
    h = study.hypotheses[0]
    a, b = model.fit(h, SMALL), model.fit(h, SMALL)
    np.testing.assert_array_equal(a.unconstrained, b.unconstrained)
    ra = bridge_sampling(model.log_posterior(h), a.unconstrained, np.random.default_rng(3))
    rb = bridge_sampling(model.log_posterior(h), b.unconstrained, np.random.default_rng(3))
    assert ra == rb
    c = model.fit(h, SamplerSettings(draws=1000, tune=500, chains=4, seed=8))
    assert not np.array_equal(a.unconstrained, c.unconstrained)


@pytest.mark.slow
def test_bridge_log_posterior_matches_the_samplers_target(small_static):
    """The density the bridge integrates is the one nutpie sampled (same layout, same priors)."""
    study, _, model = small_static
    for h in study.hypotheses:
        fit = model.fit(h, SMALL)
        ours = model.log_posterior(h)(fit.unconstrained.reshape(-1, fit.unconstrained.shape[-1]))
        np.testing.assert_allclose(ours, fit.trace.sample_stats["logp"].values.ravel(), rtol=1e-9, atol=1e-8)


@pytest.mark.slow
def test_one_compile_serves_every_hypothesis(small_static):
    study, _, model = small_static
    for h in study.hypotheses:
        model.fit(h, SMALL)
    assert model.n_compiled == 1


@pytest.mark.slow
def test_hypotheses_with_different_priors_get_different_posteriors(small_static):
    study, _, model = small_static
    means = [float(model.fit(h, SMALL).trace.posterior["tilt__ga"].mean()) for h in study.hypotheses]
    assert means[0] > means[1] + 0.3


@pytest.mark.slow
def test_a_marginal_likelihood_of_unknown_error_fails_the_gate(small_static):
    study, _, model = small_static
    h = study.hypotheses[0]
    fit = model.fit(h, SMALL)
    bridge = marginal_likelihood(model, h, fit, seed=1)
    assert fit.diagnostics.converged and checked(fit, bridge).diagnostics.converged
    flagged = checked(fit, replace(bridge, se=float("inf")))
    assert not flagged.diagnostics.converged
    assert any(
        p.startswith("marginal likelihood: Monte Carlo error cannot be estimated") for p in flagged.diagnostics.problems
    )


# --- fast: what happens before any fit, and the run's files ----------------------------------


def _no_fitting(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("a model was built: the check came too late")

    monkeypatch.setattr("forecast.workflows.update.StudyModel", refuse)


def test_a_negative_seed_is_a_usage_error_before_any_work(tmp_path, monkeypatch):
    _no_fitting(monkeypatch)
    for command in ("update", "backtest", "predict"):
        result = CliRunner().invoke(main, [command, "--seed", "-1", "--runs-dir", str(tmp_path / "runs"), "-q"])
        assert result.exit_code == 2, (command, result.output)
        assert "--seed" in result.output
    result = CliRunner().invoke(main, ["history", "--seed", "-1", "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 2 and "--seed" in result.output
    assert not (tmp_path / "runs").exists()


def test_an_unwritable_runs_directory_is_refused_before_any_fit(tmp_path, monkeypatch):
    _no_fitting(monkeypatch)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the runs directory should be")
    with pytest.raises(RunStoreError, match="cannot write runs to"):
        run_update(default_study(), runs_root=blocker / "runs")
    result = CliRunner().invoke(main, ["update", "--runs-dir", str(blocker / "runs"), "-q"])
    assert result.exit_code == 2 and "cannot write runs to" in result.stderr


def _fit(chains: int, draws: int) -> Fit:
    d = Diagnostics(1.0, 1000.0, 1000.0, 0, 0.0, 1.0, True)
    return Fit("h", None, np.zeros((chains, draws, 3)), d, SamplerSettings(), 1, 0.0)


def test_a_fit_with_fewer_draws_than_asked_is_never_a_result():
    asked = SamplerSettings(draws=200, chains=4)
    assert complete(_fit(4, 200), asked).hypothesis == "h"
    for chains, draws in ((4, 57), (3, 200), (0, 0)):
        with pytest.raises(SamplingError, match="instead of 4 x 200"):
            complete(_fit(chains, draws), asked)


def test_the_gate_recorded_in_the_manifest_is_the_samplers():
    from forecast.fit import sampler
    from forecast.stats.bridge import BRIDGE_SE_MAX

    gate = gate_thresholds()
    assert gate["rhat_max"] == sampler.RHAT_MAX and gate["ess_min"] == sampler.ESS_MIN
    assert gate["ebfmi_min"] == sampler.EBFMI_MIN
    assert gate["treedepth_saturation_max"] == sampler.TREEDEPTH_SATURATION_MAX
    assert gate["bridge_se_max"] == BRIDGE_SE_MAX
    assert gate["retry"] == {
        "attempts": 3,
        "more_chains_when_only_ess_fails": True,
        "more_chains_margin": sampler.MORE_CHAINS_MARGIN,
        "tune_factor": sampler.RETRY_TUNE_FACTOR,
        "target_accept": sampler.RETRY_TARGET_ACCEPT,
    }


def test_pointwise_ids_that_a_spreadsheet_would_run_are_neutralised():
    import pandas as pd

    ids = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tx", "TR-2020-001", "'=already"]
    obs = type("Obs", (), {"table": pd.DataFrame({"id": ids})})()
    cells = type("Cells", (), {"event_pattern": np.zeros(len(ids), dtype=int)})()
    study = type("Study", (), {"hypotheses": [type("H", (), {"id": "h"})()]})()
    lo = Loo(0.0, 0.0, 0.0, 0.1, 0, pointwise=np.array([-0.5]), pareto_k=np.array([0.1]))
    table = pointwise_table(obs, cells, study, [lo])
    assert list(table["id"]) == [
        '\'=HYPERLINK("http://x")',
        "'+1",
        "'-2",
        "'@SUM(A1)",
        "'\tx",
        "TR-2020-001",
        "'=already",
    ]
    assert list(table["elpd_loo__h"]) == [-0.5] * len(ids)
