"""Workflows that reweight posterior draws by the likelihood, on an overdispersed study.

With ``[model] overdispersion = "cell"`` a cell's events are not independent given the
parameters: the cell's weighted counts have the Polya likelihood, and the per-event Bernoulli
terms no longer sum to it. Every workflow that reweights draws by what some observations add or
take away must use the cells' differences, ``Polya(cell after) - Polya(cell before)``, with the
concentration draws. These tests pin that down exactly, draw by draw, against the Polya cell
likelihood computed from the counts of the data before and after (tests/exact.py's
``log_polya``), check that the old per-event sums would differ, that a huge concentration gives
the plain model's numbers, and (against quadrature) one importance-sampling estimate.

Slow (they sample, tiny): an overdispersed static study's update with its robustness class, then
predict, simulate from the posterior and sensitivity's power-scaling on its run.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import exact
import numpy as np
import pandas as pd
import pytest
from builders_history import evidence_between
from helpers import base_study, event, hypothesis, prior, write_mini
from scipy import stats

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.model.build import latent_logit, years_from_reference
from forecast.model.predictive import prior_draws
from forecast.spec.study import CONCENTRATION, load_study
from forecast.workflows.backtest.scoring import _count_cdf, cell_loglik
from forecast.workflows.evidence.statistics import change_of_log_ml, removal_loglik, terms
from forecast.workflows.history import known_quarter
from forecast.workflows.history.attribution import Collector, parts_of


def _overdispersed(study: dict, concentration: dict | None = None) -> dict:
    study["model"] = {"overdispersion": "cell", **({"concentration": concentration} if concentration else {})}
    return study


def _mini(tmp_path: Path, rows: list[dict], concentration: dict | None = None):
    study = base_study()
    study["time"] = {"step": "quarter", "start": "2020Q1", "end": "2020Q4", "components": []}
    warm = {"tilt": {"all": prior("Normal", mu=0.5, sigma=1.0)}, "spread": {"all": prior("HalfNormal", sigma=0.7)}}
    cold = {"tilt": {"all": prior("Normal", mu=-0.5, sigma=1.0)}, "spread": {"all": prior("HalfNormal", sigma=0.7)}}
    study["hypotheses"] = [hypothesis("warm", 0.5, warm), hypothesis("cold", 0.5, cold)]
    path, _ = write_mini(tmp_path, rows, _overdispersed(study, concentration))
    return load_study(path)


ROWS = [
    event(1, event_date="2020-01-10", counterpart="russia", reliability="C3"),
    event(2, event_date="2020-02-10", counterpart="us", domain="energy", outcome="conflictual", intensity="-2"),
    event(3, event_date="2020-05-01", counterpart="eu"),
    # A better report (A1) of event 1, known in Q2: from Q2 on it counts instead of E1.
    event(4, event_date="2020-01-10", report_date="2020-05-20", counterpart="russia", reliability="A1", origin_id="E1"),
    event(5, event_date="2020-04-02", counterpart="russia", outcome="conflictual", intensity="-1"),
    event(6, event_date="2020-06-01", counterpart="eu", reliability="C3"),
    event(7, event_date="2020-06-02", counterpart="us"),
    event(8, event_date="2020-06-03", counterpart="eu", outcome="conflictual", intensity="-1"),
    event(9, event_date="2020-01-20", counterpart="us"),
]


def _scipy(p):
    return exact.pymc_prior(p.dist, **p.kwargs)


def _eta_grid(study, draws) -> np.ndarray:
    """(draws, G, D, Q) log-odds of prior draws."""
    return latent_logit(
        np, draws, years_from_reference(study), study.time.reference - study.time.start, study.time.components
    )


def _polya_total(eta_grid: np.ndarray, phi: np.ndarray, cells) -> np.ndarray:
    """The data's Polya log-likelihood per draw, from tests/exact.py's cell formula."""
    total = np.zeros(eta_grid.shape[0])
    for g, d, t, a, b in zip(cells.group, cells.domain, cells.quarter, cells.w_coop, cells.w_conf, strict=True):
        total += exact.log_polya(eta_grid[:, g, d, t], phi, float(a), float(b))
    return total


def _bernoulli_total(eta_grid: np.ndarray, cells) -> np.ndarray:
    e = eta_grid[:, cells.group, cells.domain, cells.quarter]
    return (-cells.w_coop * np.logaddexp(0.0, -e) - cells.w_conf * np.logaddexp(0.0, e)).sum(axis=1)


# --- history: each unit's change is the cells' Polya difference, chained ---------------------------


def test_history_attribution_chains_the_cells_polya_changes_of_an_overdispersed_study(tmp_path):
    study = _mini(tmp_path, ROWS)
    table = load_observations(study).table
    known = known_quarter(table)
    q1, q2 = int(known.min()), int(known.max())
    _, ev = evidence_between(table, known, q1, q2, study)
    draws = prior_draws(study, study.hypotheses[0], 200, np.random.default_rng(0))
    phi = draws[CONCENTRATION]
    parts, grid = parts_of(draws, study), _eta_grid(study, draws)
    full = _polya_total(grid, phi, cell_data(table[known <= q2], study))
    first = _polya_total(grid, phi, cell_data(table[known <= q1], study))
    by_unit = ev.loglik(parts, phi)
    # The units' changes telescope to the change of the Polya likelihood, draw by draw ...
    np.testing.assert_allclose(by_unit.sum(axis=0), full - first, atol=1e-9)
    # ... and in chain order each is log p(unit | everything before it, theta): check the first two.
    order = [table["id"].iloc[r] for r in ev.rows]
    assert order[:2] == ["E5", "E3"]
    k1 = table[(known <= q1) | (table["id"] == "E5")]
    np.testing.assert_allclose(by_unit[0], _polya_total(grid, phi, cell_data(k1, study)) - first, atol=1e-9)
    # The per-event Bernoulli terms (the old code) are not the overdispersed likelihood's change.
    assert np.max(np.abs(ev.loglik(parts).sum(axis=0) - (full - first))) > 0.1
    # Blocks of one counterpart, domain and outcome: same total.
    np.testing.assert_allclose(ev.blocks(table).loglik(parts, phi).sum(axis=0), full - first, atol=1e-9)
    # A huge concentration: the plain model's terms.
    huge = np.full_like(phi, 1e9)
    np.testing.assert_allclose(ev.loglik(parts, huge), ev.loglik(parts), atol=1e-5)


def test_history_collector_uses_the_concentration_or_gives_no_shares(tmp_path):
    study = _mini(tmp_path, ROWS)
    table = load_observations(study).table
    known = known_quarter(table)
    quarters = sorted(set(known.tolist()))
    h = study.hypotheses[0]
    draws = prior_draws(study, h, 100, np.random.default_rng(3))
    collector = Collector(study, table, known, quarters)
    collector.draws(0, h.id, parts_of(draws, study), None, draws[CONCENTRATION])
    assert collector._pending[h.id][0] == 1  # the first interval's terms, at these draws
    expected = collector.evidence[1].loglik(parts_of(draws, study), draws[CONCENTRATION])
    np.testing.assert_array_equal(collector._pending[h.id][1], expected)
    # Draws without their concentration (e.g. a caller that does not pass it): no terms, no shares.
    other = Collector(study, table, known, quarters)
    other.draws(0, h.id, parts_of(draws, study), None)
    assert h.id not in other._pending


# --- evidence: removing, reversing and adding observations ----------------------------------------


def test_evidence_change_of_log_ml_uses_the_cells_polya_differences(tmp_path):
    study = _mini(tmp_path, ROWS)
    table = load_observations(study).table
    cells = cell_data(table, study)
    draws = prior_draws(study, study.hypotheses[1], 300, np.random.default_rng(1))
    phi, grid = draws[CONCENTRATION], _eta_grid(study, draws)
    counted = table.loc[cells.event_row[cells.event_counted]]
    # Reverse E7 (us, defence, Q2): remove its term, add the opposite outcome.
    row = counted[counted["id"] == "E7"]
    removed = terms(cell_data(row, study))
    flipped = row.assign(cooperative=~row["cooperative"], outcome="conflictual")
    added = terms(cell_data(flipped, study))
    lr, la = removal_loglik(grid, cells, removed, added, phi)
    rest = counted[counted["id"] != "E7"]
    ll_full = _polya_total(grid, phi, cells)
    ll_rest = _polya_total(grid, phi, cell_data(rest, study))
    ll_after = _polya_total(grid, phi, cell_data(pd.concat([rest, flipped]), study))
    np.testing.assert_allclose(lr, ll_full - ll_rest, atol=1e-9)
    np.testing.assert_allclose(la, ll_after - ll_rest, atol=1e-9)
    # The old per-term sums differ (E7 shares its cell with E3, E6 and E8).
    old_lr = _bernoulli_total(grid, cells) - _bernoulli_total(grid, cell_data(rest, study))
    assert np.max(np.abs(old_lr - lr)) > 0.01
    # A huge concentration: the plain model's change.
    huge = np.full_like(phi, 1e9)
    plain = change_of_log_ml(grid, removed, added, 1.0)
    assert change_of_log_ml(grid, removed, added, 1.0, cells, huge).delta == pytest.approx(plain.delta, abs=1e-4)


def test_evidence_change_from_prior_draws_matches_quadrature_of_the_polya_model(tmp_path):
    """From draws of the prior (no data yet), adding a cell's observations changes log p(y) by the
    overdispersed model's exact log marginal likelihood (quadrature, tests/exact.py)."""
    rows = [event(i, event_date=f"2020-02-0{i}", counterpart="us", reliability="A1") for i in range(1, 7)]
    rows += [
        event(7, event_date="2020-02-08", counterpart="us", reliability="A1", outcome="conflictual", intensity="-1")
    ]
    conc = prior("LogNormal", mu=float(np.log(3.0)), sigma=0.5)
    study_one = _mini(tmp_path, rows, conc)  # two groups; only west/defence has data
    table = load_observations(study_one).table
    cells = cell_data(table, study_one)
    h = study_one.hypotheses[0]
    draws = prior_draws(study_one, h, 40_000, np.random.default_rng(7))
    grid = _eta_grid(study_one, draws)
    empty = cell_data(table.iloc[:0], study_one)
    est = change_of_log_ml(grid, Counter(), terms(cells), 1.0, empty, draws[CONCENTRATION])
    g = [x.id for x in study_one.groups].index("west")
    truth = exact.log_ml_polya(
        [_scipy(h.priors[("tilt", "west")])],
        [_scipy(h.priors[("spread", "west")])],
        _scipy(study_one.concentration),
        [[[(float(cells.w_coop[0]), float(cells.w_conf[0]))]]],
    )
    assert g == 0 and cells.n_cells == 1
    assert est.delta == pytest.approx(truth, abs=0.05)
    # The plain model's answer for the same data is measurably different.
    plain = change_of_log_ml(grid, Counter(), terms(cells), 1.0)
    assert abs(plain.delta - truth) > 0.2


