"""`forecast sensitivity`: reweighting against refits and exact answers, prior odds, power-scaling.

One small static study (one counterpart group, two domains, mostly cooperative events, a small
spread so the tilt carries the data) with a weak and a deliberately conflicting hypothesis
(tilt prior centred on a 18% share against 85% observed); the model is compiled once for the module and
shared by `forecast update` and every refit (``run_update`` is pointed at it). Tests that use it
sample, so they are marked slow; the grid schema, the numerics, the record and the renderer are
tested without a fit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from builders_sensitivity import sensitivity_result
from click.testing import CliRunner
from exact import log_ml_group, pymc_prior
from helpers import DEFAULT_STUDY, one_group_events_csv, prior, static_study, write_study
from scipy.special import softmax

from forecast.cli import main
from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.errors import ConvergenceError
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.reports.plots.run_pngs import sensitivity_pngs
from forecast.reports.text.sensitivity import render_sensitivity
from forecast.runs.layout import SENSITIVITY, SENSITIVITY_PRIOR_ODDS_PLOT, SENSITIVITY_SCHEMA, SENSITIVITY_TORNADO_PLOT
from forecast.runs.store import dumps
from forecast.runs.stored import StoredRun
from forecast.spec.priors import Prior
from forecast.spec.study import load_study
from forecast.stats.loo import posterior_probabilities
from forecast.workflows.sensitivity import (
    GridSpec,
    SensitivityResult,
    SensitivitySpecError,
    build_grid,
    grid_spec_from,
    load_base,
    log_prior_ratio,
    parse_grid_spec,
    prior_odds,
    psis_reweight,
    run_sensitivity,
    scale_prior,
    shift_prior,
)
from forecast.workflows.update import run_update

SETTINGS = SamplerSettings(draws=2000, tune=1000, chains=4, seed=5)

STUDY = static_study(
    "sens",
    {"weak": (0.0, 2.5), "conflict": (-1.5, 0.4)},
    spread=prior("HalfNormal", sigma=0.1),
    group="a",
    counterparts=("a",),
    domains=("x", "y"),
    observations="obs.csv",
)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("sensitivity")
    (d / "obs.csv").write_text(one_group_events_csv())
    write_study(d, STUDY, "s.toml")
    study = load_study(d / "s.toml")
    cells = cell_data(load_observations(study).table, study)
    model = StudyModel(study, cells)
    root = d / "runs"
    with pytest.MonkeyPatch.context() as mp:  # one compile for the module: update uses our model
        mp.setattr("forecast.workflows.update.StudyModel", lambda s, c: model)
        update = run_update(d / "s.toml", SETTINGS, runs_root=root)
    counts = [
        (float(cells.w_coop[cells.domain == k].sum()), float(cells.w_conf[cells.domain == k].sum())) for k in range(2)
    ]
    return SimpleNamespace(
        path=d / "s.toml", study=study, cells=cells, model=model, root=root, update=update, counts=counts
    )


def exact_log_ml(case, tilt: Prior, spread: Prior) -> float:
    """Exact log p(y) by quadrature (tests/exact.py), on grids wide enough for a conflicting prior."""
    s = pymc_prior(spread.dist, **spread.kwargs)
    return log_ml_group(
        pymc_prior(tilt.dist, **tilt.kwargs),
        s,
        case.counts,
        tilt_range=(-10.0, 10.0),
        n_tilt=801,
        log_spread_range=(-40.0, 1.0),
    )


@pytest.fixture(scope="module")
def refit_all(case):
    """Every variant of the weak hypothesis's tilt refitted (and the base), beside its reweighting."""
    spec = GridSpec(refit="all", hypotheses=("weak",), parameters=("tilt",), joint=False)
    return run_sensitivity(case.path, spec, runs_root=case.root, workers=0, model=case.model, write=False).to_dict()


@pytest.fixture(scope="module")
def auto_record(case):
    return run_sensitivity(
        case.path, GridSpec(), runs_root=case.root, workers=0, model=case.model, plots=sensitivity_pngs
    )


