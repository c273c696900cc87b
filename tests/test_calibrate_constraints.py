"""`forecast calibrate` on constraint hypotheses: one encompassing fit per simulated data set.

The pieces first, without sampling: parameters drawn from the encompassing prior restricted to a
hypothesis's region lie in that region (and follow the prior there); each data set records the
hypothesis it was drawn from, drawn with the prior probabilities; a region too small to draw from
by rejection is refused before any fit; the checks on calibrated constraint probabilities pass and
on over-confident ones fail; the command keeps the two comparisons apart (calibration.json's
"constraints", its own text section, --comparison). Then, in the slow layer, a small real
calibration of a tiny static study: 20 data sets, one encompassing fit each, consistent with exact
calibration within the Monte Carlo band. Like tests/test_calibrate.py's, that band is wide (CI
size): it catches gross errors (prior masses against the wrong prior, regions swapped, a Bayes
factor inverted), not subtle ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from builders_cli import calibrate_args
from click.testing import CliRunner
from helpers import prior, static_study, write_study

import forecast.workflows.calibrate.constraints as constraints_module
import forecast.workflows.calibrate.run as calibrate_module
from forecast.cli import main
from forecast.errors import InputError
from forecast.fit.sampler import SamplerSettings
from forecast.reports.text.calibrate import render_calibration
from forecast.spec.study import load_study
from forecast.workflows.calibrate import (
    MIN_DATASETS,
    ConstraintReplicate,
    constraint_setup,
    restricted_draw,
    run_calibration,
    simulate_constraint_replicate,
)
from forecast.workflows.calibrate.run import constraint_calibration
from forecast.workflows.constraints import PriorDraws, Regions
from forecast.workflows.simulate import uniform_design

N_EVENTS = 16
SMALL = SamplerSettings(draws=1000, tune=1000, chains=2, seed=5)
PRIOR_DRAWS = 4_000
ENCOMPASSING = {
    "priors": {
        "tilt": {"all": prior("Normal", mu=0.0, sigma=1.0)},
        "spread": {"all": prior("HalfNormal", sigma=0.3)},
    },
    "prior_draws": PRIOR_DRAWS,
}
CONSTRAINTS = [
    {"id": "cooperative", "label": "Mostly cooperative", "constraints": ["share(g, all) > 0.6"]},
    {"id": "conflictual", "label": "Mostly conflictual", "constraints": ["share(g, all) < 0.4"]},
    {"id": "mixed", "label": "Neither", "complement": True},
]


def tiny(prior_specified: bool = False, constraints: list | None = None) -> dict:
    """A static one-group study with constraint hypotheses (and, if asked, prior-specified ones)."""
    data = static_study(
        "calconstraints",
        {"up": 0.75, "down": -0.75},
        spread=prior("HalfNormal", sigma=0.3),
        domains=("d", "e"),
        extra={"encompassing": ENCOMPASSING, "constraint_hypotheses": constraints or CONSTRAINTS},
    )
    if not prior_specified:
        del data["hypotheses"]
    return data


def write_tiny(d: Path, **kw) -> Path:
    write_study(d, tiny(**kw), "s.toml")
    (d / "events.csv").write_text("id,event_date,counterpart,domain,outcome,reliability,description,source\n")
    return d / "s.toml"


@pytest.fixture()
def study(tmp_path):
    return load_study(write_tiny(tmp_path))


# --- the pieces (no sampling) ------------------------------------------------------------------------


def test_restricted_prior_draws_lie_in_their_region_and_follow_the_prior_there(study):
    setup = constraint_setup(study, 1)
    regions, draws = Regions(study, setup.spec), PriorDraws(study, setup.spec.priors)
    rng = np.random.default_rng(2)
    for hid in setup.ids:
        got = [restricted_draw(regions, draws, hid, rng, mass=setup.masses[hid].value) for _ in range(300)]
        arrays = {k: np.stack([p[k] for p, _ in got]) for k in got[0][0]}
        margins = regions.margins(arrays)
        assert (margins[hid] >= 0).all(), hid
        for other in setup.ids:  # the regions partition the space: inside one, outside the others
            if other != hid:
                assert (margins[other] < 0).all(), (hid, other)
        # candidates per draw are geometric with mean 1 / prior mass
        mean = np.mean([c for _, c in got])
        mass = setup.masses[hid].value
        assert mean == pytest.approx(1 / mass, rel=5 * np.sqrt((1 - mass) / 300))
    # the restricted prior is the prior conditioned on the region: its tilt matches the prior's
    # tilt among plain prior draws that fall inside
    plain = draws.arrays(rng.standard_normal((20_000, draws.dim)))
    inside = regions.margins(plain)["cooperative"] >= 0
    tilts = np.array([restricted_draw(regions, draws, "cooperative", rng, mass=0.3)[0]["tilt"][0] for _ in range(400)])
    ref = plain["tilt"][inside, 0]
    assert tilts.mean() == pytest.approx(ref.mean(), abs=4 * ref.std() / np.sqrt(400))


def test_each_data_set_records_its_truth_drawn_with_the_prior_probabilities(study):
    setup = constraint_setup(study, 1)
    design = uniform_design(study, N_EVENTS, np.random.default_rng(0))
    a = simulate_constraint_replicate(study, setup, design, 9, 4)
    b = simulate_constraint_replicate(study, setup, design, 9, 4)
    assert a[0] == b[0] and a[2].equals(b[2]) and a[3] == b[3]
    regions = Regions(study, setup.spec)
    trues = []
    for i in range(60):
        true, params, table, candidates = simulate_constraint_replicate(study, setup, design, 9, i)
        trues.append(true)
        assert regions.margins({k: v[None] for k, v in params.items()})[setup.ids[true]][0] >= 0
        assert candidates >= 1 and len(table) == N_EVENTS
    freq = np.bincount(trues, minlength=3) / 60
    assert np.allclose(freq, 1 / 3, atol=4 * np.sqrt(2 / 9 / 60))


def test_prior_masses_are_estimated_once_as_update_does(study):
    setup = constraint_setup(study, 7)
    assert setup.ids == ("cooperative", "conflictual", "mixed") and setup.prior_draws == PRIOR_DRAWS
    assert np.allclose(setup.prior, 1 / 3)
    assert sum(m.value for m in setup.masses.values()) == pytest.approx(1.0)
    from forecast.settings import derive_rng
    from forecast.workflows.constraints import prior_masses

    again, _ = prior_masses(
        Regions(study, setup.spec),
        PriorDraws(study, setup.spec.priors),
        PRIOR_DRAWS,
        derive_rng(7, "constraints", "prior"),
    )
    assert {h: m.value for h, m in again.items()} == {h: m.value for h, m in setup.masses.items()}


def test_a_region_too_small_to_draw_from_is_refused_before_any_fit(study, monkeypatch):
    monkeypatch.setattr(constraints_module, "MAX_CANDIDATES", 2)  # every region here has mass below 1/2
    with pytest.raises(InputError, match=r"prior mass .* encompassing prior draws per data set .*--comparison prior"):
        constraint_setup(study, 1)


def fake_constraint_replicates(monkeypatch, sharpen: float = 1.0, failing: tuple[int, ...] = ()):
    """Calibrated constraint probabilities by construction (Dirichlet, truth drawn from them); with
    ``sharpen`` > 1 the same ranking pushed towards 0 and 1 (over-confident)."""

    def run(study, design, settings, index, setup):
        rng = np.random.default_rng([index, 3])
        p = rng.dirichlet(np.ones(len(setup.ids)) * 0.7)
        true = int(rng.choice(len(p), p=p))
        q = p**sharpen / (p**sharpen).sum()
        n = len(setup.ids)
        return ConstraintReplicate(
            index, true, 3, 7, tuple(q), (0.0,) * n, (0.1,) * n, (None,) * n, tuple(q),
            (index not in failing,), ("encompassing: r_hat 1.2",) if index in failing else (), 0.01, "here",
        )  # fmt: skip

    monkeypatch.setattr(calibrate_module, "run_constraint_replicate", run)


def test_the_band_passes_calibrated_constraint_probabilities_and_fails_over_confident_ones(study, monkeypatch):
    setup = constraint_setup(study, 1)
    fake_constraint_replicates(monkeypatch)
    reps = [calibrate_module.run_constraint_replicate(study, None, SMALL, i, setup) for i in range(3000)]
    good = constraint_calibration(setup, reps, 5, 0.0)
    assert good.consistent is True and all(m.within for m in good.calibration.mean_posterior)
    fake_constraint_replicates(monkeypatch, sharpen=3.0)
    sharp = [calibrate_module.run_constraint_replicate(study, None, SMALL, i, setup) for i in range(3000)]
    bad = constraint_calibration(setup, sharp, 5, 0.0)
    assert bad.consistent is False and bad.calibration.brier.z > 3


def test_a_true_hypothesis_drawn_only_twice_does_not_narrow_the_band():
    """Two data sets of one truth, with nearly equal posteriors, once gave the stratified average a
    standard error near zero (a band far too narrow); below MIN_STRATUM the plain average is used."""
    from forecast.workflows.calibrate.checks import MIN_STRATUM, calibration_checks

    rng = np.random.default_rng(8)
    true = np.array([0] * 9 + [1] * 9 + [2] * 2)
    post = rng.dirichlet(np.ones(3), size=20)
    post[true == 2] = [[0.02, 0.03, 0.95], [0.01, 0.02, 0.97]]
    out = calibration_checks(true, post, np.full(3, 1 / 3))
    assert MIN_STRATUM > 2 and all(m.estimator == "plain average" for m in out.mean_posterior)
    assert all(m.se == pytest.approx(m.plain_se) for m in out.mean_posterior)
    enough = np.array([0] * 7 + [1] * 7 + [2] * 6)
    assert calibration_checks(enough, post, np.full(3, 1 / 3)).mean_posterior[0].estimator.startswith("stratified")


def test_calibrate_on_a_constraint_study_keeps_its_own_section(tmp_path, monkeypatch):
    fake_constraint_replicates(monkeypatch)
    path = write_tiny(tmp_path)
    result = run_calibration(path, SMALL, n_datasets=MIN_DATASETS, n=N_EVENTS, workers=0, runs_root=tmp_path / "runs")
    assert result.comparisons == ("constraints",) and result.calibration is None
    k = result.constraints
    assert k.n_datasets == MIN_DATASETS and [r.index for r in k.replicates] == list(range(MIN_DATASETS))
    assert all(r.true in k.hypotheses for r in k.replicates)
    assert sum(x.n_draws for x in k.rejection.values()) == MIN_DATASETS
    stored = json.loads(Path(result.written).read_text())
    assert "calibration" not in stored and "hypotheses" not in stored
    assert stored["constraints"]["calibration"]["verdict"] == k.verdict
    assert set(stored["constraints"]["prior_masses"]) == {"cooperative", "conflictual", "mixed"}
    text = render_calibration(result)
    assert "Constraint hypotheses (20 data sets of their own, ONE encompassing fit each" in text
    assert "restricted to each region (by rejection)" in text and "Prior-specified" not in text


def test_an_encompassing_fit_failing_the_gate_stops_the_calibration_unless_allowed(tmp_path, monkeypatch):
    from forecast.errors import ConvergenceError

    fake_constraint_replicates(monkeypatch, failing=(1,))
    path = write_tiny(tmp_path)
    with pytest.raises(ConvergenceError, match=r"constraint hypotheses had an encompassing fit \(data sets \[1\]\)"):
        run_calibration(path, SMALL, n_datasets=3, n=N_EVENTS, workers=0, runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.json"))
    kept = run_calibration(path, SMALL, n_datasets=3, n=N_EVENTS, workers=0, write=False, allow_unconverged=True)
    assert not kept.converged and kept.n_unconverged == 1 and "UNRELIABLE" in kept.warning
    assert kept.constraints.n_unconverged == 1 and not kept.constraints.replicates[1].converged
    assert "WARNING (constraint hypotheses)" in render_calibration(kept)


def test_a_study_with_both_calibrates_both_apart_and_the_option_chooses(tmp_path, monkeypatch):
    fake_constraint_replicates(monkeypatch)
    from test_calibrate import fake_replicates

    fake_replicates(monkeypatch)
    path = write_tiny(tmp_path, prior_specified=True)
    both = run_calibration(path, SMALL, n_datasets=4, n=N_EVENTS, workers=0, write=False)
    assert both.comparisons == ("prior", "constraints")
    assert both.hypotheses == ("up", "down") and both.constraints.hypotheses == ("cooperative", "conflictual", "mixed")
    out = both.to_dict()
    assert list(out)[:3] == ["study", "hypotheses", "prior_probability"] and "constraints" in out
    text = render_calibration(both)
    assert text.index("Prior-specified hypotheses") < text.index("Constraint hypotheses (4 data sets")
    only = run_calibration(path, SMALL, n_datasets=3, n=N_EVENTS, workers=0, write=False, comparison="prior")
    assert only.constraints is None and "constraints" not in only.to_dict()
    plain = write_study(tmp_path / "plain", static_study("p", {"a": 0.5, "b": -0.5}), "s.toml")
    (plain.parent / "events.csv").write_text(
        "id,event_date,counterpart,domain,outcome,reliability,description,source\n"
    )
    with pytest.raises(InputError, match="no \\[\\[constraint_hypotheses\\]\\]"):
        run_calibration(plain, SMALL, n_datasets=3, n=N_EVENTS, workers=0, write=False, comparison="constraints")
    runner = CliRunner()
    bad = runner.invoke(main, ["calibrate", str(path), "--comparison", "neither"])
    assert bad.exit_code == 2


# --- a small real calibration (slow) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """20 data sets, ONE encompassing fit each (slow: only tests marked slow use it)."""
    d = tmp_path_factory.mktemp("calconstraints")
    path = write_tiny(d)
    calls = []
    original = constraints_module.prior_masses
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constraints_module, "prior_masses", lambda *a, **k: calls.append(1) or original(*a, **k))
        result = run_calibration(path, SMALL, n_datasets=MIN_DATASETS, n=N_EVENTS, workers=0, runs_root=d / "runs")
    return d, result, len(calls)


@pytest.mark.slow
def test_calibrate_on_a_constraint_study_is_calibrated_within_its_monte_carlo_band(real):
    _, result, _ = real
    k = result.constraints
    assert k.converged and k.n_datasets == MIN_DATASETS
    c = k.calibration
    assert c.consistent, json.dumps(c.to_dict(), indent=1)
    for m in c.mean_posterior:
        assert m.band_low <= m.mean_posterior <= m.band_high
    assert k.design_analysis.picks_true > 1 / 3  # the data carry information: better than a guess


@pytest.mark.slow
def test_the_small_run_would_catch_a_bayes_factor_off_by_a_factor_of_twenty(real):
    """The power of the CI-sized check: the same data sets with one hypothesis's odds times e^3."""
    from forecast.workflows.calibrate.checks import calibration_checks

    k = real[1].constraints
    ids = list(k.hypotheses)
    true = np.array([ids.index(r.true) for r in k.replicates])
    post = np.array([[r.posterior_probability[h] for h in ids] for r in k.replicates])
    shifted = post * np.exp([3.0, 0.0, 0.0])
    shifted /= shifted.sum(axis=1, keepdims=True)
    prior_p = np.array([k.prior_probability[h] for h in ids])
    assert calibration_checks(true, post, prior_p).consistent is True
    assert calibration_checks(true, shifted, prior_p).consistent is False


