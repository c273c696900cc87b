"""Forecast questions: the schema, what each kind of question means, and `forecast score`.

Nothing here fits a model: `predict`/`backtest` are only called on inputs that fail before
any fitting, and `score` is run on a run directory written by hand.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner
from helpers import DEFAULT_STUDY, base_study, event, problem_with, write_mini, write_study

from forecast.cli import main
from forecast.errors import StudyError
from forecast.spec.questions import Question, load_questions, quarter_end
from forecast.spec.study import load_study, quarter_index

TODAY = dt.date(2021, 1, 15)


def question(**overrides) -> dict:
    q = {
        "id": "east_energy_q2",
        "text": "Will more than half of Testland's energy interactions with the East in 2021Q2 be cooperative?",
        "group": "east",
        "domain": "energy",
        "quarter": "2021Q2",
        "kind": "share_above",
        "threshold": 0.5,
        "created": "2021-01-10",
    }
    q.update(overrides)
    return {k: v for k, v in q.items() if v is not None}


def load(tmp_path, *questions: dict, today: dt.date = TODAY):
    data = base_study()
    data["questions"] = list(questions)
    return load_questions(load_study(write_study(tmp_path, data)), today=today)


def problems(tmp_path, *questions: dict, today: dt.date = TODAY) -> StudyError:
    with pytest.raises(StudyError) as err:
        load(tmp_path, *questions, today=today)
    return err.value


# --- the schema -----------------------------------------------------------------------------


def test_a_valid_question_resolves_at_the_end_of_its_quarter(tmp_path):
    (q,) = load(tmp_path, question())
    assert q.quarter == quarter_index("2021Q2") and q.quarter_label == "2021Q2"
    assert q.resolves == dt.date(2021, 6, 30) == quarter_end(q.quarter)
    assert q.created == dt.date(2021, 1, 10) and q.threshold == 0.5


def test_a_later_resolution_date_allows_for_late_reports(tmp_path):
    (q,) = load(tmp_path, question(resolves="2021-08-15"))
    assert q.resolves == dt.date(2021, 8, 15)


def test_toml_dates_are_accepted_as_well_as_strings(tmp_path):
    (tmp_path / "mini.toml").write_text(
        write_study(tmp_path, base_study()).read_text()
        + '[[questions]]\nid = "q"\ntext = "t"\ngroup = "east"\ndomain = "energy"\nquarter = "2021Q2"\n'
        'kind = "any_conflictual"\ncreated = 2021-01-10\n'
    )
    (q,) = load_questions(load_study(tmp_path / "mini.toml"), today=TODAY)
    assert q.created == dt.date(2021, 1, 10) and q.threshold is None


def test_the_default_study_registers_two_valid_questions():
    qs = load_questions(load_study(DEFAULT_STUDY))
    assert [q.kind for q in qs] == ["share_above", "any_conflictual"]
    assert {(q.group, q.domain) for q in qs} == {("russia", "defence"), ("nato", "black_sea")}


def test_an_unknown_key_is_an_error_with_a_suggestion(tmp_path):
    err = problems(tmp_path, question(threshold=None, treshold=0.5))
    p = problem_with(err, "questions[0] ('east_energy_q2').treshold", "unknown key")
    assert "did you mean 'threshold'" in p and "'created'" in p


def test_an_unknown_group_or_domain_is_an_error_with_a_suggestion(tmp_path):
    err = problems(tmp_path, question(group="eastt", domain="enrgy"))
    assert "did you mean 'east'" in problem_with(err, "questions[0] ('east_energy_q2').group", "unknown group 'eastt'")
    assert "did you mean 'energy'" in problem_with(err, ".domain", "unknown domain 'enrgy'")
    assert "known: 'west', 'east'" in problem_with(err, ".group")


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"quarter": "2021-Q2"}, (".quarter", "'2021-Q2' is not a quarter")),
        ({"quarter": "2019Q4"}, (".quarter", "before the study's first quarter 2020Q1")),
        ({"created": "15/01/2021"}, (".created", "is not a date like")),
        ({"created": "2021-02-30"}, (".created", "is not a date like")),
        ({"resolves": "2021-13-01"}, (".resolves", "is not a date like")),
        ({"created": "2021-03-01"}, (".created", "is in the future")),
        ({"resolves": "2021-06-01"}, (".resolves", "before the end of 2021Q2")),
        ({"kind": "share_abov"}, (".kind", "did you mean 'share_above'")),
        ({"threshold": None}, (".threshold", "needs a threshold")),
        ({"threshold": 1.0}, (".threshold", "strictly between 0 and 1")),
        ({"kind": "any_conflictual"}, (".threshold", "has no threshold; remove it")),
        ({"id": "Q-1"}, (".id", "lower-case")),
        ({"text": None}, (".text", "required key is missing")),
    ],
)
def test_bad_questions_get_clear_errors(tmp_path, overrides, fragments):
    problem_with(problems(tmp_path, question(**overrides)), "questions[0]", *fragments)


@pytest.mark.parametrize("created", ["2020-12-01", "2020-09-30"])
def test_a_question_resolved_before_it_was_created_is_an_error(tmp_path, created):
    err = problems(tmp_path, question(quarter="2020Q3", created=created), today=TODAY)
    problem_with(err, "questions[0]", f"resolves on 2020-09-30, on or before it was created ({created})")


def test_every_problem_is_reported_at_once_with_its_question(tmp_path):
    err = problems(tmp_path, question(group="nowhere"), question(id="east_energy_q2", quarter="Q9"))
    problem_with(err, "questions[0]", "unknown group")
    problem_with(err, "questions[1]", "used by an earlier question")
    problem_with(err, "questions[1]", "not a quarter")
    assert "the forecast questions have problems" in str(err)


@pytest.mark.parametrize(
    ("kind", "threshold", "n", "k", "expected"),
    [
        ("share_above", 0.5, 4, 2, False),  # exactly half is not above half
        ("share_above", 0.5, 4, 3, True),
        ("share_above", 0.29, 100, 29, False),  # 0.29 * 100 is not above 0.29 * 100
        ("share_above", 0.5, 0, 0, None),  # no events: void
        ("share_below", 0.5, 4, 1, True),
        ("share_below", 0.5, 4, 2, False),
        ("share_below", 0.5, 0, 0, None),
        ("any_conflictual", None, 3, 3, False),
        ("any_conflictual", None, 3, 2, True),
        ("any_conflictual", None, 0, 0, False),
        ("any_cooperative", None, 2, 0, False),
        ("any_cooperative", None, 2, 1, True),
    ],
)
def test_what_makes_a_question_come_true(kind, threshold, n, k, expected):
    q = Question("q", "t", "east", "energy", quarter_index("2021Q2"), kind, threshold, TODAY, dt.date(2021, 6, 30))
    assert q.outcome(n, k) is expected


@pytest.mark.parametrize("qid", ["q1\n", "x" * 65, "../q", "Q1"])
def test_a_question_id_that_is_not_an_identifier_is_refused(tmp_path, qid):
    err = problems(tmp_path, question(id=qid))
    problem_with(err, "questions[0]", ".id:", "must be lower-case letters, digits and '_'")


def test_question_values_are_echoed_cut_to_about_80_characters(tmp_path):
    err = problems(tmp_path, question(id="q" * 5000, group="g" * 5000, quarter="9" * 5000, kind="k" * 5000))
    assert all(len(p) < 600 for p in err.problems), [len(p) for p in err.problems]
    problem_with(err, "(5,000 characters)")


def test_a_quarter_with_a_trailing_newline_is_refused(tmp_path):
    err = problems(tmp_path, question(quarter="2021Q2\n"))
    problem_with(err, "questions[0] ('east_energy_q2').quarter: '2021Q2\\n' is not a quarter")


# --- the command line -----------------------------------------------------------------------


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("command", ["predict", "backtest", "score"])
def test_commands_reject_bad_questions_with_exit_code_2(tmp_path, command):
    data = base_study()
    data["questions"] = [question(group="eastt", created="2020-06-01")]
    study, _ = write_mini(tmp_path, [event(1)], data)
    result = invoke(command, study, "--json", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    assert "questions[0] ('east_energy_q2').group: unknown group 'eastt' (did you mean 'east'?)" in result.stderr


@pytest.mark.parametrize("command", ["predict", "backtest", "score"])
def test_commands_without_a_run_say_to_update_first(tmp_path, command):
    study, _ = write_mini(tmp_path, [event(1), event(2, event_date="2020-05-02")])
    result = invoke(command, study, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "forecast update" in result.stderr


def test_predict_rejects_a_bad_origin_and_horizon(tmp_path):
    study, _ = write_mini(tmp_path, [event(1)])
    assert invoke("predict", study, "--origin", "2020-Q3").exit_code == 2
    assert invoke("predict", study, "--horizon", "0").exit_code == 2


def test_backtest_rejects_bad_origins(tmp_path):
    study, _ = write_mini(tmp_path, [event(1), event(2, event_date="2021-05-02")])
    for origins in ("2020Q9", "2021Q1:2020Q3", "2019Q1:2020Q2", "2020Q2:2021Q2"):
        result = invoke("backtest", study, "--origins", origins, "--runs-dir", tmp_path / "runs")
        assert result.exit_code == 2, (origins, result.output)
        assert "--origins" in result.stderr


# --- forecast score, on a run directory written by hand --------------------------------------


def _fake_run(root, questions: list[dict], issued: str, study_path) -> None:
    """A run of the mini study written by hand: its inputs (the study and the observations next
    to it, so that the run matches them), an empty summary and the stored forecasts."""
    import hashlib

    from forecast.runs.layout import FORECASTS, MANIFEST, RESULTS_SCHEMA, SCHEMA_VERSION, STUDY_COPY, SUMMARY

    run = root / "mini" / "20210101T000000Z"
    run.mkdir(parents=True)
    observations = (study_path.parent / "events.csv").read_bytes()
    (run / STUDY_COPY).write_bytes(study_path.read_bytes())
    (run / MANIFEST).write_text(
        json.dumps(
            {"schema_version": SCHEMA_VERSION, "observations": {"sha256": hashlib.sha256(observations).hexdigest()}}
        )
    )
    (run / SUMMARY).write_text(json.dumps({"schema_version": SCHEMA_VERSION, "hypotheses": []}))
    (run / FORECASTS).write_text(
        json.dumps({"schema_version": RESULTS_SCHEMA, "issued": issued, "questions": questions})
    )
    (root / "mini" / "LATEST").write_text(run.name + "\n")


def test_score_judges_resolved_questions_against_the_observations(tmp_path):
    data = base_study()
    qs = [
        question(),  # east energy 2021Q2: 2 of 3 cooperative -> yes
        question(id="west_conflict_q2", group="west", domain="defence", kind="any_conflictual", threshold=None),
        question(id="west_share_q3", group="west", quarter="2021Q3", kind="share_below", threshold=0.5),  # void
        question(id="east_q4", quarter="2021Q4"),  # still open on 2021-11-01
    ]
    data["questions"] = qs
    rows = [
        event(1, counterpart="russia", domain="energy", event_date="2021-04-02"),
        event(2, counterpart="russia", domain="energy", event_date="2021-05-02"),
        event(3, counterpart="russia", domain="energy", event_date="2021-06-02", outcome="conflictual", intensity=-2),
        event(4, counterpart="us", domain="defence", event_date="2021-05-05"),  # cooperative: no conflict
        event(5, counterpart="us", domain="defence", event_date="2021-10-05"),  # data run past 2021Q3
    ]
    study_path, _ = write_mini(tmp_path, rows, data)
    study = load_study(study_path)
    stored = [
        {**q.to_dict(), "probability": p}
        for q, p in zip(load_questions(study, today=TODAY), (0.8, 0.3, 0.6, 0.5), strict=True)
    ]
    _fake_run(tmp_path / "runs", stored, "2021-01-20T00:00:00+00:00", study_path)

    from forecast.workflows.score import run_score

    result = run_score(study_path, runs_root=tmp_path / "runs", today=dt.date(2021, 11, 1))
    by_id = {r["id"]: r for r in result.to_dict()["questions"]}
    assert by_id["east_energy_q2"]["outcome"] is True
    assert by_id["east_energy_q2"]["brier"] == pytest.approx(0.04, abs=1e-12)
    assert by_id["east_energy_q2"]["log_score"] == pytest.approx(-0.2231435513142097, abs=1e-12)
    assert by_id["west_conflict_q2"]["outcome"] is False
    assert by_id["west_conflict_q2"]["brier"] == pytest.approx(0.09, abs=1e-12)
    assert by_id["west_share_q3"]["status"].startswith("void")
    assert by_id["east_q4"]["status"] == "open"
    d = result.to_dict()
    assert d["n_scored"] == 2 and d["mean_brier"] == pytest.approx(0.065, abs=1e-12)
    scored = [r for r in d["questions"] if r["status"] == "scored"]
    assert scored[-1]["running_brier"] == pytest.approx(0.065, abs=1e-12)
    written = json.loads((tmp_path / "runs" / "mini" / "20210101T000000Z" / "scores.json").read_text())
    assert written["n_scored"] == 2

    # Through the command line: one JSON object on stdout with the same figures.
    cli = invoke("score", study_path, "--json", "--runs-dir", tmp_path / "runs")
    assert cli.exit_code == 0, cli.output
    out = json.loads(cli.stdout)
    assert {"study", "today", "data_cutoff", "n_scored", "mean_brier", "mean_log_score", "questions"} <= set(out)


def test_score_ignores_forecasts_issued_after_resolution_and_waits_for_data(tmp_path):
    data = base_study()
    data["questions"] = [question(), question(id="late_q4", quarter="2021Q4", created="2021-01-10")]
    study_path, _ = write_mini(tmp_path, [event(1, event_date="2021-04-02")], data)
    stored = [{**q.to_dict(), "probability": 0.7} for q in load_questions(load_study(study_path), today=TODAY)]
    _fake_run(tmp_path / "runs", stored, "2021-07-10T00:00:00+00:00", study_path)  # after 2021Q2 resolved
    from forecast.workflows.score import run_score

    rows = {r["id"]: r for r in run_score(study_path, runs_root=tmp_path / "runs", today=dt.date(2022, 3, 1)).questions}
    assert rows["east_energy_q2"]["status"] == "no forecast before resolution"
    assert rows["late_q4"]["status"].startswith("awaiting data")
