"""`forecast update` on a study with constraint hypotheses (issue 15, item 6).

The encompassing model is fitted once beside the prior-specified hypotheses, stored like a
hypothesis's fit (posterior/encompassing.nc) with the comparison in constraints.json, and the two
comparisons are said to agree or not in one sentence no stronger than both allow. Fast: the
agreement rule on hand-made records, the reserved id, the staleness rule. Slow (tiny fits): the
run a mixed and a constraint-only study write, and an encompassing fit that fails the gate.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import base_study, default_priors, event, write_mini, write_study

from forecast.cli import main
from forecast.errors import ConvergenceError, StudyError
from forecast.fit.sampler import SamplerSettings, with_problem
from forecast.reports.text.update import render_update
from forecast.runs.layout import CONSTRAINTS, CONSTRAINTS_SCHEMA, POSTERIOR_DIR
from forecast.runs.stored import StoredRun, fitting_content
from forecast.spec.constraints import ENCOMPASSING_ID
from forecast.spec.study import load_study
from forecast.stats.encompassing import BayesFactor, Mass
from forecast.workflows.constraints import (
    ConstraintComparison,
    ConstraintHypothesisResult,
    ConstraintRobustness,
    agreement,
    agreement_with_summary,
    constraint_leader_stable,
    run_constraints,
)
from forecast.workflows.update import run_update

TINY = SamplerSettings(draws=300, tune=300, chains=2, cores=2, seed=5)

# --- the agreement rule, on hand-made comparisons ------------------------------------------------

LABELS = {"hedging": "Pragmatic hedging", "realignment": "Strategic realignment", "none_of_these": "None of these"}


def _comparison(
    probs: dict[str, float], scaled: list[dict[str, float]] | None = None, *, converged=True, reliable=True, se=0.01
) -> ConstraintComparison:
    mass = Mass(0.3, 0.01, "plain", 4000, 1200)
    rows = [
        ConstraintHypothesisResult(
            hid,
            LABELS[hid],
            "",
            [],
            hid == "none_of_these",
            1 / len(probs),
            mass,
            mass,
            BayesFactor(0.0, 0.05, mass, mass),
            p,
            se,
            p,
        )  # fmt: skip
        for hid, p in probs.items()
    ]
    robustness = [
        ConstraintRobustness(f, s, 0.0, 0.3, reliable) for f, s in zip((1.5, 1 / 1.5), scaled or [], strict=False)
    ]
    return ConstraintComparison(
        "s", "s.toml", "q", 10, None, converged, {}, [], {}, rows, [], max(probs, key=probs.get), robustness,
        4000, 4000, {}, "",
    )  # fmt: skip


SAME = {"hedging": 0.7, "realignment": 0.2, "none_of_these": 0.1}


def test_both_comparisons_robustly_favouring_one_id_are_said_to_agree_plainly():
    c = _comparison(SAME, [SAME, SAME])
    a = agreement(c, prior_leader="hedging", prior_label="Pragmatic hedging", prior_probability=0.84, prior_robust=True)
    assert a.agree is True and a.prior_leader == a.constraint_leader == "hedging"
    assert a.sentence.startswith("Both comparisons favour 'Pragmatic hedging' (prior-specified 0.84, constraint 0.70)")
    assert "robust in both" in a.sentence and "tentative" not in a.sentence


def test_agreement_resting_on_a_lead_that_is_not_robust_is_only_tentative():
    c = _comparison(SAME, [SAME, SAME])
    a = agreement(
        c, prior_leader="hedging", prior_label="Pragmatic hedging", prior_probability=0.84, prior_robust=False
    )
    assert a.agree is True
    assert "tentative" in a.sentence and "prior-specified lead is NOT robust" in a.sentence
    # The constraint side's robustness counts too: a flip under the scaled encompassing prior.
    flipped = _comparison(SAME, [SAME, {"hedging": 0.3, "realignment": 0.6, "none_of_these": 0.1}])
    assert constraint_leader_stable(flipped) is False
    b = agreement(flipped, prior_leader="hedging", prior_probability=0.84, prior_robust=True)
    assert "tentative" in b.sentence and "constraint lead is NOT robust" in b.sentence
    # Weak prior-specified evidence, or an order within Monte Carlo error, is said too.
    w = agreement(c, prior_leader="hedging", prior_robust=True, prior_bayes_factor=1.4, prior_mc_can_flip=True)
    assert "weak (Bayes factor 1.4" in w.sentence and "Monte Carlo error could reverse" in w.sentence


def test_disagreeing_comparisons_name_both_leads_and_their_robustness():
    c = _comparison({"hedging": 0.3, "realignment": 0.23, "none_of_these": 0.47}, [])
    a = agreement(
        c, prior_leader="hedging", prior_label="Pragmatic hedging", prior_probability=0.84, prior_robust=False
    )
    assert a.agree is False and a.constraint_leader == "none_of_these"
    assert a.sentence.startswith(
        "The comparisons disagree: the prior-specified hypotheses favour 'Pragmatic hedging' (0.84; NOT robust"
    )
    assert "the constraint hypotheses favour 'None of these' (0.47; not shown robust" in a.sentence
    assert "NOT robust to the declared class" in a.sentence and "not shown robust" in a.sentence


def test_without_a_prior_specified_comparison_agreement_is_undecided():
    c = _comparison(SAME, [SAME, SAME])
    a = agreement(c)
    assert a.agree is None and a.prior_leader is None
    assert a.sentence.startswith("The constraint hypotheses favour 'Pragmatic hedging' (0.70; robust to a 1.5x")
    assert "not two prior-specified hypotheses" in a.sentence
    # summary.json of a constraint-only run (no judgement, no hypotheses) reads the same way.
    assert agreement_with_summary(c, {"hypotheses": [], "judgement": None}) == a


def test_an_unconverged_or_unreliable_side_is_never_presented_as_sound():
    c = _comparison(SAME, [SAME, SAME], converged=False)
    a = agreement(c, prior_leader="hedging", prior_probability=0.84, prior_robust=True)
    assert "tentative" in a.sentence and "encompassing fit failed its checks (unreliable)" in a.sentence
    b = agreement(_comparison(SAME, [SAME, SAME]), prior_leader="hedging", prior_robust=True, prior_converged=False)
    assert "prior-specified fit failed its checks" in b.sentence
    # A reweighting that is unreliable (Pareto k) shows nothing either way.
    assert constraint_leader_stable(_comparison(SAME, [SAME, SAME], reliable=False)) is None
    close = _comparison({"hedging": 0.40, "realignment": 0.38, "none_of_these": 0.22}, [], se=0.02)
    assert "within Monte Carlo error" in agreement(close).sentence


def test_agreement_with_summary_reads_the_prior_side_from_the_update_record():
    c = _comparison(SAME, [SAME, SAME])
    summary = {
        "hypotheses": [
            {"id": "hedging", "label": "Pragmatic hedging", "diagnostics": {"converged": True}},
            {"id": "realignment", "label": "Strategic realignment", "diagnostics": {"converged": True}},
        ],
        "judgement": {
            "leader": "realignment",
            "posterior_probability": 0.6,
            "robust": True,
            "bayes_factor": 5.0,
            "mc_error_can_flip": False,
        },
    }
    a = agreement_with_summary(c, summary)
    assert a.agree is False and "favour 'Strategic realignment' (0.60; robust" in a.sentence


# --- the study: reserved id, staleness ---------------------------------------------------------


def _constraint_study(*, only: bool = False, constraint: str = "share(west, all) - share(east, all) > 0.1") -> dict:
    s = base_study()
    s["encompassing"] = {"priors": default_priors(), "prior_draws": 4000}
    s["constraint_hypotheses"] = [
        {"id": "steady", "label": "Steady (constraints)", "claim": "West ahead.", "constraints": [constraint]},
        {"id": "shift", "label": "Shift (constraints)", "constraints": ["share(east, all) - share(west, all) > 0.1"]},
    ]
    if only:
        del s["hypotheses"]
    return s


def _rows(n: int = 40) -> list[dict]:
    rows = []
    for i in range(1, n + 1):
        west = i % 3 != 0
        coop = (west and i % 5 != 0) or (not west and i % 4 == 0)
        rows.append(
            event(
                i,
                event_date=f"{2020 + i % 2}-{1 + i % 12:02d}-15",
                counterpart="us" if west else "russia",
                domain="defence" if i % 2 else "energy",
                outcome="cooperative" if coop else "conflictual",
                intensity="3" if coop else "-3",
            )
        )
    return rows


def test_a_prior_specified_hypothesis_may_not_take_the_encompassing_id(tmp_path):
    s = _constraint_study()
    s["hypotheses"][0]["id"] = ENCOMPASSING_ID
    path, _ = write_mini(tmp_path, _rows(), s)
    with pytest.raises(StudyError) as e:
        run_update(path, TINY, runs_root=tmp_path / "runs")
    text = str(e.value)
    assert str(path) in text and "hypotheses[0].id" in text and "reserved" in text


def test_commands_that_need_prior_specified_hypotheses_say_so_on_a_constraint_only_study(tmp_path):
    from forecast.spec.constraints import require_prior_hypotheses

    study = load_study(write_study(tmp_path, _constraint_study(only=True)))
    with pytest.raises(StudyError, match="`forecast predict` needs prior-specified \\[\\[hypotheses\\]\\]"):
        require_prior_hypotheses(study, "forecast predict", "its forecasts average the hypotheses' posteriors")
    require_prior_hypotheses(load_study(write_study(tmp_path, _constraint_study())), "forecast predict", "")


def test_the_constraint_spec_is_part_of_what_a_run_depends_on_but_its_words_are_not(tmp_path):
    def content(data: dict) -> tuple:
        return fitting_content(load_study(write_study(tmp_path, data)))

    base = content(_constraint_study())
    worded = _constraint_study()
    worded["constraint_hypotheses"][0]["label"] = "Another label"
    worded["constraint_hypotheses"][0]["claim"] = "Another claim."
    assert content(worded) == base
    assert content(_constraint_study(constraint="share(west, all) - share(east, all) > 0.2")) != base
    for change in (
        lambda s: s["encompassing"].update(prior_draws=5000),
        lambda s: s["encompassing"]["priors"]["tilt"]["all"]["kwargs"].update(sigma=1.5),
        lambda s: s["encompassing"].update(periods={"early": "2020Q1..2020Q4"}),
        lambda s: s["constraint_hypotheses"][1].update(id="drift"),
    ):
        changed = _constraint_study()
        change(changed)
        assert content(changed) != base
    # A study without constraint hypotheses has the same content as before they existed.
    assert fitting_content(load_study(write_study(tmp_path, base_study())))[-1] is None


# --- runs (slow, tiny fits) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixed")
    path, _ = write_mini(d, _rows(), _constraint_study())
    result = run_update(path, TINY, runs_root=d / "runs", allow_unconverged=True, variants=False, robustness=False)
    return path, result


@pytest.mark.slow
def test_update_fits_the_encompassing_model_once_and_stores_the_comparison(mixed_run):
    path, result = mixed_run
    run = StoredRun.open(Path(result.run_dir))
    assert run.hypothesis_ids == ["steady", "shift"]  # the encompassing fit is not a hypothesis
    assert (run.path / POSTERIOR_DIR / f"{ENCOMPASSING_ID}.nc").is_file()
    assert run.open_posterior(ENCOMPASSING_ID).sizes["chain"] == TINY.chains
    stored = run.read_json(CONSTRAINTS, CONSTRAINTS_SCHEMA)
    assert stored is not None and "constraints" not in run.summary  # one copy, in constraints.json
    assert [h["id"] for h in stored["hypotheses"]] == ["steady", "shift", "none_of_these"]
    assert set(stored["agreement"]) == {"agree", "prior_leader", "constraint_leader", "sentence"}
    assert stored["agreement"]["prior_leader"] == result.judgement["leader"]
    assert "sampler_encompassing" in run.manifest
    # --json carries the same record under "constraints".
    d = json.loads(json.dumps(result.to_dict()))
    assert d["constraints"]["leader"] == stored["leader"] == "steady"
    assert d["constraints"]["agreement"] == stored["agreement"]
    assert d["timings"]["constraints_s"] > 0
    # The Python API returns the comparison with the run, and the fit behind it.
    from forecast.api import load_run

    opened = load_run(result.run_dir)
    assert opened.constraints["agreement"] == stored["agreement"]
    assert opened.posterior(ENCOMPASSING_ID).posterior.sizes["chain"] == TINY.chains
    # The same seed gives `forecast constraints` the very same numbers.
    alone = run_constraints(path, TINY, allow_unconverged=True)
    assert [h.posterior_probability for h in alone.hypotheses] == [
        h["posterior_probability"] for h in stored["hypotheses"]
    ]


@pytest.mark.slow
def test_update_text_shows_the_constraint_table_apart_and_then_the_agreement(mixed_run):
    _, result = mixed_run
    text = render_update(result)
    prior_table = text.index("Support (Bayes factors)")
    constraint_title = text.index("Constraint hypotheses: one shared encompassing prior, a separate comparison")
    sentence = text.index(result.agreement.sentence)
    assert prior_table < constraint_title < sentence
    assert "none_of_these (complement)" in text


@pytest.mark.slow
def test_editing_a_constraint_makes_the_run_stale_but_relabelling_does_not(mixed_run, tmp_path):
    path, result = mixed_run
    run = StoredRun.open(Path(result.run_dir))
    sha = run.manifest["observations"]["sha256"]
    text = Path(path).read_text(encoding="utf-8")
    relabelled = tmp_path / "relabelled.toml"
    relabelled.write_text(text.replace("Steady (constraints)", "West stays ahead"), encoding="utf-8")
    assert run.mismatches(load_study(relabelled), sha) == []
    edited = tmp_path / "edited.toml"
    edited.write_text(text.replace("share(east, all) - share(west, all) > 0.1", "share(east, all) > 0.6"))
    assert any("constraint hypotheses" in m for m in run.mismatches(load_study(edited), sha))


@pytest.mark.slow
def test_a_constraint_only_study_updates_and_its_readers_say_so_instead_of_failing(tmp_path):
    path, _ = write_mini(tmp_path, _rows(), _constraint_study(only=True))
    runs = tmp_path / "runs"
    result = run_update(path, TINY, runs_root=runs, allow_unconverged=True)
    assert result.hypotheses == [] and result.judgement is None and result.robustness is None
    assert result.agreement.agree is None and "constraint hypotheses favour" in result.conclusion
    run = StoredRun.open(Path(result.run_dir))
    assert run.summary["hypotheses"] == [] and run.read_json(CONSTRAINTS, CONSTRAINTS_SCHEMA) is not None
    assert "No prior-specified hypotheses" in render_update(result)
    out = CliRunner().invoke(main, ["update", str(path), "--runs-dir", str(runs), "-q", "--json", "--draws", "300",
                                    "--tune", "300", "--allow-unconverged", "--no-robustness"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["constraints"]["agreement"]["agree"] is None
    for command in (["report"], ["history", "--allow-unconverged"]):
        out = CliRunner().invoke(main, [*command, str(path), "--runs-dir", str(runs), "-q"])
        assert out.exit_code in (0, 2, 3), out.output
        assert "Traceback" not in out.output and "internal error" not in out.output


@pytest.mark.slow
def test_an_encompassing_fit_that_fails_the_gate_follows_the_hypotheses_rules(tmp_path, monkeypatch):
    import forecast.workflows.update as update

    real = update.fit_encompassing

    def failing(*args, **kwargs):
        fit, model = real(*args, **kwargs)
        return with_problem(fit, "R-hat 1.2 > 1.01 (made to fail)"), model

    monkeypatch.setattr(update, "fit_encompassing", failing)
    path, _ = write_mini(tmp_path, _rows(), _constraint_study())
    settings = dataclasses.replace(TINY, seed=6)
    with pytest.raises(ConvergenceError, match=r"the encompassing model: .*\(made to fail\)"):
        run_update(path, settings, runs_root=tmp_path / "runs", variants=False, robustness=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("constraints.json"))
    result = run_update(
        path, settings, runs_root=tmp_path / "runs", allow_unconverged=True, variants=False, robustness=False
    )
    run = StoredRun.open(Path(result.run_dir))
    assert not run.converged and run.summary["warning"].startswith("UNRELIABLE")
    stored = run.read_json(CONSTRAINTS, CONSTRAINTS_SCHEMA)
    assert stored["converged"] is False and "unreliable" in stored["agreement"]["sentence"]
    text = render_update(result)
    assert "UNRELIABLE: the encompassing fit failed" in text
