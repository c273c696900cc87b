"""Power-scaling diagnostics that inform: priorsense's rule and categories, the role of each prior
(part of a hypothesis's claim, or shared by every hypothesis), and the note that puts the count of
flags in context (a hypothesis stated as a prior is expected to be prior-sensitive; the robustness
class decides whether the conclusion is defensible). No fitting: exact conjugate draws, fake
posterior draws and hand-made records.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from builders_sensitivity import sensitivity_result
from helpers import base_study, default_priors, event, hypothesis, prior, write_events, write_study

from forecast.reports.text.sensitivity import render_sensitivity
from forecast.runs.store import dumps
from forecast.spec.study import load_study
from forecast.workflows.sensitivity import SensitivityResult
from forecast.workflows.sensitivity.record import psense_diagnostics, psense_flag_details, psense_note
from forecast.workflows.sensitivity.reweight import (
    CLAIM,
    PRIOR_DATA_CONFLICT,
    PSENSE_THRESHOLD,
    SHARED,
    STRONG_PRIOR,
    power_scaling,
    prior_role,
    psense_diagnosis,
)

# --- priorsense's rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prior_s", "lik_s", "expected"),
    [
        (0.10, 0.10, PRIOR_DATA_CONFLICT),
        (0.05, 0.05, PRIOR_DATA_CONFLICT),  # both at the threshold: >= on both sides
        (0.10, 0.01, STRONG_PRIOR),
        (0.05, 0.01, None),  # prior sensitivity must be strictly above the threshold ...
        (0.10, 0.05, PRIOR_DATA_CONFLICT),  # ... and likelihood strictly below it, for a strong prior
        (0.01, 0.30, None),  # the data inform it, the prior hardly matters: the usual, good case
        (0.01, 0.01, None),
        (float("nan"), 0.1, None),
    ],
)
def test_the_diagnosis_follows_priorsenses_rule_at_its_default_threshold(prior_s, lik_s, expected):
    assert PSENSE_THRESHOLD == 0.05
    assert psense_diagnosis(prior_s, lik_s) == expected


def _conjugate_tree(rng, cases: dict[str, tuple[float, float, float, int]], draws: int = 4000):
    """Exact posterior draws of independent normal means: name -> (prior sd, data mean, data sd, n)."""
    import xarray as xr
    from scipy import stats

    post, log_prior, loglik = {}, {}, []
    for name, (tau, ybar, sigma, n) in cases.items():
        y = ybar + sigma * rng.standard_normal(n)
        var = 1 / (n / sigma**2 + 1 / tau**2)
        mean = var * y.sum() / sigma**2
        theta = rng.normal(mean, np.sqrt(var), (1, draws))
        post[name] = (("chain", "draw"), theta)
        log_prior[name] = (("chain", "draw"), stats.norm.logpdf(theta, 0, tau))
        loglik.append(stats.norm.logpdf(y[None, None, :], theta[..., None], sigma).sum(-1))
    return xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset(post),
            "log_prior": xr.Dataset(log_prior),
            "log_likelihood": xr.Dataset({"y": (("chain", "draw"), np.sum(loglik, axis=0))}),
        }
    )


def test_the_rule_gives_arviz_psense_summarys_own_diagnosis():
    """On exact conjugate draws spanning the three outcomes, our diagnosis of its numbers is ArviZ's column."""
    from arviz_stats import psense_summary

    cases = {
        "informed": (5.0, 0.3, 1.0, 200),  # wide prior, plenty of data: not flagged
        "conflict": (0.1, 3.0, 1.0, 100),  # tight prior far from the data
        "untested": (0.3, 0.0, 30.0, 3),  # tight prior, almost no information in the data
    }
    ours, theirs = {}, {}
    for name, case in cases.items():  # one model each: a joint likelihood would add Monte Carlo noise
        table = psense_summary(_conjugate_tree(np.random.default_rng(4), {name: case}), round_to=12)
        ours[name] = psense_diagnosis(table.loc[name, "prior"], table.loc[name, "likelihood"])
        theirs[name] = None if table.loc[name, "diagnosis"] == "✓" else table.loc[name, "diagnosis"]
    assert ours == theirs
    assert ours == {"informed": None, "conflict": PRIOR_DATA_CONFLICT, "untested": STRONG_PRIOR}


# --- the role of each prior --------------------------------------------------------------------


def two_hypotheses(tmp_path):
    data = base_study()
    shifted = default_priors() | {
        "trend": {"west": prior("Normal", mu=-0.3, sigma=0.15), "east": prior("Normal", mu=0.3, sigma=0.15)}
    }
    data["hypotheses"] = [hypothesis("steady", 0.5), hypothesis("shift", 0.5, shifted)]
    write_events(
        tmp_path / "events.csv",
        [event(i, outcome="conflictual", intensity=-3) if i % 3 == 0 else event(i) for i in range(1, 13)],
    )
    return load_study(write_study(tmp_path, data))


