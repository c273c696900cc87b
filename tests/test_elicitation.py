"""Priors stated in an analyst's terms (forecast.spec.elicitation) and `forecast priors`.

Nothing here samples a model. Masses are checked with scipy against the stated ones, model
intervals against the exact logit transforms, prior predictive quantiles against closed forms.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from exact import pymc_prior
from helpers import base_study, event, prior, problem_with, write_events, write_study
from scipy import stats
from scipy.special import expit, logit

from forecast.cli import main
from forecast.errors import StudyError
from forecast.model.predictive import prior_draws
from forecast.reports.plots.run_pngs import priors_pngs
from forecast.runs.layout import PRIOR_PREDICTIVE, PRIOR_PREDICTIVE_PLOT, PRIOR_PREDICTIVE_SCHEMA
from forecast.spec.elicitation import maxent, model_interval, preliz_maxent, symmetric_bound
from forecast.spec.priors import FAMILIES, Prior
from forecast.spec.study import load_study
from forecast.workflows.priors import (
    PriorsResult,
    describe_priors,
    hellinger,
    predictive_quantities,
    run_priors,
)

Z90 = stats.norm.ppf(0.95)


def scipy_mass(p: Prior, lo: float, hi: float) -> float:
    """Mass in [lo, hi] computed with scipy directly (independently of Prior.cdf)."""
    if p.dist == "HalfStudentT":
        nu, s = p.kwargs["nu"], p.kwargs["sigma"]
        return float(2 * (stats.t.cdf(hi, nu, 0, s) - stats.t.cdf(max(lo, 0.0), nu, 0, s)))
    d = pymc_prior(p.dist, **p.kwargs)
    return float(d.cdf(hi) - d.cdf(lo))


def load_with(tmp_path, h: int, param: str, entries: dict, study: dict | None = None):
    data = study or base_study()
    data["hypotheses"][h]["priors"][param] = entries
    write_events(tmp_path / "events.csv", [])
    return load_study(write_study(tmp_path, data))


# --- round trips: the fitted distribution puts the stated mass in the stated interval -------


@pytest.mark.parametrize(
    "dist, lo, hi, mass, nu",
    [
        ("Normal", logit(0.6), logit(0.9), 0.9, None),
        ("Normal", -0.3, 0.1, 0.5, None),
        ("StudentT", 0.4, 2.2, 0.9, 4.0),
        ("HalfNormal", 0.0, 0.4, 0.9, None),
        ("HalfNormal", 0.0, 1.0, 0.75, None),
        ("HalfStudentT", 0.0, 0.5, 0.9, 3.0),
        ("LogNormal", 0.1, 1.0, 0.9, None),
        ("Gamma", 0.1, 1.0, 0.8, None),
        ("Gamma", 0.0, 0.5, 0.9, None),
        ("Exponential", 0.0, 1.0, 0.9, None),
    ],
)
def test_maxent_fit_puts_the_stated_mass_in_the_interval(dist, lo, hi, mass, nu):
    fitted = maxent(dist, lo, hi, mass, nu)
    assert fitted.dist == dist and set(fitted.kwargs) == set(FAMILIES[dist].params)
    assert abs(scipy_mass(fitted, lo, hi) - mass) <= 0.01
    if nu is not None:
        assert fitted.kwargs["nu"] == nu  # fixed, not fitted


def test_closed_forms_are_exact_and_agree_with_preliz():
    a, b = logit(0.6), logit(0.9)
    normal = maxent("Normal", a, b, 0.9, None)
    assert normal.kwargs["mu"] == pytest.approx((a + b) / 2, abs=1e-12)
    assert normal.kwargs["sigma"] == pytest.approx((b - a) / (2 * Z90), rel=1e-12)
    numeric = preliz_maxent("Normal", a, b, 0.9, None)
    assert numeric.kwargs["mu"] == pytest.approx(normal.kwargs["mu"], abs=2e-3)
    assert numeric.kwargs["sigma"] == pytest.approx(normal.kwargs["sigma"], rel=2e-3)
    half = maxent("HalfNormal", 0.0, 0.3, 0.8, None)
    assert half.kwargs["sigma"] == pytest.approx(0.3 / stats.norm.ppf(0.9), rel=1e-12)
    assert preliz_maxent("HalfNormal", 0.0, 0.3, 0.8, None).kwargs["sigma"] == pytest.approx(
        half.kwargs["sigma"], rel=2e-3
    )


def test_symmetric_bound_moves_the_share_by_at_most_x_either_way():
    for p0, x in [(0.5, 0.1), (0.8, 0.1), (0.15, 0.05), (0.97, 0.2)]:
        b = symmetric_bound(p0, x)
        up, down = expit(logit(p0) + b) - p0, p0 - expit(logit(p0) - b)
        assert max(up, down) == pytest.approx(x, abs=1e-12) and min(up, down) <= x + 1e-12
    assert symmetric_bound(0.5, 0.1) == pytest.approx(logit(0.6))
    assert symmetric_bound(0.8, 0.1) == pytest.approx(logit(0.8) - logit(0.7))  # the side towards 0.5 binds
    assert symmetric_bound(0.5, 0.6) is None


# --- statements in a study file ---------------------------------------------------------------


def test_share_statement_for_tilt_is_fitted_and_recorded(tmp_path):
    entry = {"share_between": [0.6, 0.9], "mass": 0.9, "says": "mostly cooperative"}
    study = load_with(tmp_path, 0, "tilt", {"all": prior("Normal", mu=0, sigma=1), "east": entry})
    p = study.hypothesis("steady").priors[("tilt", "east")]
    a, b = logit(0.6), logit(0.9)
    assert p.dist == "Normal"
    assert p.kwargs["mu"] == pytest.approx((a + b) / 2) and p.kwargs["sigma"] == pytest.approx((b - a) / (2 * Z90))
    assert abs(scipy_mass(p, a, b) - 0.9) <= 0.01
    rec = p.statement
    assert rec.statement.kind == "share_between" and rec.statement.values == (0.6, 0.9)
    assert (rec.lower, rec.upper) == pytest.approx((a, b)) and rec.fitted_mass == pytest.approx(0.9, abs=0.01)
    assert "60% to 90%" in rec.text() and "mostly cooperative" in rec.text()
    d = p.to_dict()
    assert d["dist"] == "Normal" and d["statement"]["stated"]["share_between"] == [0.6, 0.9]
    # equality ignores the statement: same family and parameters are the same prior
    assert p == Prior("Normal", dict(p.kwargs))
    assert study.hypothesis("steady").priors[("tilt", "west")].statement is None


def test_trend_statement_starts_from_the_hypothesis_own_tilt(tmp_path):
    data = base_study()
    data["hypotheses"][0]["priors"]["tilt"] = {
        "west": prior("Normal", mu=0.0, sigma=1.0),
        "east": prior("Normal", mu=float(logit(0.8)), sigma=0.5),
    }
    study = load_with(tmp_path, 0, "trend", {"all": {"share_moves_at_most": 0.1, "mass": 0.9}}, data)
    west = study.hypothesis("steady").priors[("trend", "west")]
    east = study.hypothesis("steady").priors[("trend", "east")]
    assert west.statement.reference_share == pytest.approx(0.5)
    assert east.statement.reference_share == pytest.approx(0.8)
    b_west, b_east = logit(0.6), logit(0.8) - logit(0.7)
    assert (west.statement.lower, west.statement.upper) == pytest.approx((-b_west, b_west))
    assert east.kwargs["mu"] == pytest.approx(0.0, abs=1e-12)
    assert east.kwargs["sigma"] == pytest.approx(b_east / Z90)
    assert abs(scipy_mass(east, -b_east, b_east) - 0.9) <= 0.01


def test_share_change_interval_is_mapped_exactly_through_the_logit(tmp_path):
    entry = {"share_change_between": [0.0, 0.1], "mass": 0.8, "reference_share": 0.7, "dist": "StudentT", "nu": 5}
    study = load_with(tmp_path, 1, "trend", {"all": entry})
    p = study.hypothesis("shift").priors[("trend", "east")]
    lo, hi = 0.0, logit(0.8) - logit(0.7)
    assert (p.statement.lower, p.statement.upper) == pytest.approx((lo, hi))
    assert p.dist == "StudentT" and p.kwargs["nu"] == 5
    assert abs(scipy_mass(p, lo, hi) - 0.8) <= 0.01


@pytest.mark.parametrize("param, dist", [("spread", "Gamma"), ("volatility", "HalfStudentT"), ("spread", "HalfNormal")])
def test_sd_statements_for_positive_parameters(tmp_path, param, dist):
    study = load_with(tmp_path, 0, param, {"all": {"share_sd_at_most": 0.15, "mass": 0.8, "dist": dist}})
    p = study.hypothesis("steady").priors[(param, "west")]  # tilt Normal(0, 1): reference share 0.5
    b = logit(0.65)
    assert p.dist == dist and (p.statement.lower, p.statement.upper) == pytest.approx((0.0, b))
    assert abs(scipy_mass(p, 0.0, b) - 0.8) <= 0.01


def test_group_specific_entry_overrides_an_all_statement_in_either_order(tmp_path):
    for entries in (
        {"all": {"between": [-1.0, 1.0]}, "east": prior("Normal", mu=2.0, sigma=0.5)},
        {"east": prior("Normal", mu=2.0, sigma=0.5), "all": {"between": [-1.0, 1.0]}},
    ):
        study = load_with(tmp_path, 0, "tilt", entries)
        assert study.hypothesis("steady").priors[("tilt", "east")] == Prior("Normal", {"mu": 2.0, "sigma": 0.5})
        assert study.hypothesis("steady").priors[("tilt", "west")].kwargs["sigma"] == pytest.approx(1.0 / Z90)


@pytest.mark.parametrize(
    "param, entry, fragments",
    [
        (
            "tilt",
            {"share_betwen": [0.6, 0.9], "mass": 0.9},
            ("unknown key 'share_betwen'", "did you mean 'share_between'?"),
        ),
        ("tilt", {"share_between": [0.6, 0.9], "between": [0, 1]}, ("give one statement",)),
        ("spread", {"share_between": [0.6, 0.9]}, ("share_between: not available for spread", "share_sd_at_most")),
        ("tilt", {"share_between": [0.9, 0.6]}, ("lower end 0.9 must be below the upper end 0.6",)),
        ("tilt", {"share_between": [0.0, 0.6]}, ("strictly between 0 and 1",)),
        ("tilt", {"share_between": [0.6, 0.9], "mass": 1.5}, ("mass: expected a probability between 0 and 1",)),
        (
            "tilt",
            {"share_between": [0.6, 0.9], "dist": "Normall"},
            ("unknown distribution 'Normall'", "did you mean 'Normal'?"),
        ),
        (
            "tilt",
            {"share_between": [0.6, 0.9], "dist": "Gamma"},
            ("Gamma does not fit a parameter that takes any real value",),
        ),
        ("tilt", {"share_between": [0.6, 0.9], "nu": 3}, ("only StudentT and HalfStudentT take 'nu'",)),
        (
            "tilt",
            {"share_between": [0.6, 0.9], "reference_share": 0.5},
            ("reference_share: only statements about share changes",),
        ),
        ("spread", {"between": [-0.5, 1.0]}, ("spread is positive",)),
        ("trend", {"share_moves_at_most": 1.5}, ("expected a share of points between 0 and 1",)),
        ("trend", {"share_change_between": [0.3, 0.6]}, ("leaves the range 0-100%",)),
        (
            "spread",
            {"between": [0.5, 0.6], "mass": 0.9},
            ("no HalfNormal puts 90% of its mass in [0.5, 0.6]", "choose another 'dist'"),
        ),
    ],
)
def test_bad_statements_get_clear_located_errors(tmp_path, param, entry, fragments):
    with pytest.raises(StudyError) as e:
        load_with(tmp_path, 0, param, {"all": entry})
    problem_with(e.value, f"hypotheses[0] ('steady').priors.{param}.all", *fragments)


def test_distribution_entries_keep_their_messages(tmp_path):
    with pytest.raises(StudyError) as e:
        load_with(tmp_path, 0, "tilt", {"all": {"dist": "Normal", "kwargs": {"mu": 0, "sigma": 1}, "kwarg": 1}})
    problem_with(e.value, "priors.tilt.all: unknown key 'kwarg'", "did you mean 'kwargs'?", "allowed: 'dist', 'kwargs'")


def test_model_interval_of_between_is_the_interval_itself():
    from forecast.spec.elicitation import Statement

    assert model_interval(Statement("tilt", "between", (-1.0, 2.0), 0.9, "Normal"), None) == (-1.0, 2.0)


# --- densities: scipy in PyMC's parameterisations -----------------------------------------------


@pytest.mark.parametrize(
    "dist, kwargs",
    [
        ("Normal", {"mu": 0.3, "sigma": 0.7}),
        ("StudentT", {"nu": 3.0, "mu": -0.2, "sigma": 0.5}),
        ("HalfNormal", {"sigma": 0.4}),
        ("HalfStudentT", {"nu": 4.0, "sigma": 0.6}),
        ("LogNormal", {"mu": -1.0, "sigma": 0.5}),
        ("Gamma", {"alpha": 2.0, "beta": 3.0}),
        ("Exponential", {"lam": 2.5}),
    ],
)
def test_prior_logpdf_matches_pymc(dist, kwargs):
    import pymc as pm

    p = Prior(dist, kwargs)
    x = np.array([0.05, 0.3, 1.1, 2.5])
    expected = pm.logp(getattr(pm, dist).dist(**kwargs), x).eval()
    # PyTensor's gammaln differs from scipy's in the 8th digit
    np.testing.assert_allclose(p.logpdf(x), expected, rtol=1e-6, atol=1e-7)
    q = np.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(p.cdf(p.ppf(q)), q, rtol=1e-9)


# --- prior predictive ----------------------------------------------------------------------------


def static_study(tmp_path, hypotheses: list[dict]):
    data = base_study()
    data["time"]["components"] = []
    data["hypotheses"] = hypotheses
    write_events(tmp_path / "events.csv", [])
    return load_study(write_study(tmp_path, data))


def hyp(hid: str, tilt_mu: float, tilt_sigma: float, spread: float, p: float = 0.5) -> dict:
    return {
        "id": hid,
        "label": hid.title(),
        "claim": "c",
        "prior_probability": p,
        "priors": {
            "tilt": {"all": prior("Normal", mu=tilt_mu, sigma=tilt_sigma)},
            "spread": {"all": prior("HalfNormal", sigma=spread)},
        },
    }


def test_prior_predictive_shares_match_the_closed_form(tmp_path):
    """With a negligible spread, every domain's share is expit(tilt): quantiles expit(mu + z_q s)."""
    study = static_study(tmp_path, [hyp("a", 1.0, 0.5, 1e-9), hyp("b", -1.0, 0.5, 1e-9)])
    q = predictive_quantities(study, prior_draws(study, study.hypotheses[0], 40_000, np.random.default_rng(1)))
    for name in ("domain_share/east/energy", "typical_share/west/reference"):
        for level in (0.05, 0.25, 0.5, 0.75, 0.95):
            exact = expit(1.0 + stats.norm.ppf(level) * 0.5)
            assert np.quantile(q[name], level) == pytest.approx(exact, abs=0.006)


