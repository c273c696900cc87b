"""`forecast evidence` on a study with constraint hypotheses (issue 15): each observation's and each
evidence group's influence on the constraint probabilities, by Pareto-smoothed importance
reweighting of the run's stored encompassing posterior (prior masses unchanged), flagged where
Pareto k is too high, shown apart from the prior-specified diagnosticity.

Fast layer: the reweighting against exact answers (equal weights; a conjugate Normal toy). Slow
layer: the tiny two-group study of tests/test_constraint_history.py, fitted once.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import event, write_mini
from scipy import stats
from test_constraint_history import PRIOR_DRAWS, SETTINGS, add_encompassing_fit, constraint_study, rows

from forecast.errors import StudyError
from forecast.reports.text.evidence import render_evidence
from forecast.runs.layout import EVIDENCE
from forecast.runs.stored import StoredRun
from forecast.spec.constraints import ENCOMPASSING_ID
from forecast.spec.study import load_study
from forecast.stats.encompassing import mass_from_draws
from forecast.workflows.constraints import compare
from forecast.workflows.evidence import item_scenarios, load_run, run_evidence
from forecast.workflows.evidence.constraints import (
    constraint_evidence,
    psis_log_weights,
    reweighted_mass,
)

# --- the reweighting (fast) -----------------------------------------------------------------------


def test_equal_weights_give_the_unweighted_masses_exactly():
    inside = np.random.default_rng(1).random(4_000) > 0.3
    lw, k = psis_log_weights(np.zeros(4_000), 1.0)
    assert k == 0.0
    m = reweighted_mass(inside, lw)
    assert m.value == mass_from_draws(inside).value
    assert m.n == 4_000 and m.se == mass_from_draws(inside).se


def test_reweighting_a_normal_posterior_by_one_observation_gives_the_exact_mass():
    # theta | y ~ N(m, s^2) from 8 observations; a ninth, y9 = 1.5 with unit variance, added by weights.
    m, s, y9 = 0.4, 0.35, 1.5
    theta = m + s * np.random.default_rng(2).standard_normal(20_000)
    lw, k = psis_log_weights(stats.norm.logpdf(y9, theta, 1.0), 1.0)
    prec = 1 / s**2 + 1
    exact = stats.norm.sf(0.5, (m / s**2 + y9) / prec, math.sqrt(1 / prec))
    mass = reweighted_mass(theta > 0.5, lw)
    assert k < 0.5
    assert abs(mass.value - exact) < 4 * mass.se


# --- on a fitted run (slow) ------------------------------------------------------------------------


def evidence_rows() -> list[dict]:
    """The history study's rows and a second, weaker report of E5 (not counted)."""
    out = rows()
    out.append(event(99, event_date="2020-01-14", counterpart="us", domain="defence", reliability="C3", origin_id="E5"))
    return out


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    from forecast.workflows.update import run_update

    d = tmp_path_factory.mktemp("cevid")
    path, _ = write_mini(d, evidence_rows(), constraint_study())
    runs = d / "runs"
    update = run_update(path, SETTINGS, runs_root=runs, robustness=False)
    study = load_study(path)
    run = StoredRun.find(update.run_dir)
    add_encompassing_fit(run, study, SETTINGS)
    result = run_evidence(path, runs_root=runs, reliability_below=0.8, max_refits=0)
    return path, runs, run, study, result


@pytest.mark.slow
def test_the_run_s_constraint_probabilities_are_its_comparison_s(mixed):
    _, _, run, study, result = mixed
    c = result.constraints
    full = compare(
        study, study.constraints, run.open_posterior(ENCOMPASSING_ID), SETTINGS.seed, PRIOR_DRAWS, factors=()
    )
    assert c.hypotheses == tuple(h.id for h in full.hypotheses)
    for h in full.hypotheses:
        assert c.posterior_probability[h.id] == h.posterior_probability
        assert c.prior_mass[h.id] == h.prior_mass.value
    # Read from the run's constraints.json when `forecast update` wrote one (the same seed and draws), else computed.
    assert c.prior_mass_source == ("constraints.json" if (run.path / "constraints.json").is_file() else "computed")