def test_a_prior_every_hypothesis_states_alike_is_shared_the_others_are_claims(tmp_path):
    study = two_hypotheses(tmp_path)
    roles = {s: prior_role(study, s) for s in study.slots}
    assert {s for s, r in roles.items() if r == CLAIM} == {("trend", "west"), ("trend", "east")}
    assert roles[("volatility", "east")] == roles[("tilt", "west")] == SHARED


def test_power_scaling_rows_carry_the_diagnosis_the_old_flag_and_the_priors_role(tmp_path):
    """Fake posterior draws (from the priors): the rows' shape, not their values, is under test."""
    import xarray as xr

    from forecast.data.cells import cell_data
    from forecast.data.observations import load_observations
    from forecast.model.build import DOMAIN_EFFECT, RW_STEPS, rv_name

    study = two_hypotheses(tmp_path)
    cells = cell_data(load_observations(study).table, study)
    rng = np.random.default_rng(1)
    h = study.hypotheses[1]
    shape = (2, 300)
    data = {rv_name(p, g): (("chain", "draw"), h.priors[(p, g)].sample(rng, shape)) for p, g in study.slots}
    n_g, n_d, n_q = len(study.groups), len(study.domains), study.time.n_quarters
    data[DOMAIN_EFFECT] = (("chain", "draw", "g", "d"), rng.standard_normal((*shape, n_g, n_d)))
    data[RW_STEPS] = (("chain", "draw", "g", "q"), rng.standard_normal((*shape, n_g, n_q - 1)))
    rows = power_scaling(study, cells, xr.Dataset(data), h)
    assert [(r["parameter"], r["group"]) for r in rows] == study.slots
    old = {PRIOR_DATA_CONFLICT: "prior-data conflict", STRONG_PRIOR: "prior-dominated", None: None}
    for r in rows:
        assert r["diagnosis"] == psense_diagnosis(r["prior"], r["likelihood"])
        assert r["flag"] == old[r["diagnosis"]]
        assert r["prior_role"] == (CLAIM if r["parameter"] == "trend" else SHARED)


# --- the record, the note and the text ---------------------------------------------------------


def row(parameter, group, prior_s, lik_s, role=CLAIM, **extra):
    d = psense_diagnosis(prior_s, lik_s)
    flag = {PRIOR_DATA_CONFLICT: "prior-data conflict", STRONG_PRIOR: "prior-dominated"}.get(d)
    out = {"parameter": parameter, "group": group, "prior": prior_s, "likelihood": lik_s, "flag": flag}
    return out | {"diagnosis": d, "prior_role": role} | extra


PSENSE = {
    "a": [
        row("tilt", "g", 0.12, 0.09),
        row("trend", "g", 0.08, 0.03),
        row("volatility", "g", 0.30, 0.40, SHARED),
    ],
    "b": [
        row("tilt", "g", 0.02, 0.30),
        row("trend", "g", 0.09, 0.07),
        row("volatility", "g", 0.20, 0.35, SHARED),
    ],
}


def flags(psense):
    return [
        {"hypothesis": h, "parameter": r["parameter"], "group": r["group"], "flag": r["flag"]}
        for h, rows in psense.items()
        for r in rows
        if r["flag"]
    ]


def result(stable: bool = True, psense=PSENSE) -> SensitivityResult:
    probabilities = {"posterior_probabilities": {"a": 0.7, "b": 0.3}}
    variants = [{"id": "base", "method": "base", **probabilities}] + [
        {"id": f"a/tilt/v{i}", "method": "reweighted", **probabilities} for i in range(4)
    ]
    flips = [] if stable else [{"variant": "a/tilt/v1", "new_leader": "b", "within_mc_error": False}]
    return sensitivity_result(
        hypotheses=[
            {"id": "a", "label": "Hedging", "prior_probability": 0.5},
            {"id": "b", "label": "Realignment", "prior_probability": 0.5},
        ],
        variants=variants,
        ranges={"a": {"base": 0.7, "min": 0.4, "max": 0.8}, "b": {"base": 0.3, "min": 0.2, "max": 0.6}},
        tornado=[{"hypothesis": "a", "target": "tilt", "low": 0.4, "high": 0.8}],
        verdict={"leader": "a", "stable": stable, "flips": flips, "text": "verdict sentence."},
        prior_odds_text="odds sentence.",
        psense=psense,
        psense_flags=flags(psense),
    )


def test_diagnostics_count_every_hyperparameter_against_the_threshold():
    d = psense_diagnostics(PSENSE, 0.05)
    assert (d["n_hyperparameters"], d["n_flagged"]) == (6, 5)
    assert d["counts"] == {PRIOR_DATA_CONFLICT: 4, STRONG_PRIOR: 1, "not flagged": 1}
    assert d["by_hypothesis"]["a"] == {PRIOR_DATA_CONFLICT: 2, STRONG_PRIOR: 1, "not flagged": 0}
    assert d["shared_flagged"] == ["volatility.g"]
    assert "0.05" in d["rule"] and "Jensen-Shannon" in d["rule"] and "priorsense" in d["source"]