def test_prior_predictive_with_a_spread_matches_a_one_dimensional_integral(tmp_path):
    """tilt fixed by a tiny sigma, spread HalfNormal(1): P(share <= x) = P(spread * z <= logit x - 1)."""
    study = static_study(tmp_path, [hyp("a", 1.0, 1e-9, 1.0), hyp("b", 0.0, 1.0, 1.0)])
    q = predictive_quantities(study, prior_draws(study, study.hypotheses[0], 40_000, np.random.default_rng(2)))
    share = q["domain_share/west/defence"]
    # spread * z with spread ~ HalfNormal(1), z ~ N(0, 1) is symmetric: P(spread*z <= t) by quadrature
    s = np.linspace(1e-6, 8, 4001)
    for x in (0.4, 0.6, 0.73, 0.9):
        t = logit(x) - 1.0
        cdf = np.trapezoid(stats.halfnorm.pdf(s) * stats.norm.cdf(t / s), s)
        assert np.mean(share <= x) == pytest.approx(cdf, abs=0.01)


def test_hellinger_distance_of_equal_and_disjoint_samples():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=20_000), rng.normal(size=20_000)
    assert hellinger(a, b) < 0.05
    assert hellinger(a, b + 100) > 0.95  # exactly 1, less the one bin the two samples share
    # two normals one standard deviation apart: H^2 = 1 - exp(-1/8)
    assert hellinger(a, b + 1.0) == pytest.approx(math.sqrt(1 - math.exp(-1 / 8)), abs=0.03)