@pytest.mark.slow
def test_one_encompassing_fit_per_data_set_and_prior_masses_once(real):
    d, result, prior_mass_calls = real
    assert prior_mass_calls == 1
    study = load_study(d / "s.toml")
    setup = constraint_setup(study, SMALL.seed)
    design = uniform_design(study, N_EVENTS, np.random.default_rng([SMALL.seed, 5]))
    for r in result.constraints.replicates[:5]:
        true, _, table, candidates = simulate_constraint_replicate(study, setup, design, SMALL.seed, r.index)
        assert r.true == setup.ids[true] and r.candidates == candidates
        assert r.n_cooperative == int(table["cooperative"].sum())
        assert sum(r.posterior_probability.values()) == pytest.approx(1.0)
        assert not [p for p in r.problems if not p.startswith("encompassing: ")]


@pytest.mark.slow
def test_cli_calibrate_on_a_constraint_study(real):
    d, _, _ = real
    args = calibrate_args(d / "s.toml", d / "runs", datasets=2, n_events=N_EVENTS, extra=("--allow-unconverged",))
    runner = CliRunner()
    text = runner.invoke(main, args)
    assert text.exit_code == 0, text.output
    assert "Constraint hypotheses (2 data sets of their own" in text.stdout and "Too few data sets" in text.stdout
    out = json.loads(runner.invoke(main, [*args, "--json", "--comparison", "constraints"]).stdout)
    assert out["comparisons"] == ["constraints"] and "hypotheses" not in out
    assert [r["index"] for r in out["constraints"]["replicates"]] == [0, 1]
    no = runner.invoke(main, [*args, "--comparison", "prior"])
    assert no.exit_code != 0 and "at least two hypotheses" in no.output
