"""Robustness in `forecast update`: the declared class of reasonable priors, its ranges, the headline.

Fast: the ``[robustness]`` schema (defaults, strict keys with a did-you-mean, every problem at
once), the class as a sensitivity grid, variants and flips in words, the headline and the
renderer from hand-made records. Slow (they sample): one small static study (one counterpart
group, two domains, 96 events) with a weak hypothesis and a confident one that leads under the
stated priors but not when its tilt prior is moved down by one prior SD. Its exact marginal
likelihoods come from quadrature (tests/exact.py), so the flip is known before any fit. The
model is compiled once for the module and shared by `forecast update` and the direct refits.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from exact import log_ml_group, pymc_prior
from helpers import DEFAULT_STUDY, base_study, one_group_events_csv, prior, static_study, write_study
from scipy.special import softmax

from forecast.cli import main
from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.errors import StudyError
from forecast.fit.hypothesis import fit_hypothesis
from forecast.fit.sampler import Diagnostics, SamplerSettings, StudyModel
from forecast.reports.text.update import render_update
from forecast.spec.study import RobustnessSpec, load_study
from forecast.stats.loo import posterior_probabilities
from forecast.workflows.robustness import (
    Robustness,
    describe_prior_variant,
    evidence_row,
    flip,
    flip_sentence,
    grid_spec,
)
from forecast.workflows.sensitivity import build_grid
from forecast.workflows.update import HypothesisResult, UpdateResult, conclusion, judgement, run_update
from forecast.workflows.variants import EvidenceVariant

SETTINGS = SamplerSettings(draws=1500, tune=700, chains=4, seed=5)
JARGON = ("nats", "elpd", "Pareto", "PSIS", "log BF", "LOO", "MCSE")

STUDY = static_study(
    "robust",
    {"weak": (0.0, 2.5), "near": (1.0, 0.5)},
    spread=prior("HalfNormal", sigma=0.1),
    group="a",
    counterparts=("a",),
    domains=("x", "y"),
    observations="obs.csv",
    extra={"robustness": {"shifts": [1.0], "scales": [2.0], "parameters": ["tilt"], "joint": False}},
)
FLIP = "near/tilt/shift-1"  # by quadrature: 'Weak' leads there with 0.68; 'Near' leads (0.69) as stated


# --- the [robustness] table ----------------------------------------------------------------------


def _study_with(tmp_path, robustness: dict | None):
    (tmp_path / "events.csv").write_text("")
    data = base_study()
    if robustness is not None:
        data["robustness"] = robustness
    return write_study(tmp_path, data)


def test_without_a_robustness_table_the_default_class_is_sensitivitys_grid(tmp_path):
    study = load_study(_study_with(tmp_path, None))
    assert study.robustness == RobustnessSpec()
    assert not study.robustness.declared
    spec = grid_spec(study.robustness)
    assert (spec.shifts, spec.scales, spec.by, spec.joint, spec.refit) == ((0.5,), (1.5,), "parameter", True, "auto")
    # on the default study: 3 hypotheses x (tilt 4, spread 2, trend 4, volatility 2, jointly 4), and the base
    default = load_study(DEFAULT_STUDY)
    assert len(build_grid(default, grid_spec(default.robustness))) == 49


def test_a_declared_robustness_table_is_read(tmp_path):
    study = load_study(
        _study_with(
            tmp_path,
            {
                "shifts": [1, 0.5],
                "scales": 2.0,
                "by": "slot",
                "joint": False,
                "hypotheses": ["shift"],
                "parameters": ["tilt", "trend"],
                "evidence_variants": False,
                "pareto_k_threshold": 0.5,
            },
        )
    )
    r = study.robustness
    assert r == RobustnessSpec((0.5, 1.0), (2.0,), "slot", False, ("shift",), ("tilt", "trend"), False, 0.5, True)
    variants = build_grid(study, grid_spec(r))
    assert {v.hypothesis for v in variants[1:]} == {"shift"}
    # per group (west, east) and parameter (tilt, trend): shifts ±0.5, ±1, wider, narrower
    assert len(variants) == 1 + 2 * 2 * 6


@pytest.mark.parametrize(
    ("table", "fragments"),
    [
        ({"scale": 2.0}, ["robustness.scale: unknown key", "did you mean 'scales'"]),
        ({"evidence_variant": True}, ["did you mean 'evidence_variants'"]),
        ({"by": "slott"}, ["robustness.by", "did you mean 'slot'"]),
        ({"hypotheses": ["stedy"]}, ["robustness.hypotheses[0]", "did you mean 'steady'", "known: 'steady', 'shift'"]),
        ({"parameters": ["volatilty"]}, ["robustness.parameters[0]", "did you mean 'volatility'"]),
        ({"shifts": [0.5, -1]}, ["robustness.shifts[1]: -1 is not a location shift"]),
        ({"scales": [0.5]}, ["robustness.scales[0]: 0.5 is not a width factor > 1"]),
        ({"scales": [True]}, ["robustness.scales[0]: True is not a width factor"]),
        ({"shifts": "0.5"}, ["robustness.shifts[0]: '0.5' is not a location shift"]),
        ({"shifts": []}, ["robustness.shifts: give at least one value"]),
        ({"hypotheses": []}, ["robustness.hypotheses: list at least one"]),
        ({"joint": "yes"}, ["robustness.joint", "valid boolean"]),
        ({"pareto_k_threshold": 2.0}, ["robustness.pareto_k_threshold: expected a number in (0, 1]"]),
    ],
)
def test_a_bad_robustness_table_is_a_located_error(tmp_path, table, fragments):
    with pytest.raises(StudyError) as e:
        load_study(_study_with(tmp_path, table))
    for fragment in fragments:
        assert fragment in str(e.value), str(e.value)


def test_every_problem_of_the_robustness_table_is_reported_at_once(tmp_path):
    with pytest.raises(StudyError) as e:
        load_study(_study_with(tmp_path, {"shifts": [0], "scales": [1], "by": "x", "hypotheses": ["nope"]}))
    text = str(e.value)
    for key in ("robustness.shifts[0]", "robustness.scales[0]", "robustness.by", "robustness.hypotheses[0]"):
        assert key in text


# --- variants, flips and the headline in words (no fits) ----------------------------------------


def test_variants_are_described_in_words():
    study = load_study(DEFAULT_STUDY)
    grid = {v.id: v for v in build_grid(study, grid_spec(RobustnessSpec(by="slot")))}
    h = study.hypothesis("realignment")
    groups = {g.id: g.label for g in study.groups}
    cases = {
        "realignment/all/wider1.5": "the priors of 'Strategic realignment' are 1.5x wider",
        "realignment/all/shift+0.5": "the tilt and trend priors of 'Strategic realignment' are shifted up by 0.5 prior SD",
        "realignment/volatility.russia/narrower1.5": (
            "the volatility prior for 'Russia and partners' of 'Strategic realignment' is 1.5x narrower"
        ),
        "realignment/trend.nato/shift-0.5": (
            "the trend prior for 'NATO and the West' of 'Strategic realignment' is shifted down by 0.5 prior SD"
        ),
    }
    for vid, words in cases.items():
        assert describe_prior_variant(grid[vid], h, groups) == words.replace(
            "Russia and partners", groups["russia"]
        ).replace("NATO and the West", groups["nato"])
    assert describe_prior_variant(grid["realignment/all/wider1.5"], h, groups, own=True) == "its priors are 1.5x wider"


def _variant(vid: str, p: dict, se: float = 0.01) -> EvidenceVariant:
    return EvidenceVariant(vid, "T's own acts only", ("actor",), False, 70, p, dict.fromkeys(p, se), {}, True, ())


def test_an_evidence_variant_is_a_member_of_the_class_and_its_flip_is_judged_against_mc_error():
    row = evidence_row(_variant("own_only", {"a": 0.3, "b": 0.7}))
    assert row["id"] == "evidence/own_only" and row["kind"] == "evidence" and row["leader"] == "b"
    assert row["description"] == "the evidence counted is T's own acts only"
    f = flip(row, "a")
    assert f["new_leader"] == "b" and not f["within_mc_error"]
    close = flip(evidence_row(_variant("own_only", {"a": 0.49, "b": 0.51}, se=0.02)), "a")
    assert close["within_mc_error"]
    unknown = flip(evidence_row(_variant("own_only", {"a": 0.3, "b": 0.7}, se=math.nan)), "a")
    assert unknown["within_mc_error"]  # an unknown error does not rule noise out
    f["description"] = row["description"]
    assert flip_sentence(f, {"a": "A", "b": "B"}) == "'B' leads (0.70) when the evidence counted is T's own acts only"


def _row(hid: str, label: str, lml: float, p: float, elpd_diff: float = 0.0) -> HypothesisResult:
    d = Diagnostics(1.0, 1000.0, 1000.0, 0, 0.0, 1.0, True)
    return HypothesisResult(
        hid, label, 0.5, lml, 0.1, p, 0.01, -100.0 + elpd_diff, 5.0, elpd_diff, 1.5, 3.0, 0.3, 0.5, d, 1, {}, 1.0
    )


def _robustness(stable: bool, leader_range=(0.75, 0.9), flips=None) -> Robustness:
    rows = [
        {"id": "base", "kind": "base", "leader": "a", "posterior_probabilities": {"a": 0.8, "b": 0.2}},
        {"id": "a/all/wider2", "kind": "prior", "leader": "a", "posterior_probabilities": {"a": 0.9, "b": 0.1}},
        {
            "id": "evidence/own_only",
            "kind": "evidence",
            "leader": "a",
            "posterior_probabilities": {"a": 0.75, "b": 0.25},
        },
    ]
    ranges = {
        "a": {"base": 0.8, "min": leader_range[0], "max": leader_range[1], "min_variant": "x", "max_variant": "y"},
        "b": {"base": 0.2, "min": 0.1, "max": 0.25, "min_variant": "y", "max_variant": "x"},
    }
    odds = {
        "a": {"prior_probability": 0.5, "flip_prior": 0.2, "flip_prior_se": 0.01, "flip_against": "b"},
        "b": {"prior_probability": 0.5, "flip_prior": 0.8, "flip_prior_se": 0.01, "flip_against": "a"},
    }
    declared = {
        "source": "defaults",
        "shifts": [0.5],
        "scales": [1.5],
        "by": "parameter",
        "joint": True,
        "hypotheses": None,
        "parameters": None,
        "evidence_variants": True,
        "n_evidence_variants": 1,
        "pareto_k_threshold": 0.7,
    }
    return Robustness("a", stable, declared, ranges, rows, flips or [], odds, "odds sentence", [], [])


def _result(rows, robust=None, **kw) -> UpdateResult:
    return UpdateResult(
        study="s",
        study_path="s.toml",
        question="q",
        run_dir=None,
        converged=True,
        n_observations=10,
        latest_observation="2026-02-06",
        hypotheses=rows,
        conclusion=conclusion(rows, True, "2026-02-06", robust),
        loo_note="",
        settings={},
        robustness=robust,
        judgement=judgement(rows, True, robust),
        **kw,
    )


def test_a_robust_leader_is_said_so_with_its_range():
    rows = [_row("a", "Alpha", -10.0, 0.96), _row("b", "Beta", -13.2, 0.04, -4.0)]
    rows[1] = replace(rows[1], elpd_diff_se=1.5)
    text = conclusion(rows, True, "2026-02-06", _robustness(True, (0.90, 0.98)))
    assert text.startswith("Through 2026-02-06, under the stated priors the evidence favours 'Alpha' (0.96,")
    assert "almost certain; Bayes factor 24.5 against 'Beta', strong evidence)" in text
    assert "Robust: 'Alpha' leads in all 2 variants of the priors and the evidence counted (0.90 to 0.98)." in text
    assert text.endswith("Confidence: high.")
    assert not any(j in text for j in JARGON)


def test_a_flip_is_named_in_the_headline_and_caps_confidence():
    rows = [_row("a", "Alpha", -10.0, 0.96), _row("b", "Beta", -13.2, 0.04, -4.0)]
    flips = [
        {"variant": "b/all/wider1.5", "new_leader": "b", "posterior_probabilities": {"a": 0.4, "b": 0.6}},
        {"variant": "b/tilt/wider1.5", "new_leader": "b", "posterior_probabilities": {"a": 0.23, "b": 0.77}},
    ]
    flips[0]["description"] = "its tilt priors are 1.5x wider"
    flips[1]["description"] = "its priors are 1.5x wider"
    text = conclusion(rows, True, "2026-02-06", _robustness(False, (0.23, 0.98), flips))
    assert "Not robust: 'Beta' leads (0.77) when its priors are 1.5x wider; the leader changes in 2 of 2" in text
    assert "Confidence: low, because another hypothesis leads under some reasonable priors." in text


def test_a_weak_bayes_factor_is_worded_as_weak_and_low_confidence():
    rows = [_row("a", "Alpha", -10.0, 0.63), _row("b", "Beta", -10.53, 0.37)]
    text = conclusion(rows, True, "2026-02-06", _robustness(True, (0.60, 0.66)))
    assert "the evidence leans towards 'Alpha' (0.63, likely; Bayes factor 1.7 against 'Beta', weak evidence" in text
    assert "favours" not in text and "strong" not in text and "moderate" not in text
    assert "Confidence: low, because the evidence is weak (Bayes factor 1.7, below 3)." in text


def test_without_robustness_the_headline_says_it_was_not_checked():
    rows = [_row("a", "Alpha", -10.0, 0.96), _row("b", "Beta", -13.2, 0.04, -4.0)]
    text = conclusion(rows, True, "2026-02-06")
    assert "Robust" not in text
    assert "Confidence: moderate, because robustness to other reasonable priors was not checked." in text
    rows_mc = [replace(r, log_marginal_likelihood_se=2.0) for r in rows]
    assert "The Monte Carlo error could reverse this order" in conclusion(rows_mc, True, "2026-02-06")


def test_a_leader_only_by_its_prior_odds_is_said_so():
    rows = [_row("a", "Alpha", -10.5, 0.6), _row("b", "Beta", -10.0, 0.4)]
    text = conclusion(rows, True, None)
    assert text.startswith(
        "Under the stated priors 'Alpha' is the most probable hypothesis (0.60, likely) on its prior"
    )
    assert "the evidence favours 'Beta' over it (Bayes factor 1.65, weak evidence" in text


def test_the_renderer_and_the_json_carry_the_robustness_object():
    rows = [_row("a", "Alpha", -10.0, 0.8), _row("b", "Beta", -11.4, 0.2)]
    flips = [
        {
            "variant": "b/all/wider1.5",
            "new_leader": "b",
            "posterior_probabilities": {"a": 0.4, "b": 0.6},
            "within_mc_error": False,
            "description": "its priors are 1.5x wider",
        }
    ]
    result = _result(rows, _robustness(False, (0.4, 0.9), flips))
    text = render_update(result)
    assert (
        "Robustness over 2 variants of the default class: each hypothesis's priors shifted by ±0.5 prior SD and made 1.5x wider"
        in text
    )
    assert "'Alpha' loses the lead in 1 of 2 variants: b/all/wider1.5 -> 'Beta'." in text
    assert "odds sentence" in text
    d = json.loads(json.dumps(result.to_dict()))
    r = d["robustness"]
    assert r["leader"] == "a" and r["leader_stable"] is False and r["n_variants"] == 2
    assert r["ranges"]["a"] == {"base": 0.8, "min": 0.4, "max": 0.9, "min_variant": "x", "max_variant": "y"}
    assert r["leaders"] == {"base": "a", "a/all/wider2": "a", "evidence/own_only": "a"}
    assert [f["variant"] for f in r["flips"]] == ["b/all/wider1.5"]
    assert r["leader_changes_at"] == {"prior_probability": 0.2, "se": 0.01, "new_leader": "b"}
    assert d["judgement"]["confidence"] == "low" and d["judgement"]["likelihood"] == "likely"
    plain = _result(rows)
    assert "robustness" not in plain.to_dict() and "Robustness over" not in render_update(plain)


# --- against direct refits and exact values (slow) ----------------------------------------------


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("robustness")
    (d / "obs.csv").write_text(one_group_events_csv())
    write_study(d, STUDY, "s.toml")
    study = load_study(d / "s.toml")
    cells = cell_data(load_observations(study).table, study)
    model = StudyModel(study, cells)
    with pytest.MonkeyPatch.context() as mp:  # one compile for the module: update uses our model
        mp.setattr("forecast.workflows.update.StudyModel", lambda s, c: model)
        update = run_update(d / "s.toml", SETTINGS, write=False)
        plain = run_update(d / "s.toml", SETTINGS, write=False, robustness=False)
    counts = [
        (float(cells.w_coop[cells.domain == k].sum()), float(cells.w_conf[cells.domain == k].sum())) for k in range(2)
    ]
    return SimpleNamespace(path=d / "s.toml", study=study, model=model, update=update, plain=plain, counts=counts)


def _exact_log_ml(case, priors) -> float:
    t, s = priors[("tilt", "a")], priors[("spread", "a")]
    return log_ml_group(
        pymc_prior(t.dist, **t.kwargs),
        pymc_prior(s.dist, **s.kwargs),
        case.counts,
        tilt_range=(-10.0, 10.0),
        n_tilt=801,
        log_spread_range=(-40.0, 1.0),
    )


def _exact_probabilities(case, variant) -> dict[str, float]:
    ids = [h.id for h in case.study.hypotheses]
    lm = {h.id: _exact_log_ml(case, h.priors) for h in case.study.hypotheses}
    if variant.hypothesis is not None:
        lm[variant.hypothesis] = _exact_log_ml(case, variant.priors)
    return dict(zip(ids, softmax([lm[h] for h in ids]).tolist(), strict=True))


@pytest.mark.slow
def test_robustness_does_not_change_the_support_figures(case):
    for a, b in zip(case.update.hypotheses, case.plain.hypotheses, strict=True):
        assert replace(a, seconds=0.0) == replace(b, seconds=0.0)
    assert case.plain.robustness is None and case.update.robustness is not None


@pytest.mark.slow
def test_the_range_contains_what_direct_refits_of_its_extreme_variants_give(case):
    r = case.update.robustness
    ids = [h.id for h in case.study.hypotheses]
    grid = {v.id: v for v in build_grid(case.study, grid_spec(case.study.robustness))}
    rows = {row["id"]: row for row in r.variants}
    base_lm = np.array([h.log_marginal_likelihood for h in case.update.hypotheses])
    base_se = np.array([h.log_marginal_likelihood_se for h in case.update.hypotheses])
    prior = np.array([h.prior_probability for h in case.update.hypotheses])
    extremes = {r.ranges[h][end] for h in ids for end in ("min_variant", "max_variant")} - {"base"}
    assert extremes
    for vid in sorted(extremes):
        v, row = grid[vid], rows[vid]
        h = replace(case.study.hypothesis(v.hypothesis), priors=v.priors)
        direct = fit_hypothesis(case.model, h, replace(SETTINGS, seed=SETTINGS.seed + 1000), with_loo=False)
        assert direct.converged, vid
        i = ids.index(v.hypothesis)
        lm, se = base_lm.copy(), base_se.copy()
        lm[i], se[i] = direct.bridge.log_ml, direct.bridge.se
        p, p_se = posterior_probabilities(lm, se, prior)
        exact = _exact_probabilities(case, v)
        for k, hid in enumerate(ids):
            tol = 3 * math.hypot(p_se[k], row["posterior_probabilities_se"][hid]) + 0.01
            lo, hi = r.ranges[hid]["min"], r.ranges[hid]["max"]
            assert lo - tol <= p[k] <= hi + tol, (vid, hid, p[k], lo, hi)
            assert abs(p[k] - row["posterior_probabilities"][hid]) <= tol, (vid, hid)
            assert abs(p[k] - exact[hid]) <= 3 * p_se[k] + 0.01, (vid, hid)


@pytest.mark.slow
def test_a_flipping_variant_is_reported_as_such(case):
    r = case.update.robustness
    assert r.leader == "near" and not r.leader_stable
    grid = {v.id: v for v in build_grid(case.study, grid_spec(case.study.robustness))}
    assert _exact_probabilities(case, grid[FLIP])["weak"] > 0.6  # the premise, by quadrature
    flips = {f["variant"]: f for f in r.flips}
    assert FLIP in flips and flips[FLIP]["new_leader"] == "weak" and not flips[FLIP]["within_mc_error"]
    assert flips[FLIP]["description"] == "the tilt priors of 'Near' are shifted down by 1 prior SD"
    # every variant whose exact answer is clear (not near even odds) has the exact leader
    for row in r.variants[1:]:
        exact = _exact_probabilities(case, grid[row["id"]])
        if abs(exact["near"] - 0.5) > 0.05:
            assert row["leader"] == max(exact, key=exact.get), row["id"]
    text = case.update.conclusion
    assert "Not robust: 'Weak' leads" in text and "Confidence: low" in text
    assert text.startswith(f"Through {case.update.latest_observation}, under the stated priors")
    assert case.update.judgement["robust"] is False
    assert r.declared["source"] == "study [robustness]" and r.declared["shifts"] == [1.0]
    assert r.leader_changes_at["new_leader"] == "weak" and 0 < r.leader_changes_at["prior_probability"] < 0.5


@pytest.mark.slow
def test_variants_beyond_the_declared_pareto_k_are_refitted_on_the_compiled_model(case, tmp_path, monkeypatch):
    (tmp_path / "obs.csv").write_text(one_group_events_csv())
    strict = {**STUDY, "robustness": {**STUDY["robustness"], "pareto_k_threshold": 0.05}}
    write_study(tmp_path, strict, "s.toml")
    monkeypatch.setattr("forecast.workflows.update.StudyModel", lambda s, c: case.model)
    before = case.model.n_compiled
    r = run_update(tmp_path / "s.toml", SETTINGS, write=False).robustness
    assert case.model.n_compiled == before  # the refits ran on the one compiled model
    assert r.declared["pareto_k_threshold"] == 0.05 and r.refitted
    grid = {v.id: v for v in build_grid(case.study, grid_spec(case.study.robustness))}
    for row in r.variants[1:]:
        assert (row["method"] == "refitted") == (not row["pareto_k"] <= 0.05), row["id"]
        if row["method"] == "refitted":
            assert row["refit"]["converged"] and row["reliable"]
            exact = _exact_probabilities(case, grid[row["id"]])
            for hid, p in row["posterior_probabilities"].items():
                assert abs(p - exact[hid]) <= 3 * row["posterior_probabilities_se"][hid] + 0.01, row["id"]


@pytest.mark.slow
def test_update_command_json_has_robustness_unless_asked_not_to(case, tmp_path, monkeypatch):
    monkeypatch.setattr("forecast.workflows.update.StudyModel", lambda s, c: case.model)
    args = ["update", str(case.path), "--draws", "600", "--tune", "400", "--runs-dir", str(tmp_path), "--json", "-q"]
    out = CliRunner().invoke(main, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert {"leader", "leader_stable", "ranges", "leaders", "flips", "leader_changes_at", "prior_odds"} <= set(
        d["robustness"]
    )
    assert set(d["robustness"]["leaders"]) == {row["id"] for row in d["robustness"]["variants"]}
    out = CliRunner().invoke(main, [*args, "--no-robustness"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    plain = json.loads(out.output)
    assert "robustness" not in plain and plain["judgement"]["robust"] is None
    assert [h["posterior_probability"] for h in plain["hypotheses"]] == [
        h["posterior_probability"] for h in d["hypotheses"]
    ]