# --- backtest: leave-future-out blocks and interval coverage --------------------------------------


def test_backtest_cell_loglik_is_the_polya_one_and_the_plain_for_huge_concentration(tmp_path):
    study = _mini(tmp_path, ROWS)
    table = load_observations(study).table
    cells = cell_data(table, study)
    draws = prior_draws(study, study.hypotheses[0], 50, np.random.default_rng(2))
    phi, grid = draws[CONCENTRATION], _eta_grid(study, draws)
    np.testing.assert_allclose(cell_loglik(grid, cells, phi), _polya_total(grid, phi, cells), atol=1e-9)
    assert np.max(np.abs(cell_loglik(grid, cells, phi) - cell_loglik(grid, cells))) > 0.1
    np.testing.assert_allclose(cell_loglik(grid, cells, np.full(50, 1e6)), cell_loglik(grid, cells), atol=1e-4)
    # The approximate LFO ratio: what became known since, cell by cell (exact for any split).
    known = known_quarter(table)
    earlier = cell_data(table[known <= int(known.min())], study)
    added = cell_loglik(grid, cells, phi) - cell_loglik(grid, earlier, phi)
    np.testing.assert_allclose(added, _polya_total(grid, phi, cells) - _polya_total(grid, phi, earlier), atol=1e-9)


