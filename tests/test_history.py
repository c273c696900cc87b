"""Support over time (forecast.workflows.history): sequential refits on one compiled model, on a tiny
static study; `forecast history` on the golden run, storing history.json in it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import base_study, event, quarterly_events, warm_and_cold_hypotheses, write_mini

from forecast.cli import main
from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.errors import RunStoreError
from forecast.fit.hypothesis import marginal_likelihood
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.runs.layout import HISTORY
from forecast.spec.study import load_study
from forecast.workflows.history import (
    History,
    HistoryPoint,
    compute_history,
    evaluation_quarters,
    load_history,
    quarter_end,
    run_history,
)

SETTINGS = SamplerSettings(draws=500, tune=300, chains=4, seed=5)


def tiny_static_study(tmp_path):
    """Two groups, two domains, 2020Q1..2020Q4, no time components; evidence known in Q1, Q2 and Q4."""
    study = base_study()
    study["time"] = {"step": "quarter", "start": "2020Q1", "end": "2020Q4", "components": []}
    study["hypotheses"] = warm_and_cold_hypotheses()
    rows = quarterly_events(((1, 6), (4, 6), (10, 8)))
    # Happened in Q2, reported in Q3: it counts from Q3 on.
    rows.append(event(len(rows) + 1, event_date="2020-06-20", report_date="2020-07-02", counterpart="russia"))
    study_path, _ = write_mini(tmp_path, rows, study)
    return study_path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tiny_static_study(tmp_path_factory.mktemp("hist"))
    study = load_study(path)
    obs = load_observations(study)
    model = StudyModel(study, cell_data(obs.table, study))
    history = compute_history(study, obs, model, SETTINGS)
    return study, obs, model, history


def test_quarter_helpers():
    assert quarter_end(2020 * 4 + 0).isoformat() == "2020-03-31"
    assert quarter_end(2020 * 4 + 3).isoformat() == "2020-12-31"
    assert quarter_end(2019 * 4 + 1).isoformat() == "2019-06-30"
    known = np.array([8080, 8081, 8083])
    assert evaluation_quarters(known, 1) == [8080, 8081, 8082, 8083]
    assert evaluation_quarters(known, 2) == [8080, 8082, 8083]  # the last quarter is always evaluated
    assert evaluation_quarters(np.array([], dtype=int), 1) == []


@pytest.mark.slow
def test_history_has_a_point_per_quarter_with_probabilities_summing_to_one(tiny):
    study, _, _, history = tiny
    assert [p.quarter for p in history.points] == ["2019Q4", "2020Q1", "2020Q2", "2020Q3", "2020Q4"]
    assert [p.source for p in history.points] == ["prior", "fit", "fit", "fit", "fit"]
    assert [p.n_observations for p in history.points] == [0, 6, 12, 13, 21]
    assert history.points[0].probabilities == {"warm": 0.5, "cold": 0.5}
    for p in history.points:
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        assert all(0 <= v <= 1 for v in p.probabilities.values())
        assert set(p.probabilities) == {h.id for h in study.hypotheses}


@pytest.mark.slow
def test_history_reuses_the_compiled_model(tiny):
    _, _, model, _ = tiny
    assert model.n_compiled == 1


@pytest.mark.slow
def test_last_point_equals_a_direct_fit_on_all_data_within_mc_error(tiny):
    """The final quarter sees every observation, so it must agree with fitting all the data at once."""
    study, obs, _, history = tiny
    direct = StudyModel(study, cell_data(obs.table, study))
    log_ml, se = [], []
    for h in study.hypotheses:
        fit = direct.fit(h, SETTINGS)
        b = marginal_likelihood(direct, h, fit, SETTINGS.seed)
        log_ml.append(b.log_ml)
        se.append(b.se)
    last = history.points[-1]
    for i, h in enumerate(study.hypotheses):
        combined = np.hypot(se[i], last.log_marginal_likelihood_se[h.id])
        assert abs(last.log_marginal_likelihood[h.id] - log_ml[i]) <= 4 * combined + 1e-9
    from forecast.stats.loo import posterior_probabilities

    p, p_se = posterior_probabilities(np.array(log_ml), np.array(se), np.array([0.5, 0.5]))
    for i, h in enumerate(study.hypotheses):
        tol = 4 * np.hypot(p_se[i], last.probabilities_se[h.id]) + 1e-6
        assert last.probabilities[h.id] == pytest.approx(p[i], abs=tol)


@pytest.mark.slow
def test_every_n_quarters_and_quarters_without_new_evidence(tiny):
    """every=2 evaluates 2020Q1, then 2020Q3 and always the last quarter; no new evidence reuses."""
    study, obs, model, _ = tiny
    # Only the Q1 events and the one reported in Q3: Q2 brings nothing new and reuses Q1's result.
    table = obs.table
    keep = (table["report_date"].dt.month <= 3) | (table["report_date"].dt.month == 7)
    sparse = type(obs)(obs.path, table[keep].reset_index(drop=True), obs.sha256)
    messages = []
    h = compute_history(study, sparse, model, SETTINGS, every=1, progress=messages.append)
    assert [p.quarter for p in h.points] == ["2019Q4", "2020Q1", "2020Q2", "2020Q3"]
    assert [p.source for p in h.points] == ["prior", "fit", "reused", "fit"]
    assert h.points[2].probabilities == h.points[1].probabilities
    assert messages and messages[0].startswith("history:")
    h2 = compute_history(study, sparse, model, SETTINGS, every=2)
    assert [p.quarter for p in h2.points] == ["2019Q4", "2020Q1", "2020Q3"]
    assert [p.new_observations for p in h2.points] == [0, 6, 1]
    assert model.n_compiled == 1


@pytest.mark.slow
def test_the_runs_own_result_is_the_last_point(tiny):
    """Given the fit on all data (the run itself), the last quarter uses it instead of refitting."""
    study, obs, model, history = tiny
    last = history.points[-1]
    final = {
        hid: (last.log_marginal_likelihood[hid], last.log_marginal_likelihood_se[hid], []) for hid in ("warm", "cold")
    }
    h = compute_history(study, obs, model, SETTINGS, every=10, final=final)
    assert [p.source for p in h.points] == ["prior", "fit", "run"]
    assert h.points[-1].probabilities == last.probabilities
    assert h.n_fitted == 1
    final["cold"] = (*final["cold"][:2], ["R-hat 1.2 > 1.01"])
    flagged = compute_history(study, obs, model, SETTINGS, every=10, final=final).points[-1]
    assert not flagged.converged and flagged.problems == {"cold": ["R-hat 1.2 > 1.01"]}


def _point(quarter: str, source: str, p: float, converged: bool = True) -> HistoryPoint:
    return HistoryPoint(
        quarter=quarter,
        as_of="2020-03-31",
        n_observations=6,
        new_observations=6,
        source=source,
        probabilities={"warm": p, "cold": 1 - p},
        probabilities_se={"warm": 0.01, "cold": 0.01},
        log_marginal_likelihood={"warm": -3.0, "cold": None},
        log_marginal_likelihood_se={"warm": 0.1, "cold": None},
        converged=converged,
        problems={} if converged else {"cold": ["R-hat 1.2 > 1.01"]},
    )


def test_history_round_trips_through_json(tmp_path):
    history = History(
        "mini",
        [
            {"id": "warm", "label": "Warm", "prior_probability": 0.5},
            {"id": "cold", "label": "Cold", "prior_probability": 0.5},
        ],
        2,
        SETTINGS.to_dict(),
        [_point("2019Q4", "prior", 0.5), _point("2020Q1", "fit", 0.7, converged=False)],
        1.5,
    )
    (tmp_path / HISTORY).write_text(json.dumps(history.to_dict()))
    back = load_history(tmp_path)
    assert isinstance(back, History)
    assert back.to_dict() == json.loads(json.dumps(history.to_dict()))
    assert not back.converged and back.n_fitted == 1 and "written" not in back.to_dict()
    assert load_history(tmp_path / "nowhere") is None
    from forecast.reports.text.history import render_history

    text = render_history(back)
    assert "2019Q4" in text and "2020Q1" in text and "FAILED: cold" in text and "0.700" in text
    (tmp_path / HISTORY).write_text('{"schema_version": 99, "points": []}')
    with pytest.raises(RunStoreError, match="forecast history"):
        load_history(tmp_path)


# --- `forecast history` on the golden run ------------------------------------------------------

GOLDEN = Path(__file__).resolve().parent / "golden"
GOLDEN_RUN = "20261207T051613Z"


def golden_runs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A runs root whose latest run of 'golden' is a copy of the reference run, and a copy of its inputs."""
    root = tmp_path / "runs"
    shutil.copytree(GOLDEN / "run-v1", root / "golden" / GOLDEN_RUN)
    (root / "golden" / "LATEST").write_text(GOLDEN_RUN + "\n", encoding="utf-8")
    inputs = shutil.copytree(GOLDEN / "inputs", tmp_path / "inputs")
    return root, inputs / "golden.toml", root / "golden" / GOLDEN_RUN