@pytest.fixture(scope="module")
def auto(auto_record):
    return auto_record.to_dict()


# --- exact pieces (no sampling) ----------------------------------------------------------------


def test_psis_reweight_recovers_a_known_expectation():
    """Draws x ~ N(0, 1) and ratio exp(a x): log E[ratio] = a^2 / 2 exactly."""
    x = np.random.default_rng(0).standard_normal((4, 2000))
    for a in (0.2, 0.5, 1.0):
        rw = psis_reweight(a * x)
        assert abs(rw.delta_log_ml - a * a / 2) <= 3 * rw.se + 1e-3
        assert rw.pareto_k < 0.7 and np.exp(rw.log_weights).sum() == pytest.approx(1.0)
    same = psis_reweight(np.zeros((4, 100)))
    assert same.delta_log_ml == 0.0 and same.se == 0.0 and same.pareto_k == -np.inf


def test_prior_odds_curve_is_bayes_rule_exactly():
    log_ml = np.array([-10.0, -12.5, -11.0])
    prior = np.array([0.2, 0.5, 0.3])
    ids = ["a", "b", "c"]
    odds = prior_odds(log_ml, prior, ids, np.array([0.1, 0.2, 0.1]))
    for i, h in enumerate(ids):
        o = odds[h]
        rest = [j for j in range(3) if j != i]
        for pi, post in zip(o["curve"]["prior"][::7], o["curve"]["posterior"][::7], strict=True):
            new_prior = prior.copy()
            new_prior[rest] = prior[rest] / prior[rest].sum() * (1 - pi)
            new_prior[i] = pi
            expected = posterior_probabilities(log_ml, np.zeros(3), new_prior)[0][i]
            assert post == pytest.approx(expected, abs=1e-12)
        # at the flip prior, h ties with the hypothesis it flips against; at even odds, P = 1/2
        new_prior = prior.copy()
        new_prior[rest] = prior[rest] / prior[rest].sum() * (1 - o["flip_prior"])
        new_prior[i] = o["flip_prior"]
        p = softmax(np.log(new_prior) + log_ml)
        assert p[i] == pytest.approx(p[ids.index(o["flip_against"])], rel=1e-10)
        assert p[i] >= max(p) - 1e-12
        new_prior[rest] = prior[rest] / prior[rest].sum() * (1 - o["even_odds_prior"])
        new_prior[i] = o["even_odds_prior"]
        assert softmax(np.log(new_prior) + log_ml)[i] == pytest.approx(0.5, abs=1e-12)
    # two hypotheses: P = pi B / (pi B + 1 - pi), flip where the prior odds equal 1/B
    two = prior_odds(np.array([0.0, -2.0]), np.array([0.5, 0.5]), ["x", "y"])
    assert two["x"]["flip_prior"] == pytest.approx(1 / (1 + math.e**2))
    pi = np.array(two["x"]["curve"]["prior"])
    B = math.e**2
    np.testing.assert_allclose(two["x"]["curve"]["posterior"], pi * B / (pi * B + 1 - pi), rtol=1e-12)


def test_perturbations_shift_and_scale_exactly():
    p = Prior("Normal", {"mu": 1.0, "sigma": 0.5})
    assert shift_prior(p, 0.5).kwargs == {"mu": 1.25, "sigma": 0.5}
    assert scale_prior(p, 2.0).kwargs == {"mu": 1.0, "sigma": 1.0}
    q = np.array([0.1, 0.5, 0.9])
    for dist, kw in [
        ("HalfNormal", {"sigma": 0.4}),
        ("HalfStudentT", {"nu": 3.0, "sigma": 0.4}),
        ("LogNormal", {"mu": -1.0, "sigma": 0.5}),
        ("Gamma", {"alpha": 2.0, "beta": 3.0}),
        ("Exponential", {"lam": 2.0}),
    ]:
        base = Prior(dist, kw)
        np.testing.assert_allclose(scale_prior(base, 1.5).ppf(q), 1.5 * base.ppf(q), rtol=1e-9)


