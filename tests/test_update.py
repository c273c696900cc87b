"""End-to-end: the default study through `forecast update`, plus the invariants of a fit."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import xarray as xr

from forecast.cli import default_study
from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.fit.hypothesis import checked, marginal_likelihood
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.runs.store import latest_run, load_summary
from forecast.spec.study import load_study
from forecast.stats.bridge import bridge_sampling
from forecast.workflows.update import run_update

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
    root = tmp_path_factory.mktemp("runs")
    return run_update(default_study(), SamplerSettings(seed=11), runs_root=root), root


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


def test_default_study_fits_pass_the_convergence_gate(default_run):
    result, _ = default_run
    assert result.converged
    for h in result.hypotheses:
        assert h.diagnostics.rhat_max <= 1.01
        assert min(h.diagnostics.ess_bulk_min, h.diagnostics.ess_tail_min) >= 400
        assert h.diagnostics.divergences == 0


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
    posterior = xr.open_datatree(run / "posterior" / "hedging.nc", engine="h5netcdf")
    assert posterior.posterior.sizes["chain"] == 4 and "tilt__russia" in posterior.posterior


@pytest.fixture(scope="module")
def small_static(tmp_path_factory):
    """A two-group static study, fitted once and shared by the invariant tests below."""
    d = tmp_path_factory.mktemp("static")
    (d / "obs.csv").write_text(
        "id,event_date,counterpart,domain,outcome,reliability,description,source\n"
        + "".join(
            f"e{i},2020-0{1 + i % 9}-1{i % 9},{'a' if i % 3 else 'b'},{'x' if i % 2 else 'y'},"
            f"{'cooperative' if i % 4 else 'conflictual'},{'A1' if i % 5 else 'C3'},event {i},test\n"
            for i in range(40)
        )
    )
    (d / "s.toml").write_text(
        """
[study]
name = "static"
question = "q"
actor = "T"
observations = "obs.csv"
[time]
start = "2020Q1"
end = "2020Q4"
components = []
[[groups]]
id = "ga"
label = "A"
counterparts = ["a"]
[[groups]]
id = "gb"
label = "B"
counterparts = ["b"]
[[domains]]
id = "x"
label = "X"
[[domains]]
id = "y"
label = "Y"
[[hypotheses]]
id = "h1"
label = "H1"
prior_probability = 0.5
claim = "c"
[hypotheses.priors]
tilt.all = { dist = "Normal", kwargs = { mu = 1.0, sigma = 0.5 } }
spread.all = { dist = "HalfNormal", kwargs = { sigma = 0.5 } }
[[hypotheses]]
id = "h2"
label = "H2"
prior_probability = 0.5
claim = "c"
[hypotheses.priors]
tilt.all = { dist = "Normal", kwargs = { mu = -1.0, sigma = 0.5 } }
spread.all = { dist = "HalfNormal", kwargs = { sigma = 0.5 } }
"""
    )
    study = load_study(d / "s.toml")
    cells = cell_data(load_observations(study).table, study)
    return study, cells, StudyModel(study, cells)


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


def test_bridge_log_posterior_matches_the_samplers_target(small_static):
    """The density the bridge integrates is the one nutpie sampled (same layout, same priors)."""
    study, _, model = small_static
    for h in study.hypotheses:
        fit = model.fit(h, SMALL)
        ours = model.log_posterior(h)(fit.unconstrained.reshape(-1, fit.unconstrained.shape[-1]))
        np.testing.assert_allclose(ours, fit.trace.sample_stats["logp"].values.ravel(), rtol=1e-9, atol=1e-8)


def test_one_compile_serves_every_hypothesis(small_static):
    study, _, model = small_static
    for h in study.hypotheses:
        model.fit(h, SMALL)
    assert model.n_compiled == 1


def test_hypotheses_with_different_priors_get_different_posteriors(small_static):
    study, _, model = small_static
    means = [float(model.fit(h, SMALL).trace.posterior["tilt__ga"].mean()) for h in study.hypotheses]
    assert means[0] > means[1] + 0.3


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