@pytest.mark.slow
def test_every_observation_and_group_has_its_constraint_what_ifs(mixed):
    _, _, _, study, result = mixed
    c = result.constraints
    assert {x.id for x in c.observations} == {x.id for x in result.observations}
    assert [x.id for x in c.groups] == ["group:west", "group:east", "domain:defence", "domain:energy"]
    assert c.quality is not None and c.quality.n_observations == 1  # the C3 report
    for x in [*c.observations, *c.groups]:
        assert sum(x.if_removed.probabilities.values()) == pytest.approx(1.0)
        assert x.unreliable == (
            x.if_removed.method == "unreliable" or (x.if_reversed is not None and x.if_reversed.method == "unreliable")
        )
        if x.if_removed.pareto_k is not None:
            assert (x.if_removed.method == "unreliable") == (x.if_removed.pareto_k > c.pareto_k_threshold)
    shifts = [x.max_shift for x in c.observations]
    assert shifts == sorted(shifts, reverse=True)


@pytest.mark.slow
def test_a_report_that_is_not_counted_changes_nothing(mixed):
    *_, result = mixed
    x = next(x for x in result.constraints.observations if x.id == "E99")
    assert x.if_removed.method == "unchanged" and x.if_removed.max_shift == 0.0
    assert x.if_removed.probabilities == result.constraints.posterior_probability


@pytest.mark.slow
def test_leaving_out_a_group_a_region_does_not_touch_barely_moves_its_mass(mixed):
    *_, result = mixed
    c = result.constraints
    west = next(x for x in c.groups if x.id == "group:west")
    # 'east_cooperative' is about the east group only; the groups' parameters are independent.
    moved = west.if_removed.posterior_mass["east_cooperative"] - c.posterior_mass["east_cooperative"]
    assert abs(moved) < 0.03


@pytest.mark.slow
def test_reweighting_agrees_with_a_refit_for_one_observation(mixed):
    import dataclasses

    from forecast.fit.sampler import StudyModel
    from forecast.workflows.constraints import encompassing_hypothesis
    from forecast.workflows.evidence.constraints import _refit

    path, _, run, study, result = mixed
    ctx = load_run(study, run)
    removals, _ = item_scenarios(ctx)
    i = int(np.flatnonzero(ctx.table["id"].to_numpy() == "E20")[0])
    psis = next(x for x in result.constraints.observations if x.id == "E20").if_removed
    assert psis.method == "psis"
    enc = encompassing_hypothesis(study.constraints)
    model = StudyModel(dataclasses.replace(study, hypotheses=(enc,)), ctx.cells)
    refit = _refit(model, ctx, study.constraints, removals[i])
    for h, m in zip(result.constraints.hypotheses, refit.masses, strict=True):
        assert abs(psis.posterior_mass[h] - m.value) < 4 * math.hypot(m.se, 0.02) + 0.01


@pytest.mark.slow
def test_heavy_tailed_weights_are_flagged_and_refitted_within_the_budget(mixed):
    path, runs, run, study, _ = mixed
    flagged = run_evidence(path, runs_root=runs, k_threshold=-1.0, refit=False, write=False).constraints
    assert flagged.n_unreliable > 0 and flagged.n_refits == 0
    assert all(x.unreliable for x in flagged.groups)
    refitted = run_evidence(path, runs_root=runs, k_threshold=-1.0, max_refits=0, write=False).constraints
    assert refitted.n_refits == 0
    ctx = load_run(study, run)
    removals, reversals = item_scenarios(ctx)
    c = constraint_evidence(ctx, removals, reversals, None, [], shift=0.1, k_threshold=-1.0, refit=True, max_refits=2)
    assert c.n_refits == 2
    assert [x.if_removed.method for x in c.groups[:2]] == ["refit", "refit"]  # evidence groups first