def test_default_grid_on_the_default_study():
    study = load_study(DEFAULT_STUDY)
    grid = build_grid(study, GridSpec())
    assert grid[0].id == "base" and len(grid) >= 20 and len({v.id for v in grid}) == len(grid)
    v = next(v for v in grid if v.id == "hedging/tilt/shift+0.5")
    assert v.changed == (("tilt", "russia"), ("tilt", "nato"), ("tilt", "balancing"))
    stated = study.hypothesis("hedging").priors[("tilt", "russia")].kwargs  # Normal, about (0.5, 0.75)
    shifted = v.priors[("tilt", "russia")].kwargs
    assert shifted["mu"] == pytest.approx(stated["mu"] + 0.5 * stated["sigma"]) and shifted["sigma"] == stated["sigma"]
    assert v.priors[("spread", "russia")] == study.hypothesis("hedging").priors[("spread", "russia")]
    slot_grid = build_grid(study, GridSpec(by="slot", joint=False, hypotheses=("realignment",), parameters=("trend",)))
    assert [v.id for v in slot_grid[1:5]] == [
        "realignment/trend.russia/shift-0.5",
        "realignment/trend.russia/shift+0.5",
        "realignment/trend.russia/wider1.5",
        "realignment/trend.russia/narrower1.5",
    ]
    assert all(len(v.changed) == 1 for v in slot_grid[1:])


@pytest.mark.parametrize(
    "raw, fragments",
    [
        ({"shfits": [0.5]}, ("unknown key 'shfits'", "did you mean 'shifts'?")),
        ({"scales": [0.8]}, ("scales: each scale must be a width factor > 1", "0.8")),
        ({"shifts": [-1]}, ("shifts: each shift must be a number of prior standard deviations > 0",)),
        ({"refit": "sometimes"}, ("refit: 'sometimes' is not one of 'auto', 'all', 'none'",)),
        ({"by": "slots"}, ("by: 'slots' is not one of", "did you mean 'slot'?")),
        ({"joint": "yes"}, ("joint: expected true or false",)),
        ({"pareto_k_threshold": 1.5}, ("pareto_k_threshold: expected a number in (0, 1]",)),
    ],
)
def test_bad_grid_specs_get_clear_errors(raw, fragments):
    with pytest.raises(SensitivitySpecError) as e:
        parse_grid_spec(raw, "grid.toml")
    assert any(all(f in p for f in fragments) for p in e.value.problems), e.value.problems
    assert e.value.exit_code == 2


def test_grid_spec_must_fit_the_study(tmp_path):
    study = load_study(DEFAULT_STUDY)
    with pytest.raises(SensitivitySpecError) as e:
        build_grid(study, GridSpec(hypotheses=("hedgign",), parameters=("tilts",)))
    text = str(e.value)
    assert "'hedgign' is not a hypothesis" in text and "did you mean 'hedging'?" in text
    assert "'tilts' is not a hyperparameter" in text and "did you mean 'tilt'?" in text
    (tmp_path / "g.toml").write_text("[sensitivity]\nshifts = [0.25, 1.0]\nrefit = 'none'\n")
    spec = grid_spec_from(tmp_path / "g.toml", scales=[2.0])
    assert spec.shifts == (0.25, 1.0) and spec.scales == (2.0,) and spec.refit == "none"
    (tmp_path / "bad.toml").write_text("shifts = [0.5\n")
    with pytest.raises(SensitivitySpecError, match="not valid TOML"):
        grid_spec_from(tmp_path / "bad.toml")