def test_history_refuses_a_run_that_no_longer_matches_the_observations(tmp_path):
    root, study, run = golden_runs(tmp_path)
    with (study.parent / "events.csv").open("a", encoding="utf-8") as f:
        f.write("G999,2021-12-20,,us,defence,cooperative,3,A1,A late event,Test wire,\n")
    with pytest.raises(RunStoreError, match="does not match the current inputs: the observations have changed"):
        run_history(study, runs_root=root)
    result = CliRunner().invoke(main, ["history", str(study), "--runs-dir", str(root), "-q"])
    assert result.exit_code == 2 and "does not match the current inputs" in result.stderr
    assert not (run / HISTORY).exists()


def test_history_options_are_checked_before_any_work(tmp_path):
    root, study, run = golden_runs(tmp_path)
    for args in (
        ["--every", "0"],
        ["--draws", "10"],
        ["--chains", "1"],
        ["--plot", str(tmp_path / "nowhere" / "a.png")],
    ):
        result = CliRunner().invoke(main, ["history", str(study), "--runs-dir", str(root), "-q", *args])
        assert result.exit_code == 2, (args, result.output)
    with pytest.raises(Exception, match="every"):
        run_history(study, runs_root=root, every=0)
    assert not (run / HISTORY).exists()


@pytest.mark.slow
def test_forecast_history_stores_support_over_time_in_the_run(tmp_path):
    root, study, run = golden_runs(tmp_path)
    plot = tmp_path / "support.png"
    result = CliRunner().invoke(
        main,
        ["history", str(study), "--runs-dir", str(root), "--every", "4", "--json", "-q", "--plot", str(plot)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    stored = json.loads((run / HISTORY).read_text(encoding="utf-8"))
    assert out["written"] == str(run / HISTORY) and "written" not in stored
    assert {k: v for k, v in out.items() if k not in ("written",)} == stored
    assert stored["every"] == 4 and stored["settings"]["draws"] == 1000  # the run's own settings
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    last = stored["points"][-1]
    assert last["source"] == "run"  # the run's own result, not a refit
    assert last["log_marginal_likelihood"] == {h["id"]: h["log_marginal_likelihood"] for h in summary["hypotheses"]}
    assert [p["source"] for p in stored["points"]][0] == "prior"
    assert isinstance(load_history(run), History)
    # What moved it: the two hypotheses leading at the end, every interval with new evidence.
    moved = stored["attribution"]
    final = last["probabilities"]
    assert moved["hypotheses"] == sorted(final, key=lambda h: -final[h])[:2]
    assert [i["end"] for i in moved["intervals"]] == [p["quarter"] for p in stored["points"][1:]]
    assert plot.read_bytes().startswith(b"\x89PNG")
    # --run without STUDY: the run's own copies of its inputs.
    again = CliRunner().invoke(main, ["history", "--run", str(run), "--every", "8", "--json", "-q"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["every"] == 8


@pytest.mark.slow
def test_what_moved_it_leaves_the_support_figures_unchanged(tiny):
    """The attribution reuses the fits' draws: the points are the same, to the last digit, without it."""
    study, obs, model, history = tiny
    plain = compute_history(study, obs, model, SETTINGS, attribution=False)
    assert plain.attribution is None and history.attribution is not None
    assert [p.to_dict() for p in plain.points] == [p.to_dict() for p in history.points]