def test_each_flag_says_its_category_its_sensitivities_and_what_it_means_here():
    details = psense_flag_details(flags(PSENSE), PSENSE, 0.05)
    by = {(f["hypothesis"], f["parameter"]): f for f in details}
    assert by[("a", "tilt")]["diagnosis"] == PRIOR_DATA_CONFLICT
    assert "disagrees with this part of its claim" in by[("a", "tilt")]["meaning"]
    assert by[("a", "trend")]["diagnosis"] == STRONG_PRIOR and "barely tested" in by[("a", "trend")]["meaning"]
    assert (
        by[("a", "volatility")]["prior_role"] == SHARED
        and "assumption they share" in by[("a", "volatility")]["meaning"]
    )
    assert (by[("a", "tilt")]["prior"], by[("a", "tilt")]["likelihood"]) == (0.12, 0.09)
    assert ("b", "tilt") not in by


def test_the_note_explains_why_hypotheses_as_priors_are_prior_sensitive_and_points_to_robustness():
    labels = {"a": "Hedging", "b": "Realignment"}
    stable = psense_note(PSENSE, {"leader": "a", "stable": True, "flips": []}, labels, 5, 0.05)
    assert stable.startswith("5 of 6 hyperparameters are flagged by priorsense's rule (threshold 0.05)")
    assert "IS its priors" in stable and "not by the number of flags" in stable
    assert "'Hedging' leads in all 5 variants" in stable
    assert "volatility.g" in stable and "shared assumption" in stable
    flips = [{"variant": "x"}, {"variant": "y"}]
    unstable = psense_note(PSENSE, {"leader": "a", "stable": False, "flips": flips}, labels, 5, 0.05)
    assert "'Hedging' loses the lead in 2 of 5 variants" in unstable and "depends on how the priors" in unstable
    calm = {"a": [row("tilt", "g", 0.01, 0.3)]}
    assert psense_note(calm, {"leader": "a", "stable": True, "flips": []}, labels, 5, 0.05).startswith(
        "None of the 1 hyperparameters is flagged"
    )
    assert psense_note({"a": []}, {"leader": "a", "stable": True}, labels, 1, 0.05) == ""


def test_the_json_adds_the_note_and_diagnostics_and_keeps_the_old_flags():
    r = result(stable=False)
    d = r.to_dict()
    assert d["psense"] == PSENSE and d["psense_threshold"] == 0.05
    assert [{k: f[k] for k in ("hypothesis", "parameter", "group", "flag")} for f in d["psense_flags"]] == flags(PSENSE)
    assert {f["diagnosis"] for f in d["psense_flags"]} == {PRIOR_DATA_CONFLICT, STRONG_PRIOR}
    assert d["psense_note"] == r.psense_note and "loses the lead in 1 of 5 variants" in d["psense_note"]
    assert d["psense_diagnostics"]["n_flagged"] == 5
    keys = list(d)
    assert keys.index("psense_threshold") < keys.index("psense_diagnostics") < keys.index("psense_note")
    assert json.loads(dumps(r)) == d


def test_the_text_names_each_flags_category_and_explains_the_count():
    text = render_sensitivity(result(stable=False))
    assert "against priorsense's threshold 0.05 (5 of 6 hyperparameters flagged)" in text
    rows = {" ".join(line.split()[:4]): " ".join(line.split()[4:]) for line in text.splitlines()}
    assert rows["Hedging tilt.g 0.120 0.090"] == "potential prior-data conflict"
    assert rows["Hedging trend.g 0.080 0.030"] == "potential strong prior / weak likelihood"
    assert rows["Realignment volatility.g 0.200 0.350"] == (
        "potential prior-data conflict (prior shared by every hypothesis)"
    )
    assert "volatility.g" in text and "(prior shared by every hypothesis)" in text
    flat = " ".join(text.split())
    assert "Reading the flags: 5 of 6 hyperparameters are flagged" in flat and "IS its priors" in flat
    assert text.index("Power-scaling") < text.index("Reading the flags")


def test_a_sensitivity_json_stored_before_the_diagnoses_still_renders_with_them():
    """Rows without `diagnosis` or `prior_role` and no note: both are derived by the same rule."""
    d = result().to_dict()
    for key in ("psense_note", "psense_diagnostics"):
        del d[key]
    old_rows = {
        h: [{k: r[k] for k in ("parameter", "group", "prior", "likelihood", "flag")} for r in rs]
        for h, rs in PSENSE.items()
    }
    d["psense"], d["psense_flags"] = old_rows, flags(PSENSE)
    text = render_sensitivity(d)
    assert "potential prior-data conflict" in text and "potential strong prior / weak likelihood" in text
    assert "shared by every hypothesis" not in text  # the role was not recorded
    assert "IS its priors" in " ".join(text.split())
