"""What `forecast import` writes, and what it never writes: permissions kept, a dry run that
touches nothing, leftovers of a killed import swept (and nothing else), spreadsheet-safe text,
a full disk reported. Nothing fits a model."""

from __future__ import annotations

import builtins
import csv
import datetime as dt
import errno
import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import DIRECTED_COLUMNS, REPO, event, write_events, write_mini
from test_import import MAPPING, write_gdelt

from forecast.cli import main
from forecast.data.csvsafe import spreadsheet_safe
from forecast.data.observations import COLUMNS
from forecast.errors import InputError, RunStoreError
from forecast.workflows.import_events import IMPORTS_DIR, run_import

TODAY = dt.date(2026, 1, 1)
IMPORTED = ["GDELT-1001", "GDELT-1002", "GDELT-1006", "GDELT-1010", "GDELT-1011"]  # of test_import's FIXTURE
# Writing under /proc fails even for root, so this runs store is unwritable wherever the tests run.
UNWRITABLE_RUNS = Path("/proc/forecast-import-test/runs")


@pytest.fixture
def project(tmp_path):
    existing = [event(1), event(2, id="GDELT-1012", event_date="2020-01-15", counterpart="eu")]
    study_path, csv_path = write_mini(tmp_path, existing)
    (tmp_path / "cameo_mapping.toml").write_text(MAPPING)
    return study_path, csv_path, write_gdelt(tmp_path / "gdelt.csv")


def tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, size, mode and modification time."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mode, st.st_mtime_ns)
    return out


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --- permissions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_import_keeps_the_observation_files_permissions(project, mode):
    study_path, csv_path, source = project
    csv_path.chmod(mode)
    result = run_import(source, study_path, today=TODAY, write_report=False)
    assert result.written and stat.S_IMODE(csv_path.stat().st_mode) == mode
    assert not [p.name for p in csv_path.parent.iterdir() if p.name.startswith(".")]


# --- dry run -------------------------------------------------------------------------------------------