def test_grid_spec_normalises_values_and_is_frozen():
    spec = parse_grid_spec({"shifts": [1, 0.5, 1.0], "scales": 2, "hypotheses": "weak", "joint": False})
    assert spec.shifts == (0.5, 1.0) and spec.scales == (2.0,) and spec.hypotheses == ("weak",)
    assert spec.to_dict() == {
        "shifts": [0.5, 1.0],
        "scales": [2.0],
        "by": "parameter",
        "joint": False,
        "hypotheses": ["weak"],
        "parameters": None,
        "refit": "auto",
        "pareto_k_threshold": None,
    }
    assert parse_grid_spec({}) == GridSpec() and GridSpec().to_dict()["shifts"] == [0.5]
    with pytest.raises(ValueError):  # pydantic refuses assignment to a frozen model
        spec.refit = "all"


def test_grid_spec_reports_every_problem_at_once():
    with pytest.raises(SensitivitySpecError) as e:
        parse_grid_spec({"shfits": [0.5], "scales": [0.8, 3, "{x}"], "refit": None, "hypotheses": []}, "g.toml")
    problems = e.value.problems
    assert len(problems) == 4, problems
    assert any(p.startswith("g.toml: unknown key 'shfits'") and "allowed: 'shifts'," in p for p in problems)
    assert any(p.startswith("g.toml.scales:") and "0.8" in p and "'{x}'" in p and ", 3" not in p for p in problems)
    assert any(p.startswith("g.toml.refit: None is not one of") for p in problems)
    assert any(p.startswith("g.toml.hypotheses: expected a list of ids") for p in problems)
    assert str(e.value).startswith("g.toml: the sensitivity grid has problems:")
    with pytest.raises(SensitivitySpecError, match="expected a table of grid settings"):
        parse_grid_spec([0.5], "g.toml")
    with pytest.raises(SensitivitySpecError, match="grid file not found"):
        grid_spec_from("no-such-grid.toml")


def record(**changes) -> SensitivityResult:
    """A hand-made result of two hypotheses and two variants (no fit)."""
    row = {"posterior_probabilities": {"a": 0.7, "b": 0.3}}
    fields = dict(
        hypotheses=[
            {"id": "a", "label": "A", "prior_probability": 0.5},
            {"id": "b", "label": "B", "prior_probability": 0.5},
        ],
        variants=[
            {"id": "base", "method": "base", **row},
            {"id": "a/tilt/wider1.5", "method": "refitted", "pareto_k": float("inf"), **row},
            {"id": "a/tilt/narrower1.5", "method": "reweighted", "pareto_k": np.float64(0.2), **row},
        ],
        ranges={"a": {"base": 0.7, "min": 0.6, "max": 0.8}, "b": {"base": 0.3, "min": 0.2, "max": 0.4}},
        tornado=[{"hypothesis": "a", "target": "tilt", "low": 0.6, "high": 0.8}],
        verdict={"leader": "a", "stable": True, "flips": [], "text": "'A' leads in all 3 prior variants."},
        prior_odds_text="'A' stays ahead.",
        psense={"a": [], "b": []},
        psense_flags=[],
    )
    return sensitivity_result(**(fields | changes))


def test_sensitivity_record_gives_the_json_of_sensitivity_json():
    r = record()
    d = r.to_dict()
    assert list(d)[:5] == ["schema_version", "study", "study_path", "run_dir", "converged"]
    assert list(d)[-3:] == ["files", "unreliable_variants", "timings"]  # no warning, no ran_update
    assert (d["n_variants"], d["n_refitted"], d["refitted"]) == (3, 1, ["a/tilt/wider1.5"])
    assert d["variants"][1]["pareto_k"] is None and d["variants"][2]["pareto_k"] == 0.2  # strict JSON
    assert json.loads(dumps(r)) == d and r.leader == "a" and r.stable
    late = record(ran_update="no runs of study 's' under runs", warning="UNRELIABLE: ...").to_dict()
    assert list(late)[4] == "ran_update" and list(late)[-2] == "warning"
    with pytest.raises(AttributeError):
        r.study = "other"