def test_backtest_interval_coverage_uses_the_beta_binomial_count():
    share = np.array([0.2, 0.5, 0.9])
    plain = _count_cdf(10, share, None)
    np.testing.assert_allclose(plain(4), stats.binom.cdf(4, 10, share))
    over = _count_cdf(10, share, np.array([2.0, 2.0, 2.0]))
    np.testing.assert_allclose(over(4), stats.betabinom.cdf(4, 10, 2.0 * share, 2.0 * (1 - share)))
    assert np.all(np.abs(over(4) - plain(4)) > 0.01)
    np.testing.assert_allclose(_count_cdf(10, share, np.full(3, 1e7))(4), plain(4), atol=1e-5)
    # Monte Carlo: a Beta share, then binomial counts.
    rng = np.random.default_rng(0)
    theta = rng.beta(2.0 * 0.5, 2.0 * 0.5, size=200_000)
    assert np.mean(rng.binomial(10, theta) <= 4) == pytest.approx(over(4)[1], abs=0.005)


def test_evidence_pattern_terms_are_each_event_given_the_rest_of_its_cell(tmp_path):
    from forecast.stats.loo import pattern_loglik
    from forecast.workflows.evidence.statistics import pattern_term_loglik, pattern_terms, term_loglik

    study = _mini(tmp_path, ROWS)
    cells = cell_data(load_observations(study).table, study)
    draws = prior_draws(study, study.hypotheses[0], 40, np.random.default_rng(5))
    phi, grid = draws[CONCENTRATION], _eta_grid(study, draws)
    e = grid[:, cells.group, cells.domain, cells.quarter]
    np.testing.assert_array_equal(pattern_term_loglik(grid, cells), term_loglik(grid, pattern_terms(cells)))
    over = pattern_term_loglik(grid, cells, phi)
    np.testing.assert_allclose(over, pattern_loglik(e, cells, phi), atol=1e-12)
    # A unit-weight event alone in its cell: the Polya predictive is the Bernoulli at p (the
    # Beta's mean); with company in its cell it is not.
    alone = (cells.pattern_count == 1) & (cells.n_events[cells.pattern_cell] == 1) & (cells.pattern_weight == 1.0)
    shared = cells.n_events[cells.pattern_cell] > 1
    assert alone.any() and shared.any()
    plain = pattern_term_loglik(grid, cells)
    np.testing.assert_allclose(over[:, alone], plain[:, alone], atol=1e-9)
    assert np.max(np.abs(over[:, shared] - plain[:, shared])) > 0.01


