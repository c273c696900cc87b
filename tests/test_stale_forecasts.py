"""Stale data said plainly: `forecast predict` warns when forecast quarters or questions' quarters
are already over relative to today, and says the date of the latest observation.

Without fitting: the rule on dates (``staleness``), the default study's own data and questions,
and `predict` end to end on a run of a small study written by hand (posterior draws drawn from
the priors), with today's date injected.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import DEFAULT_STUDY, base_study, event, write_events, write_study

from forecast.cli import main
from forecast.data.observations import load_observations
from forecast.model.build import DOMAIN_EFFECT, RW_STEPS, rv_name
from forecast.runs.layout import MANIFEST, POSTERIOR_DIR, SCHEMA_VERSION, STUDY_COPY, SUMMARY
from forecast.spec.questions import Question, load_questions, quarter_end
from forecast.spec.study import load_study, quarter_index
from forecast.workflows.predict import latest_observation, run_predict, staleness

Q = quarter_index
TODAY = dt.date(2026, 12, 7)


def question(qid: str, quarter: str, resolves: dt.date | None = None) -> Question:
    q = Q(quarter)
    return Question(qid, "t", "g", "d", q, "any_cooperative", None, dt.date(2026, 1, 1), resolves or quarter_end(q))


# --- the rule on dates ----------------------------------------------------------------------------


def test_quarters_that_ended_before_today_are_over_and_todays_is_under_way():
    s = staleness(TODAY, dt.date(2026, 2, 6), [Q("2026Q2") + k for k in range(4)], [])
    assert (s.quarters_over, s.quarter_under_way) == ((Q("2026Q2"), Q("2026Q3")), Q("2026Q4"))
    assert s.days_since_latest_observation == 304
    (warning,) = s.warnings()
    assert warning.startswith(
        "Stale data: forecast quarters 2026Q2 and 2026Q3 are already over and 2026Q4 is under way"
    )
    assert "the latest observation is from 2026-02-06 (10 months before today, 2026-12-07)" in warning
    assert "not as predictions" in warning and "--origin 2026Q3" in warning


def test_forecasts_of_quarters_not_yet_begun_need_no_warning():
    s = staleness(TODAY, dt.date(2026, 11, 30), [Q("2027Q1"), Q("2027Q2")], [question("q", "2027Q1")])
    assert s.warnings() == [] and s.quarters_over == () and s.quarter_under_way is None


def test_the_last_day_of_a_quarter_is_not_yet_over():
    s = staleness(dt.date(2026, 12, 31), dt.date(2026, 9, 30), [Q("2026Q4")], [question("q", "2026Q4")])
    assert s.quarters_over == () and s.quarter_under_way == Q("2026Q4") and s.warnings() == []
    s = staleness(dt.date(2027, 1, 1), dt.date(2026, 9, 30), [Q("2026Q4")], [question("q", "2026Q4")])
    assert s.quarters_over == (Q("2026Q4"),) and s.questions_resolved == ("q",)
    assert s.warnings()[0].startswith("Stale data: forecast quarter 2026Q4 is already over, but")


def test_questions_about_quarters_already_over_are_named_resolved_or_not():
    qs = [
        question("past", "2026Q2"),
        question("late", "2026Q3", resolves=dt.date(2027, 1, 15)),  # waits for late reports
        question("open", "2027Q1"),
    ]
    s = staleness(TODAY, dt.date(2026, 2, 6), [Q("2027Q1")], qs)
    assert s.questions_over == ("past", "late") and s.questions_resolved == ("past",)
    (warning,) = s.warnings()  # the forecast quarter itself is in the future
    assert warning.startswith("Stale questions: 2 questions of the study ask about quarters that are already over")
    assert "'past' (2026Q2, resolved on 2026-06-30)" in warning
    assert "'late' (2026Q3 is over; it resolves on 2027-01-15)" in warning
    assert "forecast score" in warning and "latest observation is from 2026-02-06" in warning
    one = staleness(TODAY, dt.date(2026, 2, 6), [Q("2027Q1")], qs[1:])
    assert "1 question of the study asks about a quarter that is already over" in one.warnings()[0]
    assert "forecast score" not in one.warnings()[0]  # not resolved yet: nothing to score


def test_the_default_studys_next_quarters_are_partly_over_on_2026_12_07():
    """The data end in February 2026: a default `forecast predict` forecasts 2026Q2..2027Q1."""
    study = load_study(DEFAULT_STUDY)
    obs = load_observations(study, today=TODAY)
    last = int(obs.table["quarter"].max())
    s = staleness(TODAY, latest_observation(obs), [last + k for k in range(1, 5)], load_questions(study, today=TODAY))
    assert latest_observation(obs).isoformat().startswith("2026-02")
    assert [q for q in s.to_dict()["quarters_over"]] == ["2026Q2", "2026Q3"]
    assert s.to_dict()["quarter_under_way"] == "2026Q4" and s.questions_over == ()  # the questions ask about 2027Q1
    assert "2026Q2 and 2026Q3 are already over" in s.warnings()[0]


# --- predict end to end, on a run written by hand ----------------------------------------------------


def _write_run(root, study_path, seed: int = 0) -> None:
    """A converged run of the study: its inputs, a summary and posterior draws drawn from each hypothesis's priors."""
    import xarray as xr

    study = load_study(study_path)
    obs = load_observations(study)
    run = root / study.name / "20260301T000000Z"
    (run / POSTERIOR_DIR).mkdir(parents=True)
    (run / STUDY_COPY).write_bytes(study_path.read_bytes())
    sha = hashlib.sha256(obs.path.read_bytes()).hexdigest()
    (run / MANIFEST).write_text(json.dumps({"created": "2026-03-01T00:00:00+00:00", "observations": {"sha256": sha}}))
    hypotheses = [
        {"id": h.id, "label": h.label, "posterior_probability": p}
        for h, p in zip(study.hypotheses, (0.7, 0.3), strict=True)
    ]
    (run / SUMMARY).write_text(
        json.dumps({"schema_version": SCHEMA_VERSION, "converged": True, "hypotheses": hypotheses})
    )
    rng = np.random.default_rng(seed)
    shape = (2, 200)
    n_g, n_d, n_q = len(study.groups), len(study.domains), study.time.n_quarters
    for h in study.hypotheses:
        data = {rv_name(p, g): (("chain", "draw"), h.priors[(p, g)].sample(rng, shape)) for p, g in study.slots}
        data[DOMAIN_EFFECT] = (("chain", "draw", "g", "d"), rng.standard_normal((*shape, n_g, n_d)))
        data[RW_STEPS] = (("chain", "draw", "g", "q"), rng.standard_normal((*shape, n_g, n_q - 1)))
        xr.DataTree.from_dict({"posterior": xr.Dataset(data)}).to_netcdf(
            run / POSTERIOR_DIR / f"{h.id}.nc", engine="h5netcdf"
        )
    (root / study.name / "LATEST").write_text(run.name + "\n")