def no_writes(monkeypatch) -> list[str]:
    """Make every way of writing, creating, renaming or removing a file fail, and record each attempt.

    Running as root, a read-only (chmod) directory does not stop a write, so the writes are
    refused here instead; the runs store is a path under /proc, where even root cannot write.
    """
    attempts: list[str] = []
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def refuse(what):
        def f(*args, **kwargs):
            attempts.append(f"{what}{args[:1]}")
            raise PermissionError(errno.EACCES, f"test: no {what}")

        return f

    real_os_open, real_open = os.open, builtins.open

    def os_open(path, flags, *args, **kwargs):
        if flags & write_flags:
            return refuse("os.open")(path)
        return real_os_open(path, flags, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            return refuse("open")(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    for name in ("replace", "rename", "unlink", "remove", "mkdir", "makedirs", "rmdir", "chmod", "fchmod"):
        monkeypatch.setattr(os, name, refuse(f"os.{name}"))
    return attempts


def test_dry_run_writes_nothing_and_needs_no_write_access(project, tmp_path, monkeypatch):
    study_path, csv_path, source = project
    (tmp_path / f".events.csv.tmp-{dead_pid()}").write_text("a leftover: a dry run leaves it too")
    before = tree(tmp_path)
    attempts = no_writes(monkeypatch)
    with pytest.raises(PermissionError):  # the guard holds
        (tmp_path / "probe").write_text("x")
    attempts.clear()
    result = run_import(source, study_path, today=TODAY, dry_run=True, runs_root=UNWRITABLE_RUNS)
    monkeypatch.undo()
    assert attempts == []
    assert list(result.to_dict()["imported_ids"]) == IMPORTED
    assert not result.written and result.report is None and result.removed_leftovers == ()
    assert tree(tmp_path) == before


def test_cli_dry_run_with_an_unwritable_runs_store(project, tmp_path, monkeypatch):
    study_path, csv_path, source = project
    before = tree(tmp_path)
    attempts = no_writes(monkeypatch)
    out = CliRunner().invoke(
        main,
        ["import", str(source), str(study_path), "--dry-run", "--runs-dir", str(UNWRITABLE_RUNS), "--json"],
        catch_exceptions=False,
    )
    monkeypatch.undo()
    assert out.exit_code == 0, out.output
    assert attempts == [] and tree(tmp_path) == before
    assert json.loads(out.stdout)["imported_ids"] == IMPORTED


def test_an_unwritable_runs_store_is_refused_before_the_observations_change(project):
    study_path, csv_path, source = project
    before = csv_path.read_text()
    with pytest.raises(RunStoreError, match="cannot write runs to /proc/forecast-import-test/runs/mini"):
        run_import(source, study_path, today=TODAY, runs_root=UNWRITABLE_RUNS)
    assert csv_path.read_text() == before


def test_a_full_disk_leaves_the_observation_file_and_no_temporary_copy(project, monkeypatch):
    study_path, csv_path, source = project
    before = csv_path.read_bytes()

    def full(fd, data):  # a monkeypatched write: the disk fills on the first byte
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(InputError) as err:  # exit 2 (RunStoreError is an InputError too)
        run_import(source, study_path, today=TODAY, write_report=False)
    monkeypatch.undo()
    assert "cannot write" in str(err.value) and "events.csv" in str(err.value) and "disk is full" in str(err.value)
    assert csv_path.read_bytes() == before
    assert not [p.name for p in csv_path.parent.iterdir() if p.name.startswith(".")]


# --- leftovers -----------------------------------------------------------------------------------------


def test_leftovers_of_a_killed_import_are_removed_and_nothing_else(project, tmp_path):
    study_path, csv_path, source = project
    dead, alive = dead_pid(), subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        runs = tmp_path / "runs"
        reports = runs / "mini" / IMPORTS_DIR
        reports.mkdir(parents=True)
        swept = [
            f".events.csv.tmp-{dead}",  # the run store's atomic writer
            f".events.csv.import-{dead}",  # imports before it
        ]
        kept = [
            f".events.csv.tmp-{alive.pid}",  # an import still running
            f".other.csv.tmp-{dead}",  # another file's
            f"events.csv.tmp-{dead}",  # not hidden: not ours
            f".events.csv.tmp-{dead}.bak",
            f".events.csv.tmp-{dead}x",
            ".events.csv.tmp-",
            f".events.csv.partial-{dead}",
        ]
        for name in swept + kept:
            (tmp_path / name).write_text("x")
        (tmp_path / f".events.csv.tmp-{dead_pid()}").mkdir()  # a folder: never ours
        link_pid = dead_pid()
        (tmp_path / f".events.csv.tmp-{link_pid}").symlink_to(csv_path)  # a link: never followed or removed
        (reports / f".20200101T000000Z-gdelt.json.tmp-{dead}").write_text("{")
        (reports / "20200101T000000Z-gdelt.json").write_text("{}")
        result = run_import(source, study_path, today=TODAY, runs_root=runs)
        assert sorted(result.removed_leftovers) == sorted([*swept, f".20200101T000000Z-gdelt.json.tmp-{dead}"])
        left = {p.name for p in tmp_path.iterdir()}
        assert not set(swept) & left and set(kept) <= left
        assert (tmp_path / f".events.csv.tmp-{link_pid}").is_symlink()
        assert {p.name for p in reports.iterdir()} == {
            "20200101T000000Z-gdelt.json",
            Path(result.report).name,
            Path(result.rows_report).name,
        }
        assert result.written and csv_path.read_text().count("GDELT-1001") == 1
    finally:
        alive.kill()
        alive.wait()


KILLED_IMPORT = """
import sys, time
import forecast.runs.store as store
from forecast.workflows.import_events import run_import
import datetime as dt

real = store.fsync
def stall(path):
    if ".tmp-" in str(path):
        print("written", flush=True)
        time.sleep(60)  # killed here: the full temporary copy is on disk, not yet renamed
    real(path)
store.fsync = stall
run_import(sys.argv[1], sys.argv[2], today=dt.date(2026, 1, 1), write_report=False)
"""


def test_a_killed_import_leaves_its_copy_which_the_next_import_removes(project, tmp_path):
    study_path, csv_path, source = project
    before = csv_path.read_text()
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_IMPORT), str(source), str(study_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert child.stdout.readline().strip() == "written"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    leftover = tmp_path / f".events.csv.tmp-{child.pid}"
    assert leftover.is_file() and csv_path.read_text() == before
    assert leftover.read_text().startswith(before)  # a full copy of the observations, as issue 13 found
    time.sleep(0.01)
    result = run_import(source, study_path, today=TODAY, write_report=False)
    assert result.removed_leftovers == (leftover.name,) and not leftover.exists()
    assert result.to_dict()["imported_ids"] == IMPORTED


# --- spreadsheet formulas ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, safe",
    [
        ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("'=1", "'=1"),  # already safe: unchanged
        ("Wire =1", "Wire =1"),
        ("", ""),
    ],
)
def test_spreadsheet_safe(text, safe):
    assert spreadsheet_safe(text) == safe
    assert spreadsheet_safe(safe) == safe


def test_imported_text_cannot_run_as_a_spreadsheet_formula(project, tmp_path):
    study_path, csv_path, _ = project
    src = tmp_path / "icews.tab"
    src.write_text(
        "Event ID\tEvent Date\tSource Country\tCAMEO Code\tIntensity\tTarget Country\tPublisher\tEvent Text\n"
        '77\t2020-07-01\tTST\t057\t8\tRUS\t=HYPERLINK("http://evil.example","x")\tpipeline\n'
        "78\t2020-07-02\tTST\t138\t-3\tUSA\t@cmd\tpipeline\n"
    )
    (tmp_path / "map.toml").write_text(MAPPING.replace('reliability = "C3"', 'reliability = "C3"\nid_prefix = "=X"'))
    result = run_import(src, study_path, mapping_path=tmp_path / "map.toml", today=TODAY, write_report=False)
    assert result.to_dict()["imported_ids"] == ["'=X-77-20200701", "'=X-78-20200702"]
    rows = {r["id"]: r for r in csv.DictReader(csv_path.open())}
    a, b = rows["'=X-77-20200701"], rows["'=X-78-20200702"]
    assert a["source"] == '\'=HYPERLINK("http://evil.example","x")'
    assert b["source"] == "'@cmd" and b["intensity"] == "-3"  # a number stays a number
    for row in (a, b):
        for column in ("id", "description", "source"):
            assert not row[column].startswith(("=", "+", "-", "@", "\t", "\r")), (column, row[column])
    again = run_import(src, study_path, mapping_path=tmp_path / "map.toml", today=TODAY, write_report=False)
    assert again.to_dict()["n_imported"] == 0 and {s.reason for s in again.skipped} == {"already_present"}


# --- the initiator column ------------------------------------------------------------------------------


def test_who_acted_is_written_where_the_file_has_an_initiator_column(tmp_path):
    existing = [event(1, initiator="joint")]
    study_path, csv_path = write_mini(tmp_path, existing)
    write_events(csv_path, existing, columns=DIRECTED_COLUMNS)
    (tmp_path / "cameo_mapping.toml").write_text(MAPPING)
    result = run_import(write_gdelt(tmp_path / "gdelt.csv"), study_path, today=TODAY, write_report=False)
    assert result.written
    rows = {r["id"]: r for r in csv.DictReader(csv_path.open())}
    # CAMEO's source actor acted: Testland on Russia (1001), Russia on Testland (1002)
    assert rows["GDELT-1001"]["initiator"] == "actor" and rows["GDELT-1002"]["initiator"] == "counterpart"
    assert rows["E1"]["initiator"] == "joint"


def test_a_file_without_an_initiator_column_does_not_get_one(project):
    study_path, csv_path, source = project
    header = csv_path.read_text().splitlines()[0]
    run_import(source, study_path, today=TODAY, write_report=False)
    assert csv_path.read_text().splitlines()[0] == header and "initiator" not in header


def test_a_new_observation_file_gets_every_column(project, tmp_path):
    study_path, _, source = project
    new = tmp_path / "new.csv"
    result = run_import(source, study_path, into=new, today=TODAY, write_report=False)
    assert result.written
    assert tuple(next(csv.reader(new.open()))) == COLUMNS