# --- slow: an overdispersed run, and the commands that read it --------------------------------------


@pytest.fixture(scope="module")
def od_run(tmp_path_factory):
    """A tiny overdispersed study fitted by `forecast update` (robustness on, as by default)."""
    from forecast.fit.sampler import SamplerSettings
    from forecast.workflows.update import run_update

    tmp = tmp_path_factory.mktemp("od_run")
    study = base_study()
    study["time"] = {"step": "quarter", "start": "2020Q1", "end": "2020Q4", "components": []}
    warm = {"tilt": {"all": prior("Normal", mu=0.5, sigma=1.0)}, "spread": {"all": prior("HalfNormal", sigma=0.7)}}
    cold = {"tilt": {"all": prior("Normal", mu=-0.5, sigma=1.0)}, "spread": {"all": prior("HalfNormal", sigma=0.7)}}
    study["hypotheses"] = [hypothesis("warm", 0.5, warm), hypothesis("cold", 0.5, cold)]
    path, _ = write_mini(tmp, ROWS, _overdispersed(study))
    root = tmp / "runs"
    result = run_update(
        path, SamplerSettings(draws=300, tune=300, chains=2, seed=3), runs_root=root, allow_unconverged=True
    )
    return path, root, result


@pytest.mark.slow
def test_update_on_an_overdispersed_study_evaluates_its_robustness_class(od_run):
    _, _, result = od_run
    assert result.robustness is not None and len(result.robustness.variants) > 1


@pytest.mark.slow
def test_predict_passes_each_hypothesis_concentration_draws(od_run, monkeypatch):
    import forecast.workflows.predict as predict_module
    from forecast.runs.stored import StoredRun

    path, root, _ = od_run
    seen = {}
    real = predict_module.predictive

    def spy(arrays, study, quarters, rng, concentration=None, **kw):
        seen[len(seen)] = concentration
        return real(arrays, study, quarters, rng, concentration=concentration, **kw)

    monkeypatch.setattr(predict_module, "predictive", spy)
    predict_module.run_predict(path, runs_root=root, write=False, allow_unconverged=True, today=None)
    study = load_study(path)
    run = StoredRun.latest(root, study.name)
    for i, h in enumerate(study.hypotheses):
        expected = run.open_posterior(h.id)[CONCENTRATION].values.reshape(-1)
        np.testing.assert_array_equal(seen[i], expected)