def test_nearly_identical_hypotheses_are_warned_about(tmp_path):
    study_path = write_study(
        tmp_path,
        {
            **base_study(),
            "time": {**base_study()["time"], "components": []},
            "hypotheses": [hyp("same", 0.0, 1.0, 0.5), hyp("alike", 0.05, 1.0, 0.5)],
        },
    )
    write_events(tmp_path / "events.csv", [])
    result = run_priors(study_path, runs_root=tmp_path / "runs", n=20_000)
    assert len(result.warnings) == 1 and "no data can" in result.warnings[0]
    assert result.distinguishability[0]["indistinguishable"]
    other = static_study(tmp_path, [hyp("east_lean", 1.5, 0.5, 0.5), hyp("west_lean", -1.5, 0.5, 0.5)])
    result = run_priors(other.path, runs_root=tmp_path / "runs", n=20_000)
    assert result.warnings == [] and result.distinguishability[0]["max_hellinger"] > 0.8


def test_the_default_study_hypotheses_are_distinguishable_a_priori(tmp_path):
    from helpers import DEFAULT_STUDY

    result = run_priors(DEFAULT_STUDY, runs_root=tmp_path, n=5000, write=False)
    assert result.warnings == [] and not result.written and result.note is None
    assert {h["id"] for h in result.hypotheses} == {"hedging", "realignment", "alignment"}


