"""The command line: help text, exit codes, stdout/stderr, and no tracebacks on bad input.

Nothing here fits a model: `update` is only called on inputs that fail validation.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import DEFAULT_STUDY, base_study, event, write_mini, write_study

from forecast.cli import main
from forecast.settings import SEED_MAX

GOLDEN_RUN = Path(__file__).resolve().parent / "golden" / "run-v1"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_clean_input_error(result, *fragments: str) -> None:
    """Exit code 2, one 'forecast: error:' message on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("forecast: error: "), result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert "internal error" not in result.output
    for f in fragments:
        assert f in result.stderr, result.stderr


# --- help -----------------------------------------------------------------------------------


def test_the_group_help_has_examples(runner):
    result = invoke(runner, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout
    for name in main.commands:
        assert name in result.stdout


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_help_has_an_example(runner, command):
    result = invoke(runner, command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout
    assert f"forecast {command}" in result.stdout  # the example shows the command itself


def test_the_commands_are_update_validate_init():
    assert set(main.commands) >= {"update", "validate", "init"}


# --- validate -------------------------------------------------------------------------------


def test_validate_default_study_exits_zero(runner):
    result = invoke(runner, "validate", DEFAULT_STUDY)
    assert result.exit_code == 0, result.output
    assert "turkey_nato.toml: valid; 3 hypotheses (hedging, realignment, alignment)" in result.stdout
    assert "turkey_nato_events.csv: valid;" in result.stdout


def test_validate_without_argument_uses_the_shipped_study(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no priors/ here: falls back to the repository's default study
    result = invoke(runner, "validate", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["study"] == "turkey_nato"


def test_validate_json_reports_a_valid_study(runner):
    result = invoke(runner, "validate", DEFAULT_STUDY, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert isinstance(summary, dict)
    assert summary["valid"] is True
    assert summary["n_observations"] >= 150
    assert summary["hypotheses"] == ["hedging", "realignment", "alignment"]
    assert sum(summary["by_group"].values()) == summary["n_observations"]
    assert sum(summary["by_domain"].values()) == summary["n_observations"]
    assert 0 < summary["cooperative_share"] < 1


def test_validate_bad_study_exits_2_without_traceback(runner, tmp_path):
    data = base_study()
    data["study"]["questoin"] = data["study"].pop("question")
    path = write_study(tmp_path, data)
    result = invoke(runner, "validate", path)
    assert_clean_input_error(result, "study.questoin: unknown key (did you mean 'question'?)")


def test_validate_missing_study_file_exits_2(runner, tmp_path):
    result = invoke(runner, "validate", tmp_path / "nope.toml")
    assert_clean_input_error(result, "study file not found")


def test_validate_bad_observations_exits_2_naming_the_line(runner, tmp_path):
    study_path, _ = write_mini(tmp_path, [event(1), event(2, domain="space")])
    result = invoke(runner, "validate", study_path, "--json")
    assert_clean_input_error(result, "events.csv: line 3, column 'domain': 'space' is not a domain")


def test_validate_invalid_toml_exits_2(runner, tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[study\n", encoding="utf-8")
    result = invoke(runner, "validate", path)
    assert_clean_input_error(result, "not valid TOML")


# --- update (validation failures only: no fitting) ------------------------------------------


def test_update_with_bad_observations_exits_2_and_writes_no_run(runner, tmp_path):
    study_path, _ = write_mini(tmp_path, [event(1), event(2, counterpart="turkey")])
    runs = tmp_path / "runs"
    result = invoke(runner, "update", study_path, "--runs-dir", runs, "--quiet")
    assert_clean_input_error(result, "line 3, column 'counterpart': 'turkey' is not a counterpart")
    assert not runs.exists() or not any(runs.rglob("*"))


def test_update_with_bad_study_exits_2_and_writes_no_run(runner, tmp_path):
    data = base_study()
    data["hypotheses"][0]["prior_probability"] = 0.9
    study_path, _ = write_mini(tmp_path, [event(1)], data)
    runs = tmp_path / "runs"
    result = invoke(runner, "update", study_path, "--runs-dir", runs, "--json")
    assert_clean_input_error(result, "prior probabilities must sum to 1")
    assert not runs.exists() or not any(runs.rglob("*"))


def test_update_rejects_a_single_chain_as_usage_error(runner, tmp_path):
    result = runner.invoke(main, ["update", str(DEFAULT_STUDY), "--chains", "1", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "--chains" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("--seed", "-1"),
        ("--seed", str(SEED_MAX + 1)),
        ("--seed", "one"),
        ("--draws", "5"),
        ("--tune", "0"),
        ("--chains", "1"),
        ("--cores", "0"),
        ("--history-every", "0"),
        ("--no-such-option",),
    ],
)
def test_update_usage_errors_exit_2_before_any_work(runner, tmp_path, monkeypatch, args):
    import forecast.workflows.update as update

    def no_work(*_a, **_k):
        raise AssertionError("update started work on a command line it should have refused")

    monkeypatch.setattr(update, "run_update", no_work)
    result = runner.invoke(main, ["update", str(DEFAULT_STUDY), "--runs-dir", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Usage: ") and "Error: " in result.stderr, result.stderr
    assert args[0] in result.stderr
    assert not (tmp_path / "runs").exists()


# --- stored files that are damaged, truncated or not files ------------------------------------


@pytest.fixture
def golden_run(tmp_path):
    """A copy of the golden run directory, to damage."""
    run = tmp_path / "run"
    shutil.copytree(GOLDEN_RUN, run)
    return run


def report_of(runner, run):
    return invoke(runner, "report", run, "--format", "json", "--output", run.parent / "report.json", "-q")


@pytest.mark.parametrize("name", ["posterior/steady.nc", "summary.json", "manifest.json"])
def test_a_truncated_stored_file_exits_2_naming_it(runner, golden_run, name):
    path = golden_run / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    result = report_of(runner, golden_run)
    assert_clean_input_error(result, f"{path}: unreadable", "damaged or truncated")


def test_an_empty_posterior_file_exits_2_naming_it(runner, golden_run):
    path = golden_run / "posterior" / "shift.nc"
    path.write_bytes(b"")
    assert_clean_input_error(report_of(runner, golden_run), f"{path}: unreadable posterior file")


@pytest.mark.parametrize("name", ["posterior/steady.nc", "summary.json", "manifest.json"])
def test_a_directory_where_a_stored_file_belongs_is_reported_as_a_directory(runner, golden_run, name):
    path = golden_run / name
    path.unlink()
    path.mkdir()
    assert_clean_input_error(report_of(runner, golden_run), f"{path}: is a directory")


def test_a_directory_given_as_the_study_file_is_reported_as_a_directory(runner, tmp_path):
    result = invoke(runner, "validate", tmp_path)
    assert result.exit_code == 2
    assert f"'{tmp_path}' is a directory" in result.stderr


def test_a_file_given_as_the_run_directory_is_reported_as_a_file(runner, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x", encoding="utf-8")
    assert_clean_input_error(report_of(runner, path), f"{path}: ")
    from forecast.errors import RunStoreError
    from forecast.runs.stored import StoredRun

    for find in (StoredRun.find, StoredRun.open):
        with pytest.raises(RunStoreError, match="is a file, not a run directory"):
            find(path)


# --- init -----------------------------------------------------------------------------------


def test_init_creates_study_and_header_only_observation_file(runner, tmp_path):
    result = invoke(runner, "init", "gulf_hedging", "--dir", tmp_path)
    assert result.exit_code == 0, result.output
    study = tmp_path / "priors" / "gulf_hedging.toml"
    data = tmp_path / "data" / "gulf_hedging.csv"
    assert study.is_file() and data.is_file()
    assert f"created {study}" in result.stdout
    assert data.read_text(encoding="utf-8").count("\n") == 1  # header only
    assert data.read_text(encoding="utf-8").startswith("id,event_date,")


def test_init_json_names_the_created_files(runner, tmp_path):
    result = invoke(runner, "init", "gulf", "--dir", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created == {
        "study": str(tmp_path / "priors" / "gulf.toml"),
        "observations": str(tmp_path / "data" / "gulf.csv"),
    }


def test_init_study_file_is_a_valid_study(runner, tmp_path):
    from forecast.spec.study import load_study

    invoke(runner, "init", "gulf_hedging", "--dir", tmp_path)
    study = load_study(tmp_path / "priors" / "gulf_hedging.toml")
    assert study.name == "gulf_hedging"
    assert study.observations_path == (tmp_path / "data" / "gulf_hedging.csv").resolve()
    assert [h.id for h in study.hypotheses] == ["status_quo", "shift"]


def test_init_output_passes_validate(runner, tmp_path):
    invoke(runner, "init", "gulf_hedging", "--dir", tmp_path)
    result = invoke(runner, "validate", tmp_path / "priors" / "gulf_hedging.toml")
    assert result.exit_code == 0, result.output
    assert "0 observations" in result.stdout


def test_init_refuses_to_overwrite(runner, tmp_path):
    assert invoke(runner, "init", "gulf", "--dir", tmp_path).exit_code == 0
    study = tmp_path / "priors" / "gulf.toml"
    study.write_text("# my edits\n", encoding="utf-8")
    result = invoke(runner, "init", "gulf", "--dir", tmp_path)
    assert_clean_input_error(result, "already exist")
    assert study.read_text(encoding="utf-8") == "# my edits\n"


def test_init_refuses_when_only_the_data_file_exists(runner, tmp_path):
    data = tmp_path / "data" / "gulf.csv"
    data.parent.mkdir()
    data.write_text("keep me\n", encoding="utf-8")
    result = invoke(runner, "init", "gulf", "--dir", tmp_path)
    assert_clean_input_error(result, "gulf.csv")
    assert data.read_text(encoding="utf-8") == "keep me\n"
    assert not (tmp_path / "priors" / "gulf.toml").exists()


@pytest.mark.parametrize("name", ["Gulf", "1gulf", "gulf-hedging", "gulf hedging", "../gulf", ""])
def test_init_with_an_invalid_name_exits_2_and_creates_nothing(runner, tmp_path, name):
    result = invoke(runner, "init", name, "--dir", tmp_path)
    assert_clean_input_error(result, "must be lower-case letters, digits and '_'")
    assert list(tmp_path.iterdir()) == []


def test_init_states_the_hypotheses_priors_in_the_analysts_terms(runner, tmp_path):
    """The scaffold's priors are elicitation statements (shares and their change per year with a
    certainty), each fitted to a distribution on the model's scale that keeps the statement."""
    from forecast.spec.study import load_study

    invoke(runner, "init", "gulf_hedging", "--dir", tmp_path)
    study = load_study(tmp_path / "priors" / "gulf_hedging.toml")
    kinds = set()
    for h in study.hypotheses:
        for slot, p in h.priors.items():
            assert p.statement is not None, (h.id, slot)
            assert abs(p.statement.fitted_mass - p.statement.statement.mass) <= 0.01
            kinds.add((slot[0], p.statement.statement.kind))
    assert kinds == {
        ("tilt", "share_between"),
        ("spread", "share_sd_at_most"),
        ("trend", "share_moves_at_most"),
        ("trend", "share_change_between"),
        ("volatility", "share_sd_at_most"),
    }
    shift = {h.id: h for h in study.hypotheses}["shift"]
    assert shift.priors[("trend", "partner")].kwargs["mu"] < 0 < shift.priors[("trend", "rival")].kwargs["mu"]
    assert "falls by 1 to 10 points a year" in shift.priors[("trend", "partner")].statement.text()