def test_render_sensitivity_from_the_record_or_its_json():
    text = render_sensitivity(record())
    assert text == render_sensitivity(record().to_dict())
    assert "3 variants" in text and "'A' leads in all 3 prior variants." in text and "ran first" not in text
    assert "Refitted (reweighting unreliable): a/tilt/wider1.5" in text
    assert "no potential prior-data conflict" in text and "Plots:" not in text
    text = render_sensitivity(record(ran_update="run X does not match", files={"tornado": "t.png"}))
    assert "`forecast update` ran first: run X does not match" in text
    assert f"Plots: {Path('runs/s/1') / 't.png'}" in text


# --- against refits and exact answers ----------------------------------------------------------


@pytest.mark.slow
def test_unperturbed_variant_reproduces_update_within_mc_error(case, refit_all):
    base = refit_all["variants"][0]
    assert base["id"] == "base" and base["method"] == "base"
    for h in case.update.hypotheses:
        refit_lm = base["refit"]["log_marginal_likelihood"][h.id]
        refit_se = base["refit"]["log_marginal_likelihood_se"][h.id]
        assert abs(refit_lm - h.log_marginal_likelihood) <= 3 * math.hypot(refit_se, h.log_marginal_likelihood_se)
        p, p_se = base["refit"]["posterior_probabilities"][h.id], base["refit"]["posterior_probabilities_se"][h.id]
        assert abs(p - h.posterior_probability) <= 3 * math.hypot(p_se, h.posterior_probability_se) + 1e-9
        # the base row itself carries update's figures unchanged
        assert base["posterior_probabilities"][h.id] == pytest.approx(h.posterior_probability, abs=1e-12)
        # and update's log ML is right: exact by quadrature
        hyp = case.study.hypothesis(h.id)
        exact = exact_log_ml(case, hyp.priors[("tilt", "a")], hyp.priors[("spread", "a")])
        assert abs(h.log_marginal_likelihood - exact) <= 3 * h.log_marginal_likelihood_se + 0.02


@pytest.mark.slow
def test_reweighted_variants_agree_with_refits_and_exact_values(case, refit_all):
    base = load_base(StoredRun.open(Path(case.update.run_dir)), case.study)
    weak = case.study.hypothesis("weak")
    grid = {v.id: v for v in build_grid(case.study, GridSpec(hypotheses=("weak",), parameters=("tilt",), joint=False))}
    rows = [r for r in refit_all["variants"] if r["method"] == "refitted"]
    assert {r["id"] for r in rows} == set(grid) - {"base"} and len(rows) == 4
    base_lm, base_se = base.log_ml[0], base.log_ml_se[0]
    for r in rows:
        refit = r["refit"]
        assert refit["converged"]
        delta_refit = refit["log_ml"] - base_lm
        tol = 3 * math.sqrt(r["delta_log_ml_reweighted_se"] ** 2 + refit["log_ml_se"] ** 2 + base_se**2)
        assert abs(r["delta_log_ml_reweighted"] - delta_refit) <= tol, r["id"]
        v = grid[r["id"]]
        exact = exact_log_ml(case, v.priors[("tilt", "a")], v.priors[("spread", "a")])
        assert (
            abs(base_lm + r["delta_log_ml_reweighted"] - exact)
            <= 3 * math.hypot(base_se, r["delta_log_ml_reweighted_se"]) + 0.02
        )
        # the reweighted posterior mean of tilt agrees with the refit's
        draws = base.draws("weak", case.study)
        rw = psis_reweight(log_prior_ratio(weak.priors, v.priors, v.changed, draws))
        tilt = draws[("tilt", "a")].ravel()
        mean_rw = float(np.exp(rw.log_weights) @ tilt)
        mcse = tilt.std() * math.sqrt(1 / rw.ess + 1 / 2000)
        assert abs(mean_rw - refit["posterior_means"]["tilt__a"]) <= 4 * mcse, r["id"]