# --- the command -----------------------------------------------------------------------------------


def fake_run(root, study, observations_sha256: str | None = None) -> object:
    """A run directory that `StoredRun` reads, made from ``study`` and its observations (no fits inside)."""
    import hashlib
    import shutil

    if observations_sha256 is None:
        observations_sha256 = hashlib.sha256(study.observations_path.read_bytes()).hexdigest()
    run = root / study.name / "20250101T000000Z"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"schema_version": 1, "hypotheses": []}))
    manifest = {"created": "2025-01-01T00:00:00Z", "study": {"sha256": study.sha256}}
    (run / "manifest.json").write_text(json.dumps(manifest | {"observations": {"sha256": observations_sha256}}))
    shutil.copy(study.path, run / "study.toml")
    (root / study.name / "LATEST").write_text(run.name + "\n")
    return run


def test_priors_command_json_and_files(tmp_path):
    data = base_study()
    data["hypotheses"][0]["priors"]["tilt"] = {"all": {"share_between": [0.6, 0.9], "mass": 0.9}}
    write_events(tmp_path / "events.csv", [])
    path = write_study(tmp_path, data)
    run = fake_run(tmp_path / "runs", load_study(path))
    res = CliRunner().invoke(
        main, ["priors", str(path), "--runs-dir", str(tmp_path / "runs"), "--json", "--draws", "4000"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert {"study", "hypotheses", "distinguishability", "warnings", "run_dir", "written", "files"} <= set(out)
    assert out["written"] and out["run_dir"] == str(run)
    tilt = next(p for p in out["hypotheses"][0]["priors"] if p["parameter"] == "tilt")
    assert tilt["statement"]["stated"] == {"share_between": [0.6, 0.9], "mass": 0.9, "dist": "Normal"}
    shares = out["hypotheses"][0]["predictive"]["domain_shares"]
    assert {(r["group"], r["domain"]) for r in shares} == {
        (g, d) for g in ("west", "east") for d in ("defence", "energy")
    }
    assert all(r["q05"] <= r["q25"] <= r["median"] <= r["q75"] <= r["q95"] for r in shares)
    assert json.loads((run / PRIOR_PREDICTIVE).read_text())["study"] == "mini"
    assert (run / PRIOR_PREDICTIVE_PLOT).read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary files left
    text = CliRunner().invoke(main, ["priors", str(path), "--runs-dir", str(tmp_path / "runs"), "--draws", "4000"])
    assert text.exit_code == 0 and "stated: 90% sure that 60% to 90%" in text.output


def test_priors_result_is_a_record_with_the_json_of_prior_predictive_json(tmp_path):
    data = base_study()
    write_events(tmp_path / "events.csv", [])
    path = write_study(tmp_path, data)
    run = fake_run(tmp_path / "runs", load_study(path))
    result = run_priors(path, runs_root=tmp_path / "runs", n=2000, plots=priors_pngs)
    assert isinstance(result, PriorsResult) and result.written and result.run_dir == str(run)
    stored = json.loads((run / PRIOR_PREDICTIVE).read_text())
    assert stored == result.to_dict() and stored["schema_version"] == PRIOR_PREDICTIVE_SCHEMA
    assert list(stored)[-3:] == ["run_dir", "written", "files"] and "note" not in stored
    assert stored["files"] == {"plot": PRIOR_PREDICTIVE_PLOT}
    assert stored["hypotheses"][0]["priors"] == describe_priors(load_study(path))[0]["priors"]
    # without a plotter only the JSON is written, and it says so
    (run / PRIOR_PREDICTIVE_PLOT).unlink()
    plain = run_priors(path, runs_root=tmp_path / "runs", n=2000)
    assert plain.written and plain.files == {} and not (run / PRIOR_PREDICTIVE_PLOT).exists()


def test_priors_says_exactly_why_nothing_was_written(tmp_path):
    data = base_study()
    write_events(tmp_path / "events.csv", [event(1)])
    path = write_study(tmp_path, data)
    study = load_study(path)
    result = run_priors(path, runs_root=tmp_path / "runs", n=2000)
    assert not result.written and result.run_dir is None
    assert result.note.startswith("nothing written: no runs of study 'mini' under ")
    assert result.to_dict()["note"] == result.note
    run = fake_run(tmp_path / "runs", study, observations_sha256="0" * 64)
    result = run_priors(path, runs_root=tmp_path / "runs", n=2000)
    assert not result.written and not (run / PRIOR_PREDICTIVE).exists()
    assert f"run {run} does not match the current inputs: the observations have changed" in result.note
    # a changed comment and label are not a change of inputs (the one rule)
    (run / "manifest.json").unlink()
    (run.parent / "LATEST").unlink()
    run.rename(tmp_path / "old")
    run = fake_run(tmp_path / "runs", study)
    path.write_text(path.read_text().replace('label = "West"', 'label = "The West"') + "# a comment\n")
    assert run_priors(path, runs_root=tmp_path / "runs", n=2000).written
    # observations that do not validate: nothing can match them, and the note says why
    (tmp_path / "events.csv").write_text("id,event_date\nx,2020-01-01\n")
    result = run_priors(path, runs_root=tmp_path / "runs", n=2000)
    assert not result.written and "observations that do not validate" in result.note
    (run / "summary.json").write_text("{not json")
    (tmp_path / "events.csv").unlink()
    write_events(tmp_path / "events.csv", [event(1)])
    result = run_priors(path, runs_root=tmp_path / "runs", n=2000)
    assert not result.written and "summary.json: unreadable run summary" in result.note


def test_priors_command_bad_study_exits_2(tmp_path):
    data = base_study()
    data["hypotheses"][0]["priors"]["tilt"] = {"all": {"share_between": [0.6, 1.2]}}
    write_events(tmp_path / "events.csv", [])
    res = CliRunner().invoke(main, ["priors", str(write_study(tmp_path, data)), "--json"])
    assert res.exit_code == 2 and "strictly between 0 and 1" in res.output and res.stdout.strip() == ""
