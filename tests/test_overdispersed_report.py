"""The report and `forecast update` on an overdispersed study ([model] overdispersion = "cell").

A cell's events then share one cooperative share Beta(p phi, (1 - p) phi) around p = sigmoid(eta):
the report's posterior predictive replications draw that share once per cell and draw, its LOO
predictive probabilities predict an event given the rest of its cell, and its recomputed per-event
LOO uses the concentration, as `update` does. A plain study's figures are the old code's, draw for
draw. `update` says which likelihood it fitted (``"model"`` in --json, one line under the table,
one sentence in the report's diagnostics); a plain study's text output is unchanged.

Fast tests work on hand-made draws; the slow one fits a tiny overdispersed study.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import SHORT_EVENTS_HEADER, two_group_event_lines, two_group_study_toml

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.model.record import concentration_draws, model_record
from forecast.reports.report import statistics as S
from forecast.reports.text.update import overdispersion_sentence
from forecast.spec.study import load_study
from forecast.stats.loo import psis_loo_cells

MODEL = '[model]\noverdispersion = "cell"\n'


def _write(d: Path, overdispersed: bool, repeats: int = 30) -> Path:
    """A two-group study; group a / domain x in 2020Q1 holds ``repeats`` copies of one cooperative event."""
    rows = two_group_event_lines(24)
    rows += [f"r{i},2020-02-03,a,x,cooperative,B2,repeat {i},feed\n" for i in range(repeats)]
    (d / "obs.csv").write_text(SHORT_EVENTS_HEADER + "".join(rows))
    (d / "s.toml").write_text(two_group_study_toml("od") + (MODEL if overdispersed else ""))
    return d / "s.toml"


@pytest.fixture
def cells_and_study(tmp_path):
    study = load_study(_write(tmp_path, overdispersed=True))
    return study, cell_data(load_observations(study).table, study)


def _old_replicate_shares(eta, cells, n_gd, k_gd, rng, n_draws):
    """The report's replication before overdispersion (every event an independent Bernoulli)."""
    n_g, n_d = n_gd.shape
    take = rng.choice(eta.shape[0], size=min(n_draws, eta.shape[0]), replace=False)
    counts = rng.binomial(cells.n_events, S.sigmoid(eta[take]))
    per_gd = np.zeros((len(take), n_g * n_d))
    np.add.at(per_gd.T, cells.group * n_d + cells.domain, counts.T)
    per_gd = per_gd.reshape(-1, n_g, n_d)
    shares = np.where(n_gd > 0, per_gd / np.maximum(n_gd, 1), np.nan)
    upper, lower = (per_gd >= k_gd).mean(axis=0), (per_gd <= k_gd).mean(axis=0)
    return shares, np.minimum(1.0, 2 * np.minimum(upper, lower))


def test_a_plain_studys_replications_are_the_old_codes_draw_for_draw(cells_and_study):
    study, cells = cells_and_study
    n_gd, k_gd, _ = S.group_domain_counts(study, load_observations(study).table)
    eta = np.random.default_rng(1).normal(0.5, 0.3, (400, cells.w_coop.size))
    new = S.replicate_shares(eta, cells, n_gd, k_gd, np.random.default_rng(7), 200)
    old = _old_replicate_shares(eta, cells, n_gd, k_gd, np.random.default_rng(7), 200)
    np.testing.assert_array_equal(new[0], old[0])
    np.testing.assert_array_equal(new[1], old[1])


def test_overdispersed_replications_draw_one_share_per_cell_beta_binomial_spread(cells_and_study):
    """At p = 0.5 and phi = 2 a cell of n events has the beta-binomial count variance
    n p (1 - p) (phi + n) / (phi + 1), not the binomial n p (1 - p) the old code gave."""
    study, cells = cells_and_study
    n_gd, k_gd, _ = S.group_domain_counts(study, load_observations(study).table)
    n_samples = 20000
    eta = np.zeros((n_samples, cells.w_coop.size))
    phi = np.full(n_samples, 2.0)
    shares, _ = S.replicate_shares(eta, cells, n_gd, k_gd, np.random.default_rng(3), n_samples, phi)
    # The (group, domain) of the 30 repeats: its count is a sum of independent beta-binomials, one per cell.
    big = int(np.argmax(cells.n_events))
    g, d = int(cells.group[big]), int(cells.domain[big])
    n_c = cells.n_events[(cells.group == g) & (cells.domain == d)].astype(float)
    n = n_gd[g, d]
    beta_binomial = (n_c * 0.25 * (2.0 + n_c) / 3.0).sum() / n**2
    assert np.var(shares[:, g, d]) == pytest.approx(beta_binomial, rel=0.05)
    plain, _ = S.replicate_shares(eta, cells, n_gd, k_gd, np.random.default_rng(3), n_samples)
    assert np.var(plain[:, g, d]) == pytest.approx(0.25 / n, rel=0.05)
    assert np.var(shares[:, g, d]) > 3 * np.var(plain[:, g, d])


