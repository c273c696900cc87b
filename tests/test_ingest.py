"""`forecast ingest` on a folder of local files (issue 17, item 5): every new dump once, never half,
never two at a time, and an update when a quarter has closed. Nothing samples: the update is
replaced by a stand-in where it would run."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
import types

import pytest
from click.testing import CliRunner
from filelock import FileLock
from helpers import event, write_mini
from test_import_feeds import MAPPING, TODAY, row, write

from forecast.cli import main
from forecast.workflows import ingest as ingest_mod
from forecast.workflows.import_events import run_import
from forecast.workflows.ingest import IngestBusy, dump_files, run_ingest, update_due


@pytest.fixture
def project(tmp_path):
    study_path, csv_path = write_mini(tmp_path, [event(1, event_date="2020-06-01")])
    (tmp_path / "cameo_mapping.toml").write_text(MAPPING)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write(inbox / "20200301.export.csv", [row(1), row(2, SQLDATE="20200401")])
    write(inbox / "20200501.export.csv.gz", [row(3, SQLDATE="20200501")], opener=gzip.open)
    (inbox / "notes.md").write_text("not a dump")
    (inbox / ".partial.csv").write_text("hidden")
    return study_path, csv_path, inbox, tmp_path / "runs"


def ingest(project, **kw):
    study_path, _, inbox, runs = project
    kw.setdefault("update", False)
    return run_ingest(study_path, inbox, runs_root=runs, today=TODAY, **kw)


def test_the_folder_is_imported_once_whatever_the_files_are_named(project):
    study_path, csv_path, inbox, runs = project
    assert [p.name for p in dump_files(inbox)] == ["20200301.export.csv", "20200501.export.csv.gz"]
    first = ingest(project)
    assert [(f.file, f.status, f.n_imported) for f in first.files] == [
        ("20200301.export.csv", "imported", 2),
        ("20200501.export.csv.gz", "imported", 1),
    ]
    after = csv_path.read_text()
    assert after.count("GDELT-") == 3
    ledger = json.loads((runs / "mini" / "imports" / "ingested.json").read_text())
    assert {e["state"] for e in ledger["files"].values()} == {"imported"} and len(ledger["files"]) == 2
    # the same folder again, and a copy of a dump under another name: nothing is imported twice
    shutil.copy(inbox / "20200301.export.csv", inbox / "copy-of-march.csv")
    again = ingest(project)
    assert {f.status for f in again.files} == {"already_imported"} and len(again.files) == 3
    assert csv_path.read_text() == after and again.exit_code == 0


def test_a_truncated_file_is_left_for_the_next_run_and_a_damaged_one_fails_alone(project):
    study_path, csv_path, inbox, runs = project
    partial = inbox / "20200601.export.csv"
    write(partial, [row(4, SQLDATE="20200610"), row(5, SQLDATE="20200620")])
    text = partial.read_text()
    partial.write_text(text[: len(text) - 20])  # still being downloaded: the last line is cut
    data = gzip.compress(b"GLOBALEVENTID,SQLDATE\n" * 2000)
    (inbox / "20200701.export.csv.gz").write_bytes(data[: len(data) // 2])
    result = ingest(project)
    status = {f.file: f.status for f in result.files}
    assert status == {
        "20200301.export.csv": "imported",
        "20200501.export.csv.gz": "imported",
        "20200601.export.csv": "incomplete",
        "20200701.export.csv.gz": "failed",
    }
    assert result.exit_code == 4 and "damaged or cut short" in result.files[-1].detail
    ledger = json.loads((runs / "mini" / "imports" / "ingested.json").read_text())
    assert sorted(e["file"] for e in ledger["files"].values()) == ["20200301.export.csv", "20200501.export.csv.gz"]
    assert "GDELT-4" not in csv_path.read_text()
    # the download completes: the next run imports it, and only it
    partial.write_text(text)
    (inbox / "20200701.export.csv.gz").unlink()
    later = ingest(project)
    assert {f.file: f.status for f in later.files}["20200601.export.csv"] == "imported"
    assert later.exit_code == 0 and csv_path.read_text().count("GDELT-") == 5


def test_a_half_imported_file_is_finished_without_adding_rows_twice(project):
    study_path, csv_path, inbox, runs = project
    ingest(project)
    ledger_path = runs / "mini" / "imports" / "ingested.json"
    ledger = json.loads(ledger_path.read_text())
    # a file whose rows were written but whose ingest was killed before the ledger said so
    write(inbox / "20200801.export.csv", [row(6, SQLDATE="20200801")])
    run_import(inbox / "20200801.export.csv", study_path, runs_root=runs, today=TODAY)
    sha = ingest_mod.sha256_of(inbox / "20200801.export.csv")
    ledger["files"][sha] = {"file": "20200801.export.csv", "state": "started", "at": "2026-01-01T00:00:00+00:00"}
    ledger_path.write_text(json.dumps(ledger))
    before = csv_path.read_text()
    result = ingest(project)
    assert {f.file: f.status for f in result.files}["20200801.export.csv"] == "finished"
    assert csv_path.read_text() == before  # its row was already there: already_present
    assert json.loads(ledger_path.read_text())["files"][sha]["state"] == "imported"


def test_two_ingests_never_interleave(project):
    study_path, csv_path, inbox, runs = project
    ingest(project)  # creates the study's run folder
    before = csv_path.read_text()
    with FileLock(str(runs / "mini" / ".ingest.lock")):
        with pytest.raises(IngestBusy, match="another `forecast ingest`"):
            ingest(project)
        out = CliRunner().invoke(main, ["ingest", str(study_path), "--from", str(inbox), "--runs-dir", str(runs)])
        assert out.exit_code == 75
    assert csv_path.read_text() == before


def test_the_update_runs_when_a_quarter_has_closed_or_on_request(project, monkeypatch):
    calls = []

    def fake_update(study_path, settings, **kw):
        calls.append(kw["runs_root"])
        return types.SimpleNamespace(run_dir=None)

    monkeypatch.setattr("forecast.workflows.update.run_update", fake_update)
    assert update_due(None, TODAY) == (True, "the study has no run yet")
    assert update_due(dt.date(2025, 12, 31), dt.date(2026, 1, 1))[0]
    assert not update_due(dt.date(2026, 1, 1), dt.date(2026, 3, 31))[0]
    no = ingest(project, update=False)
    assert not no.updated and "--no-update" in no.update_reason and calls == []
    due = ingest(project, update=None)  # no run yet: due
    assert due.updated and due.update_reason == "the study has no run yet" and len(calls) == 1
    forced = ingest(project, update=True)
    assert forced.updated and forced.update_reason == "--update" and len(calls) == 2


def test_cli_json_and_exit_codes_for_a_scheduler(project):
    study_path, csv_path, inbox, runs = project
    runner = CliRunner()
    args = ["ingest", str(study_path), "--from", str(inbox), "--runs-dir", str(runs), "--no-update"]
    out = runner.invoke(main, [*args, "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert d["by_status"] == {"imported": 2} and d["n_imported"] == 3 and d["exit_code"] == 0 and not d["updated"]
    text = runner.invoke(main, args).stdout
    assert "2 already imported" in text and "not updated: --no-update" in text
    (inbox / "bad.csv").write_text("when,who\n2020-01-01,TST\n")
    bad = runner.invoke(main, [*args, "--json"])
    assert bad.exit_code == 4 and json.loads(bad.stdout)["by_status"]["failed"] == 1
    missing = runner.invoke(main, ["ingest", str(study_path), "--from", str(inbox / "nope"), "--runs-dir", str(runs)])
    assert missing.exit_code == 2 and "not a folder" in missing.stderr