@pytest.mark.slow
def test_simulate_from_the_posterior_carries_the_concentration_draw(od_run, tmp_path):
    import json

    from forecast.runs.stored import StoredRun
    from forecast.workflows.simulate import SIMULATION, run_simulate

    path, root, _ = od_run
    result = run_simulate(path, "warm", source="posterior", runs_root=root, out=tmp_path / "sim")
    record = json.loads((tmp_path / "sim" / SIMULATION).read_text())
    study = load_study(path)
    post = StoredRun.latest(root, study.name).open_posterior("warm")
    where = record["posterior_draw"]
    expected = float(post[CONCENTRATION].values[where["chain"], where["draw"]])
    assert record["parameters"][CONCENTRATION] == pytest.approx(expected)
    assert result.n_events == len(ROWS) - 1  # E1 is counted through its better report E4


@pytest.mark.slow
def test_sensitivity_power_scales_the_polya_likelihood(od_run, monkeypatch):
    import arviz_stats

    from forecast.model.build import draws_as_arrays
    from forecast.runs.stored import StoredRun
    from forecast.workflows.sensitivity.reweight import power_scaling

    path, root, _ = od_run
    study = load_study(path)
    cells = cell_data(load_observations(study).table, study)
    post = StoredRun.latest(root, study.name).open_posterior("cold")
    captured = {}

    class Captured(Exception):
        pass

    def capture(tree, **kw):
        captured["loglik"] = tree["log_likelihood"]["events"].values
        raise Captured

    monkeypatch.setattr(arviz_stats, "psense_summary", capture)
    with pytest.raises(Captured):
        power_scaling(study, cells, post, study.hypotheses[1])
    total = captured["loglik"].sum(axis=-1).reshape(-1)
    grid = _eta_grid(study, draws_as_arrays(post, study))
    phi = post[CONCENTRATION].values.reshape(-1)
    np.testing.assert_allclose(total, _polya_total(grid, phi, cells), atol=1e-8)
    assert np.max(np.abs(total - _bernoulli_total(grid, cells))) > 0.1


@pytest.mark.slow
def test_evidence_on_an_overdispersed_run_uses_the_cells_likelihood(od_run):
    """evidence's PSIS-LOO per event is the run's own (non-factorised) LOO, and a reversal's change
    of log p(y) is the cells' Polya difference reweighted (the per-event code differs from both)."""
    from forecast.runs.stored import StoredRun
    from forecast.stats.loo import relative_ess
    from forecast.workflows.evidence import run_evidence
    from forecast.workflows.evidence.context import load_run
    from forecast.workflows.evidence.statistics import pattern_term_loglik, pattern_terms

    path, root, _ = od_run
    result = run_evidence(path, runs_root=root, max_refits=0, write=False, allow_unconverged=True)
    assert not any("differs from the PSIS-LOO" in w for w in result.warnings)
    study = load_study(path)
    ctx = load_run(study, StoredRun.latest(root, study.name))
    cells = ctx.cells
    i = int(np.flatnonzero(ctx.table["id"].to_numpy() == "E7")[0])
    key = pattern_terms(cells)[cells.event_pattern[i]]
    flipped = (*key[:3], not key[3], key[4])
    e, phi = ctx.eta[0], ctx.concentration[0]
    r_eff = relative_ess(pattern_term_loglik(e, cells, phi).T, ctx.chains)
    expected = change_of_log_ml(e, Counter({key: 1}), Counter({flipped: 1}), r_eff, cells, phi).delta
    row = next(o for o in result.to_dict()["observations"] if o["id"] == "E7")
    assert row["if_reversed"]["log_marginal_likelihood_change"]["warm"] == pytest.approx(expected, abs=1e-9)
    plain = change_of_log_ml(e, Counter({key: 1}), Counter({flipped: 1}), r_eff).delta
    assert abs(plain - expected) > 1e-3