@pytest.fixture
def stale_study(tmp_path):
    """The mini study (2020Q1..2021Q4) with data to 2021-02-10 and a question about 2021Q2."""
    data = base_study()
    data["questions"] = [
        {
            "id": "west_coop_q2",
            "text": "Any cooperative defence interaction with the West in 2021Q2?",
            "group": "west",
            "domain": "defence",
            "quarter": "2021Q2",
            "kind": "any_cooperative",
            "created": "2021-01-15",
        }
    ]
    study_path = write_study(tmp_path, data)
    rows = [event(i, event_date=f"2020-{1 + i % 12:02d}-10") for i in range(1, 13)]
    rows.append(event(13, event_date="2021-02-10", counterpart="russia", domain="energy"))
    write_events(tmp_path / "events.csv", rows)
    _write_run(tmp_path / "runs", study_path)
    return study_path, tmp_path / "runs"


def test_predict_says_which_forecasts_are_of_the_past_and_keeps_its_numbers(stale_study):
    study_path, runs = stale_study
    late = run_predict(study_path, runs_root=runs, write=False, today=dt.date(2021, 12, 7))
    fresh = run_predict(study_path, runs_root=runs, write=False, today=dt.date(2021, 3, 1))
    d = late.to_dict()
    assert d["latest_observation"] == "2021-02-10" and d["today"] == "2021-12-07"
    assert d["staleness"]["quarters_over"] == ["2021Q2", "2021Q3"] and d["staleness"]["quarter_under_way"] == "2021Q4"
    assert d["staleness"]["questions_over"] == ["west_coop_q2"]
    assert len(d["warnings"]) == 2 and d["warnings"][0].startswith("Stale data: forecast quarters 2021Q2 and 2021Q3")
    assert "'west_coop_q2' (2021Q2, resolved on 2021-06-30)" in d["warnings"][1]
    assert fresh.to_dict()["warnings"] == []
    # Today's date changes what is said, not the figures.
    assert d["forecasts"] == fresh.to_dict()["forecasts"]
    assert d["questions"][0]["probability"] == fresh.to_dict()["questions"][0]["probability"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_predict_json_lists_the_warnings(stale_study):
    study_path, runs = stale_study
    result = invoke("predict", study_path, "--runs-dir", runs, "--today", "2021-12-07", "--json", "--quiet")
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert [w.split(":")[0] for w in d["warnings"]] == ["Stale data", "Stale questions"]
    assert d["latest_observation"] == "2021-02-10"
    assert result.stderr == ""  # in --json the warnings are in the object only
    stored = json.loads(next(runs.glob("mini/*/forecasts.json")).read_text())
    assert stored["warnings"] == d["warnings"]


def test_predict_text_warns_on_stderr_before_the_table(stale_study):
    study_path, runs = stale_study
    result = invoke("predict", study_path, "--runs-dir", runs, "--today", "2021-12-07", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("WARNING: Stale data: forecast quarters 2021Q2 and 2021Q3 are already over")
    assert "WARNING: Stale questions:" in result.stderr
    assert "Stale" not in result.stdout  # said once, on stderr
    assert "latest observation 2021-02-10" in result.stdout
    assert result.output.index("Stale data") < result.output.index("Expected share of cooperative interactions")
    quiet = invoke("predict", study_path, "--runs-dir", runs, "--today", "2021-03-01", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_the_rendered_text_opens_with_the_warnings(stale_study):
    from forecast.reports.text.predict import render_predict

    study_path, runs = stale_study
    text = render_predict(run_predict(study_path, runs_root=runs, write=False, today=dt.date(2021, 12, 7)))
    assert text.startswith("WARNING: Stale data:")
    assert text.index("WARNING: Stale questions:") < text.index("Expected share of cooperative interactions")


def test_a_today_that_is_not_a_date_is_a_usage_error(stale_study):
    study_path, runs = stale_study
    result = invoke("predict", study_path, "--runs-dir", runs, "--today", "7 Dec")
    assert result.exit_code == 2 and "--today" in result.stderr