def test_overdispersed_loo_predictive_probability_is_the_polya_predictive_given_the_rest_of_the_cell(cells_and_study):
    """With draws tightly around (eta, phi), an event's LOO probability is (p phi + W_c') / (phi + N')."""
    _, cells = cells_and_study
    rng = np.random.default_rng(5)
    n = 4000
    eta = rng.normal(0.2, 1e-3, (n, cells.w_coop.size))
    phi = np.exp(rng.normal(np.log(3.0), 1e-3, n))
    got = S.loo_predictive_probability(eta, cells, phi)
    coop = cells.pattern_coop.astype(bool)
    cell, w = cells.pattern_cell, cells.pattern_weight
    coop_rest = cells.w_coop[cell] - np.where(coop, w, 0.0)
    total_rest = cells.w_coop[cell] + cells.w_conf[cell] - w
    p = 1 / (1 + np.exp(-0.2))
    expected = (p * 3.0 + coop_rest) / (3.0 + total_rest)
    np.testing.assert_allclose(got, expected, atol=2e-3)
    # the repeats' cell: one of 30 cooperative repeats is predicted cooperative almost surely,
    # where the plain model (and the old code) says p
    big = int(np.argmax(cells.n_events))
    assert got[(cell == big) & coop].min() > 0.85
    plain = S.loo_predictive_probability(eta, cells)
    np.testing.assert_allclose(plain, p, atol=2e-3)


def test_overdispersed_loo_probability_weights_by_the_non_factorised_terms(cells_and_study):
    """Against the raw importance-sampling estimate with weights 1 / p(y_i | y_-i, theta) (light tails: PSIS ~ IS)."""
    _, cells = cells_and_study
    rng = np.random.default_rng(9)
    n = 4000
    eta = rng.normal(0.3, 0.05, (n, cells.w_coop.size))
    phi = np.exp(rng.normal(np.log(5.0), 0.05, n))
    got = S.loo_predictive_probability(eta, cells, phi)
    from forecast.stats.loo import pattern_loglik

    loglik = pattern_loglik(eta, cells, phi)  # (samples, patterns)
    w = np.exp(-(loglik - loglik.min(axis=0)))
    w /= w.sum(axis=0)
    cell, wt, coop = cells.pattern_cell, cells.pattern_weight, cells.pattern_coop.astype(bool)
    coop_rest = cells.w_coop[cell] - np.where(coop, wt, 0.0)
    total_rest = cells.w_coop[cell] + cells.w_conf[cell] - wt
    pred = (S.sigmoid(eta[:, cell]) * phi[:, None] + coop_rest) / (phi[:, None] + total_rest)
    np.testing.assert_allclose(got, (w * pred).sum(axis=0), atol=2e-3)


def test_recomputed_pointwise_loo_uses_the_concentration(cells_and_study):
    _, cells = cells_and_study
    rng = np.random.default_rng(2)
    eta = rng.normal(0.5, 0.2, (400, cells.w_coop.size))
    phi = np.exp(rng.normal(np.log(4.0), 0.2, 400))
    ids = np.array([f"e{i}" for i in range(cells.event_pattern.size)])
    table = S.pointwise_loo(ids, {"h": eta}, {"h": 2}, cells, {"h": phi})
    expected = psis_loo_cells(eta, cells, 2, phi).pointwise[cells.event_pattern]
    np.testing.assert_array_equal(table["elpd_loo__h"].to_numpy(), expected)
    plain = S.pointwise_loo(ids, {"h": eta}, {"h": 2}, cells)
    assert not np.allclose(plain["elpd_loo__h"], table["elpd_loo__h"])
    pd.testing.assert_frame_equal(plain, S.pointwise_loo(ids, {"h": eta}, {"h": 2}, cells, {"h": None}))


def test_a_plain_study_says_overdispersion_none_and_adds_no_line(tmp_path):
    study = load_study(_write(tmp_path, overdispersed=False))
    assert model_record(study, {"h1": None}, {"h1": "H1"}) == {"overdispersion": "none"}
    assert overdispersion_sentence({"overdispersion": "none"}) is None