@pytest.mark.slow
def test_auto_mode_refits_exactly_where_pareto_k_is_too_high(auto):
    k_max = auto["grid"]["pareto_k_threshold"]
    assert k_max == pytest.approx(min(1 - 1 / math.log10(8000), 0.7))
    for r in auto["variants"][1:]:
        assert (r["method"] == "refitted") == (not r["pareto_k"] <= k_max), r["id"]
        assert sum(r["posterior_probabilities"].values()) == pytest.approx(1.0)
    assert auto["refitted"] == [r["id"] for r in auto["variants"] if r["method"] == "refitted"]
    assert auto["n_variants"] == len(auto["variants"]) == 1 + 2 * (6 + 4)  # per hypothesis: tilt 4, spread 2, joint 4


@pytest.mark.slow
def test_ranges_tornado_and_verdict_are_consistent(auto):
    for h, r in auto["ranges"].items():
        values = [v["posterior_probabilities"][h] for v in auto["variants"]]
        assert r["min"] == min(values) and r["max"] == max(values) and r["min"] <= r["base"] <= r["max"]
    leader = auto["verdict"]["leader"]
    assert leader == "weak" == auto["base"]["leader"]
    flips = [v["id"] for v in auto["variants"] if v["leader"] != leader]
    assert [f["variant"] for f in auto["verdict"]["flips"]] == flips
    assert auto["verdict"]["stable"] == (not flips)
    swings = [t["swing"] for t in auto["tornado"]]
    assert swings == sorted(swings, reverse=True)
    assert auto["prior_odds"]["weak"]["flip_prior"] < auto["prior_odds"]["weak"]["prior_probability"]


@pytest.mark.slow
def test_power_scaling_flags_the_conflicting_prior_not_the_weak_one(auto):
    tilt = {h: next(r for r in auto["psense"][h] if r["parameter"] == "tilt") for h in ("weak", "conflict")}
    assert tilt["conflict"]["flag"] == "prior-data conflict"
    assert tilt["conflict"]["prior"] >= 0.05 and tilt["conflict"]["likelihood"] >= 0.05
    assert tilt["weak"]["flag"] is None and tilt["weak"]["prior"] < 0.05 and tilt["weak"]["likelihood"] >= 0.05
    # priorsense's words for the same rule, and the tilt is part of each hypothesis's claim
    assert tilt["conflict"]["diagnosis"] == "potential prior-data conflict" and tilt["weak"]["diagnosis"] is None
    assert tilt["conflict"]["prior_role"] == "claim"
    flagged = {(f["hypothesis"], f["parameter"]): f for f in auto["psense_flags"]}
    assert flagged[("conflict", "tilt")]["diagnosis"] == "potential prior-data conflict"
    assert "disagrees with this part of its claim" in flagged[("conflict", "tilt")]["meaning"]
    assert "IS its priors" in auto["psense_note"]
    assert auto["psense_diagnostics"]["n_hyperparameters"] == 4  # tilt and spread of two hypotheses


@pytest.mark.slow
def test_results_are_written_atomically_into_the_run(case, auto_record, auto):
    run = Path(case.update.run_dir)
    stored = StoredRun.open(run).read_json(SENSITIVITY, SENSITIVITY_SCHEMA)
    assert stored == json.loads(dumps(auto_record)) == auto
    for name in (SENSITIVITY_TORNADO_PLOT, SENSITIVITY_PRIOR_ODDS_PLOT):
        assert (run / name).read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert auto["files"] == {"tornado": SENSITIVITY_TORNADO_PLOT, "prior_odds": SENSITIVITY_PRIOR_ODDS_PLOT}
    assert "ran_update" not in auto  # the run matched: no `forecast update`


