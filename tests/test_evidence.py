"""`forecast evidence`: diagnosticity, critical items, evidence quality, corroboration.

Fast layer: pure functions, and evidence without refits on a copy of the golden run
(tests/golden/run-v1: no sampling), which pins its numbers, the record, the renderer, where it
writes and the one staleness rule.

Slow layer: one static study with one counterpart group and two domains is fitted once. Its exact
log marginal likelihoods come from quadrature (tests/exact.py), so every leave-one-out predictive
density, every "what if removed / reversed" and the quality filter have exact answers:
log p(y_i | y_-i) = log p(y) - log p(y_-i), all from closed-form counts per domain.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from exact import log_ml_group, posterior_probabilities, pymc_prior
from helpers import copy_golden, static_study, write_study

import forecast.workflows.evidence.context as evidence_module
from forecast.cli import main
from forecast.errors import RunStoreError
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.reports.text.evidence import render_evidence
from forecast.runs.layout import EVIDENCE
from forecast.runs.stored import StoredRun
from forecast.spec.study import load_study
from forecast.workflows.evidence import (
    EvidenceResult,
    change_of_log_ml,
    diagnosticity,
    load_run,
    refit_log_ml,
    run_evidence,
)
from forecast.workflows.update import run_update

GOLDEN = Path(__file__).resolve().parent / "golden"

STUDY = static_study("evidence_mini", {"up": 1.0, "down": -1.0}, domains=("d", "e"))

HEADER = "id,event_date,report_date,counterpart,domain,outcome,reliability,description,source,origin_id\n"
ROWS = (
    [f"e{i},2020-02-0{i},2020-02-0{i},c,d,cooperative,A1,coop {i},wire," for i in range(1, 9)]
    + [
        "e9,2020-05-01,2020-05-03,c,d,conflictual,A1,conflict 9,wire,",
        "e10,2020-05-02,,c,d,conflictual,A1,conflict 10,wire,",
    ]
    + ["r1,2020-02-01,2020-02-04,c,d,cooperative,C3,second report of e1,paper,e1"]
    + ["low1,2020-06-01,,c,d,conflictual,D4,rumour,blog,"]
    + ["f1,2020-08-01,,c,e,cooperative,A1,coop in e,wire,"]
    + [f"f{i},2020-08-0{i},,c,e,conflictual,A1,conflict in e {i},wire," for i in range(2, 6)]
)
C3, D4 = 0.75 * 0.75, 0.5 * 0.5
BASE = {"d": (8.0, 2.0 + D4), "e": (1.0, 4.0)}
SETTINGS = SamplerSettings(seed=5)


def exact_log_ml(counts: dict[str, tuple[float, float]]) -> dict[str, float]:
    out = {}
    for h, mu in (("up", 1.0), ("down", -1.0)):
        tp, sp = pymc_prior("Normal", mu=mu, sigma=0.5), pymc_prior("HalfNormal", sigma=0.3)
        out[h] = log_ml_group(tp, sp, [counts["d"], counts["e"]])
    return out


def changed(d=(0.0, 0.0), e=(0.0, 0.0)) -> dict[str, tuple[float, float]]:
    return {
        "d": (BASE["d"][0] + d[0], BASE["d"][1] + d[1]),
        "e": (BASE["e"][0] + e[0], BASE["e"][1] + e[1]),
    }


# Exact counts after removing / reversing each counted item.
SCENARIOS = {
    "e1": (changed(d=(-1 + C3, 0)), changed(d=(-1, 1))),  # removed: r1 (C3) counts instead
    "e2": (changed(d=(-1, 0)), changed(d=(-1, 1))),
    "e9": (changed(d=(0, -1)), changed(d=(1, -1))),
    "low1": (changed(d=(0, -D4)), changed(d=(D4, -D4))),
    "f1": (changed(e=(-1, 0)), changed(e=(-1, 1))),
    "f2": (changed(e=(0, -1)), changed(e=(1, -1))),
}
# Counts without the item itself (for its exact leave-one-out predictive density).
LEFT_OUT = {
    "e2": changed(d=(-1, 0)),
    "e9": changed(d=(0, -1)),
    "low1": changed(d=(0, -D4)),
    "f1": changed(e=(-1, 0)),
    "f2": changed(e=(0, -1)),
}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """The static study fitted once (slow: only tests marked slow use it)."""
    d = tmp_path_factory.mktemp("evidence")
    write_study(d, STUDY, "s.toml")
    (d / "events.csv").write_text(HEADER + "\n".join(ROWS) + "\n")
    runs = d / "runs"
    update = run_update(d / "s.toml", SETTINGS, runs_root=runs)
    assert update.converged
    result = run_evidence(d / "s.toml", runs_root=runs, reliability_below=0.3)
    return d, runs, update, result.to_dict()


@pytest.fixture(scope="module")
def exact():
    base = exact_log_ml(BASE)
    return base, {k: (exact_log_ml(rm), exact_log_ml(rv)) for k, (rm, rv) in SCENARIOS.items()}


def by_id(result: dict) -> dict[str, dict]:
    return {x["id"]: x for x in result["observations"]}


# --- pure functions -------------------------------------------------------------------------------


def test_diagnosticity_of_a_hand_made_vector():
    out = diagnosticity(np.array([-0.2, -1.7, -0.9]), ["a", "b", "c"])
    assert out["diagnosticity"] == pytest.approx(1.5)
    assert (out["favours"], out["disfavours"]) == ("a", "b")
    assert out["log_predictive_ratio"] == pytest.approx({"a/b": 1.5, "a/c": 0.7, "b/c": -0.8})
    assert diagnosticity(np.zeros(2), ["a", "b"])["favours"] is None


def test_importance_sampling_change_is_exact_for_a_conjugate_toy():
    """Draws eta ~ N(m, s^2) stand in for a posterior; removing one cooperative term changes
    log p(y) by log E[1 / sigmoid(eta)] = log(1 + exp(-m + s^2 / 2)) exactly."""
    rng = np.random.default_rng(0)
    m, s = 0.8, 0.3
    eta = rng.normal(m, s, size=(40000, 1, 1, 1))
    ch = change_of_log_ml(eta, {(0, 0, 0, True, 1.0): 1}, {}, r_eff=1.0)
    # E_post[1 / sigmoid(eta)] = 1 + E[exp(-eta)] = 1 + exp(-m + s^2 / 2)
    assert ch.delta == pytest.approx(np.log(1 + np.exp(-m + s**2 / 2)), abs=0.01)
    assert ch.pareto_k < 0.5
    # adding the term back: E[sigmoid(eta)] under the same draws, by plain Monte Carlo
    add = change_of_log_ml(eta, {}, {(0, 0, 0, True, 1.0): 1}, r_eff=1.0)
    expected = np.log(np.mean(1 / (1 + np.exp(-eta))))
    assert add.delta == pytest.approx(expected, abs=1e-12)


# --- the golden run: no sampling ------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """Evidence without refits (PSIS only, no sampling) on a copy of the golden run, written into it."""
    study, runs, run = copy_golden(tmp_path_factory.mktemp("golden"))
    return study, runs, run, run_evidence(study, runs_root=runs, refit=False, reliability_below=0.5)


def test_evidence_on_the_golden_run_keeps_its_numbers(golden):
    """Figures pinned on the golden run (PSIS only, so exact for the stored draws; first computed
    before the redesign, pinned again whenever the golden run is re-written: tests/test_golden_run.py)."""
    *_, result = golden
    assert isinstance(result, EvidenceResult)
    assert (result.leading, result.critical, result.n_observations, result.n_counted) == ("shift", (), 48, 48)
    assert result.posterior_probability["shift"] == pytest.approx(0.7573384785296079, rel=1e-12)
    assert result.pareto_k_threshold == pytest.approx(0.7, rel=1e-12)
    top = result.observations[:3]
    assert [x.id for x in top] == ["G044", "G047", "G034"]
    assert [x.diagnosticity for x in top] == pytest.approx(
        [0.034499591375473315, 0.03309225447462261, 0.030103652104775946], rel=1e-9
    )
    assert top[0].if_removed.posterior_probability["shift"] == pytest.approx(0.7509420971948753, rel=1e-9)
    assert top[0].favours == "shift" and top[0].rank == 1
    assert top[0].if_reversed.method == {"steady": "psis", "shift": "psis"}
    assert result.corroboration.events == () and result.quality.n_dropped >= 0


def test_the_evidence_record_keeps_the_documented_json_keys(golden):
    *_, result = golden
    out = result.to_dict()
    assert list(out) == [
        "study", "run_dir", "hypotheses", "prior_probability", "posterior_probability", "leading",
        "n_observations", "n_counted", "shift_threshold", "pareto_k_threshold", "pareto_k_threshold_default",
        "n_refits", "n_unreliable", "converged", "critical", "observations", "corroboration", "quality",
        "warnings", "timings", "written",
    ]  # fmt: skip
    scenario = [
        "posterior_probability", "posterior_probability_se", "log_marginal_likelihood_change", "leading",
        "max_shift", "method", "pareto_k", "converged",
    ]  # fmt: skip
    x = out["observations"][0]
    assert list(x) == [
        "id", "event_date", "report_date", "counterpart", "domain", "outcome", "reliability", "weight",
        "description", "counted", "event", "corroborates", "elpd_loo", "pareto_k", "diagnosticity", "favours",
        "disfavours", "log_predictive_ratio", "if_removed", "if_reversed", "changes_leading", "critical", "rank",
    ]  # fmt: skip
    assert list(x["if_removed"]) == scenario and isinstance(x["changes_leading"], list)
    assert list(out["quality"]) == ["reliability_below", "n_dropped", "dropped", *scenario, "changes_leading"]
    assert list(out["corroboration"]) == ["n_events", "n_reports_not_counted", "rule", "events"]
    assert isinstance(out["hypotheses"], list) and isinstance(out["critical"], list)
    json.dumps(out, allow_nan=False)


def test_evidence_is_written_into_the_run_it_read(golden):
    _, _, run, result = golden
    assert result.written == str(run / EVIDENCE) and result.run_dir == str(run)
    stored = json.loads((run / EVIDENCE).read_text())
    assert "written" not in stored and stored["observations"] == result.to_dict()["observations"]
    assert not [p.name for p in run.iterdir() if ".tmp-" in p.name]


def test_the_evidence_text_names_the_items_and_where_it_was_written(golden):
    _, _, run, result = golden
    text = render_evidence(result, top=3)
    assert f"Study 'golden': 48 observations (48 counted), run {run.name}" in text
    assert "   1  G044" in text and "   4  " not in text
    assert "Evidence quality:" in text and f"Written to {run / EVIDENCE}" in text


def test_an_edited_comment_or_label_keeps_the_run_and_the_csv_is_read_once(golden, tmp_path, monkeypatch):
    """The one staleness rule: what the model uses decides; the run named by --run is read the same way."""
    _, _, run, result = golden
    shutil.copytree(GOLDEN / "inputs", tmp_path / "inputs")
    study = tmp_path / "inputs" / "golden.toml"
    text = study.read_text()
    study.write_text("# a note added after the run\n" + text.replace('"label" = "Steady"', '"label" = "Steady state"'))
    calls = []
    real = evidence_module.load_observations
    monkeypatch.setattr(evidence_module, "load_observations", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = run_evidence(study, run_dir=run, refit=False, reliability_below=0.5, write=False)
    assert len(calls) == 1 and again.written is None
    assert again.to_dict()["observations"] == result.to_dict()["observations"]


def test_changed_observations_or_model_refuse_the_run_and_say_which(tmp_path):
    study, runs, _ = copy_golden(tmp_path)
    events = study.parent / "events.csv"
    original = events.read_text()
    events.write_text("\n".join(original.splitlines()[:-1]) + "\n")
    with pytest.raises(RunStoreError, match="the observations have changed.*forecast update"):
        run_evidence(study, runs_root=runs, refit=False, write=False)
    events.write_text(original)
    study.write_text(study.read_text().replace('"mu" = -1.0, "sigma" = 0.75', '"mu" = -1.5, "sigma" = 0.75'))
    cli = CliRunner().invoke(main, ["evidence", str(study), "--runs-dir", str(runs), "--no-refit", "-q"])
    assert (
        cli.exit_code == 2 and "the study's model" in cli.stderr and "does not match the current inputs" in cli.stderr
    )


def test_damaged_run_files_exit_2_naming_the_file(tmp_path):
    study, runs, run = copy_golden(tmp_path)
    (run / "loo_pointwise.csv").write_bytes(b"id,elpd\xff\xfe\n\x00")
    cli = CliRunner().invoke(main, ["evidence", str(study), "--runs-dir", str(runs), "--no-refit", "-q"])
    assert cli.exit_code == 2 and "loo_pointwise.csv: unreadable" in cli.stderr
    (run / "loo_pointwise.csv").unlink()
    nc = run / "posterior" / "shift.nc"
    nc.write_bytes(nc.read_bytes()[:200])
    cli = CliRunner().invoke(main, ["evidence", str(study), "--runs-dir", str(runs), "--no-refit", "-q"])
    assert cli.exit_code == 2 and "shift.nc" in cli.stderr and "damaged or truncated" in cli.stderr


# --- against exact answers ------------------------------------------------------------------------


@pytest.mark.slow
def test_diagnosticity_matches_exact_leave_one_out_densities(fitted, exact):
    _, _, _, result = fitted
    base, _ = exact
    items = by_id(result)
    for ident, counts in LEFT_OUT.items():
        left_out = exact_log_ml(counts)
        elpd = {h: base[h] - left_out[h] for h in ("up", "down")}
        got = items[ident]
        for h in ("up", "down"):
            assert got["elpd_loo"][h] == pytest.approx(elpd[h], abs=0.03), (ident, h)
        assert got["log_predictive_ratio"]["up/down"] == pytest.approx(elpd["up"] - elpd["down"], abs=0.04)
        assert got["favours"] == ("up" if elpd["up"] > elpd["down"] else "down")


@pytest.mark.slow
def test_diagnosticity_ranking_reads_as_a_hand_analysis(fitted):
    _, _, _, result = fitted
    items = by_id(result)
    ranked = [x["id"] for x in result["observations"]]
    # identical events are equally diagnostic; a full-weight conflict is more diagnostic than a rumour
    assert items["e2"]["diagnosticity"] == items["e8"]["diagnosticity"]
    assert items["e9"]["diagnosticity"] > items["low1"]["diagnosticity"] > 0
    assert items["e9"]["favours"] == items["f2"]["favours"] == "down"
    assert items["e2"]["favours"] == "up"
    assert ranked.index("e9") < ranked.index("low1")
    assert [x["rank"] for x in result["observations"]] == list(range(1, len(ranked) + 1))
    # the corroborating report is not counted, carries no diagnosticity and says whose event it is
    assert items["r1"]["counted"] is False and items["r1"]["corroborates"] == "e1"
    assert items["r1"]["diagnosticity"] == 0 and ranked[-1] == "r1"


@pytest.mark.slow
def test_removal_and_reversal_match_exact_marginal_likelihoods(fitted, exact):
    _, _, update, result = fitted
    base, scenarios = exact
    items = by_id(result)
    se = {h.id: h.log_marginal_likelihood_se for h in update.hypotheses}
    for ident, (rm, rv) in scenarios.items():
        for key, truth in (("if_removed", rm), ("if_reversed", rv)):
            got = items[ident][key]
            for h in ("up", "down"):
                assert got["method"][h] == "psis"
                assert got["log_marginal_likelihood_change"][h] == pytest.approx(truth[h] - base[h], abs=0.04), (
                    ident,
                    key,
                    h,
                )
            p = posterior_probabilities([truth["up"], truth["down"]], [0.5, 0.5])
            tol = 4 * np.hypot(se["up"], se["down"]) * p[0] * p[1] + 0.015
            assert got["posterior_probability"]["up"] == pytest.approx(p[0], abs=tol), (ident, key)


@pytest.mark.slow
def test_a_report_that_is_not_counted_changes_nothing(fitted):
    _, _, _, result = fitted
    r1 = by_id(result)["r1"]
    for key in ("if_removed", "if_reversed"):
        assert r1[key]["posterior_probability"] == pytest.approx(result["posterior_probability"], abs=1e-12)
        assert set(r1[key]["method"].values()) == {"unchanged"}
    corr = result["corroboration"]
    assert corr["n_reports_not_counted"] == 1
    assert corr["events"] == [{"event": "e1", "reports": ["e1", "r1"], "counted": "e1"}]


@pytest.mark.slow
def test_evidence_quality_drops_low_reliability_observations(fitted, exact):
    _, _, _, result = fitted
    base, scenarios = exact
    q = result["quality"]
    assert q["dropped"] == ["low1"] and q["n_dropped"] == 1 and q["reliability_below"] == 0.3
    truth = scenarios["low1"][0]
    for h in ("up", "down"):
        assert q["log_marginal_likelihood_change"][h] == pytest.approx(truth[h] - base[h], abs=0.04)


@pytest.mark.slow
def test_critical_items_are_those_that_move_the_conclusion(fitted):
    _, _, _, result = fitted
    items = by_id(result)
    for ident, x in items.items():
        moved = max(x["if_removed"]["max_shift"], x["if_reversed"]["max_shift"])
        flips = x["if_removed"]["leading"] != result["leading"] or x["if_reversed"]["leading"] != result["leading"]
        assert (ident in result["critical"]) == (moved >= result["shift_threshold"] or flips)
    assert "r1" not in result["critical"]


@pytest.mark.slow
def test_evidence_is_written_into_the_run(fitted):
    _, runs, update, result = fitted
    stored = json.loads((Path(update.run_dir) / EVIDENCE).read_text())
    assert stored["critical"] == result["critical"]
    assert {x["id"] for x in stored["observations"]} == {r.split(",")[0] for r in ROWS}
    # report and event dates are kept apart
    e9 = by_id(stored)["e9"]
    assert (e9["event_date"], e9["report_date"]) == ("2020-05-01", "2020-05-03")


@pytest.mark.slow
def test_the_runs_stored_pointwise_loo_matches_exact(fitted, exact):
    _, _, update, _ = fitted
    base, _ = exact
    stored = pd.read_csv(Path(update.run_dir) / "loo_pointwise.csv").set_index("id")
    left_out = exact_log_ml(LEFT_OUT["e9"])
    for h in ("up", "down"):
        assert stored.loc["e9", f"elpd_loo__{h}"] == pytest.approx(base[h] - left_out[h], abs=0.03)


# --- refits ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def refit_model(fitted):
    d, runs, update, _ = fitted
    study = load_study(d / "s.toml")
    ctx = load_run(study, StoredRun.open(Path(update.run_dir)))
    return ctx, StudyModel(study, ctx.cells)


@pytest.mark.slow
def test_leave_one_out_removal_matches_an_actual_refit(fitted, refit_model, exact):
    """e9 (a full-weight conflictual event) removed: PSIS from the posterior vs a refit without it."""
    _, _, update, result = fitted
    ctx, model = refit_model
    base, scenarios = exact
    psis = by_id(result)["e9"]["if_removed"]["log_marginal_likelihood_change"]
    table = ctx.table[ctx.table["id"] != "e9"]
    for j, h in enumerate(ctx.hypotheses):
        log_ml, se, converged = refit_log_ml(model, ctx, j, table)
        assert converged
        refit_change = log_ml - ctx.log_ml[j]
        band = 4 * np.hypot(se, ctx.log_ml_se[j]) + 0.01
        assert abs(refit_change - psis[h]) < band, (h, refit_change, psis[h], band)
        assert log_ml == pytest.approx(scenarios["e9"][0][h], abs=4 * se + 0.01)


@pytest.mark.slow
def test_unreliable_estimates_fall_back_to_refits(fitted, refit_model):
    d, runs, _, result = fitted
    _, model = refit_model
    forced = run_evidence(d / "s.toml", runs_root=runs, k_threshold=-np.inf, max_refits=2, write=False, model=model)
    out = forced.to_dict()
    assert out["n_refits"] == 2
    methods = [
        (x["id"], key, h)
        for x in out["observations"]
        for key in ("if_removed", "if_reversed")
        for h, m in x[key]["method"].items()
        if m == "refit"
    ]
    assert len(methods) == 2
    # every other changed estimate is now flagged, not silently trusted
    assert out["n_unreliable"] > 0
    items = by_id(result)
    for ident, key, h in methods:
        refitted = by_id(out)[ident][key]["log_marginal_likelihood_change"][h]
        assert refitted == pytest.approx(items[ident][key]["log_marginal_likelihood_change"][h], abs=0.08)


# --- command line ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_evidence_json(fitted):
    d, runs, _, _ = fitted
    result = CliRunner().invoke(
        main, ["evidence", str(d / "s.toml"), "--runs-dir", str(runs), "--json", "-q", "--no-refit"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for key in (
        "study",
        "run_dir",
        "hypotheses",
        "posterior_probability",
        "leading",
        "critical",
        "observations",
        "corroboration",
        "quality",
        "n_refits",
        "n_unreliable",
        "converged",
        "written",
    ):
        assert key in out
    text = CliRunner().invoke(main, ["evidence", str(d / "s.toml"), "--runs-dir", str(runs), "-q", "--no-refit"])
    assert text.exit_code == 0 and "Most diagnostic observations" in text.stdout and "e1: reports e1, r1" in text.stdout


@pytest.mark.slow
def test_cli_evidence_bad_input_exits_2(fitted, tmp_path):
    d, runs, _, _ = fitted
    bad = CliRunner().invoke(main, ["evidence", str(d / "s.toml"), "--runs-dir", str(runs), "--shift", "3"])
    assert bad.exit_code == 2 and "--shift" in bad.stderr
    none = CliRunner().invoke(main, ["evidence", str(d / "s.toml"), "--runs-dir", str(tmp_path / "none")])
    assert none.exit_code == 2 and "forecast update" in none.stderr
    # observations edited after the run: the run no longer describes them
    shutil.copy(d / "s.toml", tmp_path / "s.toml")
    (tmp_path / "events.csv").write_text(HEADER + "\n".join(ROWS[:-1]) + "\n")
    stale = CliRunner().invoke(main, ["evidence", str(tmp_path / "s.toml"), "--runs-dir", str(runs)])
    assert stale.exit_code == 2 and "the observations have changed" in stale.stderr