def test_an_overdispersed_studys_model_record_and_line(cells_and_study):
    study, _ = cells_and_study
    draws = np.random.default_rng(0).lognormal(np.log(8.0), 0.3, 4000)
    m = json.loads(json.dumps(model_record(study, {"h1": draws, "h2": None}, {"h1": "H1", "h2": "H2"})))
    assert m["overdispersion"] == "cell"
    prior = m["concentration_prior"]
    assert prior["dist"] == "LogNormal" and prior["median"] == pytest.approx(20.0)
    assert prior["interval_90"][0] < 20 < prior["interval_90"][1]
    assert set(m["concentration"]) == {"h1"}
    h1 = m["concentration"]["h1"]
    assert h1["median"] == pytest.approx(np.median(draws))
    assert h1["interval_90"] == pytest.approx(list(np.quantile(draws, [0.05, 0.95])))
    line = overdispersion_sentence(m)
    assert line.startswith("Overdispersion: each cell carries at most about phi+1 events' evidence")
    assert "posterior median 7.9 (90%: 4.9-13)" in line and "(90%: " in line and "'H1'" in line and "LogNormal" in line
    assert "\n" not in line


@pytest.mark.slow
def test_update_and_report_on_an_overdispersed_study(tmp_path):
    from forecast.model.build import cell_logit_draws, draws_as_arrays
    from forecast.reports.report import build_report
    from forecast.reports.report.assemble import _pointwise
    from forecast.reports.report.read import load_run
    from forecast.reports.text.update import render_update
    from forecast.runs.layout import POINTWISE
    from forecast.runs.stored import StoredRun
    from forecast.settings import SamplerSettings
    from forecast.workflows.update import run_update

    path = _write(tmp_path, overdispersed=True)
    result = run_update(
        path,
        SamplerSettings(draws=150, tune=150, chains=2, cores=1, seed=3),
        runs_root=tmp_path / "runs",
        allow_unconverged=True,
        variants=False,
        robustness=False,
    )
    d = json.loads(json.dumps(result.to_dict()))
    assert d["model"]["overdispersion"] == "cell"
    assert set(d["model"]["concentration"]) == {"h1", "h2"}
    text = render_update(result)
    lines = text.splitlines()
    at = next(i for i, x in enumerate(lines) if x.startswith("Overdispersion: "))
    assert lines[at - 1].startswith("H2") and lines[at + 1] == ""  # right under the table

    stored = StoredRun.open(result.run_dir)
    stored_pointwise = pd.read_csv(stored.path / POINTWISE)
    (stored.path / POINTWISE).unlink()  # the report recomputes it: with the concentration, as update did
    run = load_run(StoredRun.open(result.run_dir))
    assert run.pointwise is None
    etas = {
        h: cell_logit_draws(draws_as_arrays(run.posteriors[h], run.study), run.study, run.cells) for h in ("h1", "h2")
    }
    phis = {h: concentration_draws(run.posteriors[h], run.study) for h in ("h1", "h2")}
    recomputed = _pointwise(run, etas, phis)
    for h in ("h1", "h2"):
        np.testing.assert_allclose(recomputed[f"elpd_loo__{h}"], stored_pointwise[f"elpd_loo__{h}"], rtol=1e-9)

    report = build_report(StoredRun.open(result.run_dir), workers=1)
    note = report.diagnostics.notes[0]
    assert note.startswith("Overdispersion: ") and '[model] overdispersion = "cell"' in note
    ppc = report.figures["ppc-shares"]
    assert "Beta" in ppc.caption


def test_update_records_the_encompassing_models_concentration_too(cells_and_study):
    from types import SimpleNamespace

    import xarray as xr

    from forecast.workflows.update import _model

    study, _ = cells_and_study
    posterior = xr.Dataset({"concentration": (("chain", "draw"), np.full((2, 50), 7.0))})
    fit = SimpleNamespace(hypothesis="h1", trace=SimpleNamespace(posterior=posterior))
    enc = SimpleNamespace(hypothesis="encompassing", trace=SimpleNamespace(posterior=posterior))
    m = _model(study, [fit], enc)
    assert set(m["concentration"]) == {"h1", "encompassing"}
    assert m["concentration"]["h1"]["median"] == 7.0
    assert "7 (90%: 7-7) under 'the encompassing model'" in overdispersion_sentence(m)
    without = _model(
        study, [fit], SimpleNamespace(hypothesis="encompassing", trace=SimpleNamespace(posterior=xr.Dataset()))
    )
    assert set(without["concentration"]) == {"h1"}