@pytest.mark.slow
def test_evidence_json_and_text_keep_the_constraint_comparison_apart(mixed):
    from click.testing import CliRunner

    from forecast.cli import main

    path, runs, run, _, result = mixed
    text = render_evidence(result)
    assert "Prior-specified hypotheses: posterior probability now" in text
    assert "Constraint hypotheses" in text and "group:west" in text
    stored = json.loads((run.path / EVIDENCE).read_text())
    assert set(stored["posterior_probability"]) == {"warm", "cold"}
    assert set(stored["constraints"]["posterior_probability"]) == {"east_cooperative", "west_ahead", "none_of_these"}
    res = CliRunner().invoke(
        main, ["evidence", str(path), "--runs-dir", str(runs), "--max-refits", "0", "--json", "--quiet"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["constraints"]["leading"] == result.constraints.leading


@pytest.mark.slow
def test_a_constraint_only_study_gets_its_evidence(tmp_path):
    path, _ = write_mini(tmp_path, evidence_rows(), constraint_study(prior_specified=False))
    runs = tmp_path / "runs"
    study = load_study(path)
    run = constraint_only_run(path, runs, study)
    result = run_evidence(path, runs_root=runs, max_refits=0)
    assert result.hypotheses == () and result.observations == () and result.leading is None
    assert len(result.constraints.observations) == len(evidence_rows())
    assert "Constraint hypotheses" in render_evidence(result)
    assert json.loads((run.path / EVIDENCE).read_text())["constraints"]["hypotheses"] == list(
        result.constraints.hypotheses
    )


def constraint_only_run(path, runs, study) -> StoredRun:
    """`forecast update`'s run of a study with constraint hypotheses only; until update writes one,
    a run written here in its layout (summary, manifest, copies, the encompassing fit)."""
    from forecast.workflows.update import run_update

    try:
        update = run_update(path, SETTINGS, runs_root=runs, robustness=False)
        run = StoredRun.find(update.run_dir)
    except StudyError:
        import datetime as dt

        from forecast.data.observations import load_observations
        from forecast.runs.layout import MANIFEST, OBSERVATIONS_COPY, SCHEMA_VERSION, STUDY_COPY, SUMMARY
        from forecast.runs.store import RunWriter

        obs = load_observations(study)
        with RunWriter(runs, study.name) as w:
            w.copy(STUDY_COPY, study.path)
            w.copy(OBSERVATIONS_COPY, obs.path)
            w.write_json(
                SUMMARY,
                {"schema_version": SCHEMA_VERSION, "hypotheses": [], "settings": SETTINGS.to_dict(), "converged": True},
            )
            w.write_json(
                MANIFEST,
                {
                    "schema_version": SCHEMA_VERSION,
                    "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "observations": {"path": str(obs.path), "sha256": obs.sha256, "n": obs.n},
                },
            )
            final = w.commit()
        run = StoredRun.open(final)
    add_encompassing_fit(run, study, SETTINGS)
    return run


@pytest.mark.slow
def test_prior_masses_are_read_from_the_runs_constraints_json_when_it_has_one(mixed, tmp_path):
    import shutil

    from forecast.runs.layout import CONSTRAINTS, CONSTRAINTS_SCHEMA

    path, _, run, study, result = mixed
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    full = compare(
        study, study.constraints, run.open_posterior(ENCOMPASSING_ID), SETTINGS.seed, PRIOR_DRAWS, factors=()
    )
    stored = {"schema_version": CONSTRAINTS_SCHEMA, **full.to_dict(), "agreement": None}
    for h in stored["hypotheses"]:
        h["prior_mass"]["value"] = 0.5  # not what the study's prior gives: shows where the masses come from
    StoredRun.open(copy).write_json(CONSTRAINTS, stored)
    c = run_evidence(path, run_dir=copy, max_refits=0, write=False).constraints
    assert c.prior_mass_source == "constraints.json"
    assert c.prior_mass == dict.fromkeys(c.hypotheses, 0.5)
    assert c.posterior_mass == result.constraints.posterior_mass  # the posterior masses are the draws'


@pytest.mark.slow
def test_a_run_without_the_encompassing_fit_keeps_its_prior_specified_evidence_and_says_why(mixed, tmp_path):
    import shutil

    path, _, run, _, result = mixed
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    (copy / "posterior" / f"{ENCOMPASSING_ID}.nc").unlink()
    older = run_evidence(path, run_dir=copy, max_refits=0, write=False)
    assert older.constraints is None
    assert older.posterior_probability == result.posterior_probability
    assert any("no encompassing fit" in w for w in older.warnings)
    assert "no encompassing fit" in render_evidence(older)