@pytest.mark.slow
def test_update_runs_first_and_says_why_when_no_run_matches(case, tmp_path):
    """One more event than the study's latest run was fitted to: the run does not match the inputs."""
    import shutil

    shutil.copytree(case.root, tmp_path / "runs")
    shutil.copy(case.path, tmp_path / "s.toml")
    (tmp_path / "obs.csv").write_text(one_group_events_csv() + "extra,2020-03-15,a,x,cooperative,A1,one more,t\n")
    said: list[str] = []
    result = run_sensitivity(
        tmp_path / "s.toml",
        GridSpec(refit="none", hypotheses=("weak",), parameters=("tilt",), joint=False),
        runs_root=tmp_path / "runs",
        workers=0,
        write=False,
        progress=said.append,
        bar=False,
        allow_unconverged=True,
        update_settings=SamplerSettings(draws=300, tune=300, chains=2, seed=3),
    )
    old = Path(case.update.run_dir).name
    assert "the observations have changed" in result.ran_update and old in result.ran_update
    assert any(m.startswith("running `forecast update` first: run ") and "observations" in m for m in said)
    assert Path(result.run_dir).name != old
    assert StoredRun.find(tmp_path / "runs" / "sens").path == Path(result.run_dir)  # the new run is the latest
    assert result.to_dict()["ran_update"] == result.ran_update
    assert "`forecast update` ran first: run " in render_sensitivity(result)


# --- the command ---------------------------------------------------------------------------------


JSON_KEYS = {
    "schema_version", "study", "run_dir", "converged", "grid", "hypotheses", "base", "n_variants", "n_refitted",
    "refitted", "variants", "ranges", "tornado", "verdict", "prior_odds", "prior_odds_text", "psense",
    "psense_flags", "psense_diagnostics", "psense_note", "scaleout", "files", "timings",
}  # fmt: skip


@pytest.mark.slow
def test_sensitivity_command_json(case):
    res = CliRunner().invoke(
        main, ["sensitivity", str(case.path), "--runs-dir", str(case.root), "--refit", "none", "--json", "-q"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert JSON_KEYS <= set(out)
    assert out["n_refitted"] == 0 and {v["method"] for v in out["variants"][1:]} == {"reweighted"}
    assert out["run_dir"] == str(case.update.run_dir)


@pytest.mark.slow
def test_sensitivity_command_bad_spec_exits_2_and_writes_nothing(case):
    run = Path(case.update.run_dir)
    before = sorted(p.name for p in run.iterdir())
    res = CliRunner().invoke(
        main, ["sensitivity", str(case.path), "--runs-dir", str(case.root), "--scale", "0.5", "--json"]
    )
    assert res.exit_code == 2 and res.stdout == ""
    assert "scales: each scale must be a width factor > 1" in res.stderr
    res = CliRunner().invoke(
        main, ["sensitivity", str(case.path), "--runs-dir", str(case.root), "--hypothesis", "weka"]
    )
    assert res.exit_code == 2 and "did you mean 'weak'?" in res.stderr
    assert sorted(p.name for p in run.iterdir()) == before


@pytest.mark.slow
def test_failed_refit_gate_exits_3_and_writes_nothing(case, monkeypatch):
    import forecast.fit.pool as scaleout

    run = Path(case.update.run_dir)
    written = (run / SENSITIVITY).read_text() if (run / SENSITIVITY).exists() else None

    def unconverged(study, cells, task):
        return scaleout.FitOutcome(
            task.key,
            task.hypothesis.id,
            -1.0,
            0.1,
            {"problems": ["R-hat 1.200 > 1.01"]},
            False,
            2,
            0.0,
            {},
            "here",
            False,
            0.0,
        )

    monkeypatch.setattr(scaleout, "fit_one", unconverged)
    args = ["sensitivity", str(case.path), "--runs-dir", str(case.root), "--refit", "all", "--workers", "0"]
    res = CliRunner().invoke(main, [*args, "--hypothesis", "weak", "--parameter", "tilt", "--no-joint", "--json", "-q"])
    assert res.exit_code == 3, res.output
    assert "convergence gate failed" in res.stderr and res.stdout == ""
    assert ((run / SENSITIVITY).read_text() if (run / SENSITIVITY).exists() else None) == written
    with pytest.raises(ConvergenceError):
        run_sensitivity(case.path, GridSpec(refit="all", hypotheses=("weak",), parameters=("tilt",), joint=False),
                        runs_root=case.root, workers=0, bar=False)  # fmt: skip
