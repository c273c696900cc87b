"""The run store: atomic run directories, the LATEST pointer, and schema-checked summaries."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from forecast.errors import RunStoreError
from forecast.runs.store import (
    LATEST,
    SCHEMA_VERSION,
    SUMMARY,
    RunWriter,
    latest_run,
    load_summary,
    sweep_leftovers,
)
from forecast.runs.stored import StoredRun

NOW = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
STUDY = "mini"


def summary(**extra) -> dict:
    return {"schema_version": SCHEMA_VERSION, "study": STUDY, **extra}


def write_run(root, now=NOW, **extra):
    """Write and commit a small run; return its directory."""
    with RunWriter(root, STUDY, now=now) as w:
        w.write_json(SUMMARY, summary(**extra))
        return w.commit()


def entries(directory) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_committed_run_has_all_files_and_latest_points_to_it(tmp_path):
    source = tmp_path / "study.toml"
    source.write_text("name = 'mini'\n", encoding="utf-8")
    root = tmp_path / "runs"
    with RunWriter(root, STUDY, now=NOW) as w:
        w.write_json(SUMMARY, summary(log_ml=np.float64(-12.5), counts=np.arange(3), path=source))
        w.write_json("manifest.json", {"files": [SUMMARY]})
        w.write_with("posterior/steady.txt", lambda p: p.write_text("draws\n", encoding="utf-8"))
        w.copy("study.toml", source)
        final = w.commit()

    assert final == root / STUDY / "20240506T070809Z"
    assert w.run_id == "20240506T070809Z"
    files = {p.relative_to(final).as_posix() for p in final.rglob("*") if p.is_file()}
    assert files == {SUMMARY, "manifest.json", "posterior/steady.txt", "study.toml"}
    stored = json.loads((final / SUMMARY).read_text(encoding="utf-8"))
    assert stored["log_ml"] == -12.5 and stored["counts"] == [0, 1, 2] and stored["path"] == str(source)
    assert (final / "study.toml").read_text(encoding="utf-8") == "name = 'mini'\n"
    assert (root / STUDY / LATEST).read_text(encoding="utf-8") == "20240506T070809Z\n"
    assert latest_run(root, STUDY) == final
    assert load_summary(final)["study"] == STUDY
    assert entries(root / STUDY) == {"20240506T070809Z", LATEST}  # no temporary leftovers


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_exception_before_commit_leaves_no_partial_run_and_latest_untouched(tmp_path, exc):
    root = tmp_path / "runs"
    first = write_run(root)
    pointer = root / STUDY / LATEST
    before = pointer.read_bytes()

    with pytest.raises(exc):
        with RunWriter(root, STUDY, now=NOW + dt.timedelta(hours=1)) as w:
            w.write_json(SUMMARY, summary())
            w.write_with("posterior/steady.txt", lambda p: p.write_text("x", encoding="utf-8"))
            assert w.tmp.is_dir()
            raise exc()

    assert not w.tmp.exists()
    assert not w.final.exists()
    assert entries(root / STUDY) == {first.name, LATEST}
    assert pointer.read_bytes() == before
    assert latest_run(root, STUDY) == first


def test_leaving_the_block_without_commit_discards_the_run(tmp_path):
    root = tmp_path / "runs"
    with RunWriter(root, STUDY, now=NOW) as w:
        w.write_json(SUMMARY, summary())
    assert entries(root / STUDY) == set()
    with pytest.raises(RunStoreError):
        latest_run(root, STUDY)


def test_unserialisable_summary_aborts_the_run(tmp_path):
    root = tmp_path / "runs"
    with pytest.raises(TypeError, match="cannot store object in JSON"):
        with RunWriter(root, STUDY, now=NOW) as w:
            w.write_json(SUMMARY, summary(bad=object()))
            w.commit()
    assert entries(root / STUDY) == set()


def test_two_runs_in_the_same_second_get_distinct_ids(tmp_path):
    root = tmp_path / "runs"
    first = write_run(root, marker=1)
    second = write_run(root, marker=2)
    third = write_run(root, marker=3)
    assert [first.name, second.name, third.name] == ["20240506T070809Z", "20240506T070809Z-2", "20240506T070809Z-3"]
    assert [load_summary(r)["marker"] for r in (first, second, third)] == [1, 2, 3]
    assert latest_run(root, STUDY) == third


def test_overlapping_runs_in_the_same_second_get_distinct_ids(tmp_path):
    root = tmp_path / "runs"
    a = RunWriter(root, STUDY, now=NOW)
    b = RunWriter(root, STUDY, now=NOW)
    try:
        assert a.run_id != b.run_id
        for w in (a, b):
            w.write_json(SUMMARY, summary(run=w.run_id))
        assert a.commit() != b.commit()
    finally:
        a.abort()
        b.abort()


def test_runs_of_different_studies_are_kept_apart(tmp_path):
    root = tmp_path / "runs"
    mine = write_run(root)
    with RunWriter(root, "other", now=NOW) as w:
        w.write_json(SUMMARY, summary(study="other"))
        other = w.commit()
    assert latest_run(root, STUDY) == mine
    assert latest_run(root, "other") == other
    assert mine.name == other.name  # ids are per study


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0, "1", None])
def test_load_summary_rejects_another_schema_version(tmp_path, version):
    run = tmp_path / "run"
    run.mkdir()
    (run / SUMMARY).write_text(json.dumps({"schema_version": version, "study": STUDY}), encoding="utf-8")
    with pytest.raises(RunStoreError) as info:
        load_summary(run)
    msg = str(info.value)
    assert f"written with results schema {version!r}" in msg
    assert f"this forecast reads schema {SCHEMA_VERSION}" in msg
    assert "Re-run `forecast update`" in msg


def test_load_summary_without_a_schema_version_is_rejected(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / SUMMARY).write_text(json.dumps({"study": STUDY}), encoding="utf-8")
    with pytest.raises(RunStoreError, match="written with results schema None"):
        load_summary(run)


def test_load_summary_of_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(RunStoreError, match=r"not a run directory \(no summary\.json\)"):
        load_summary(tmp_path)


def test_load_summary_of_unreadable_json(tmp_path):
    (tmp_path / SUMMARY).write_text("{ not json", encoding="utf-8")
    with pytest.raises(RunStoreError, match="unreadable"):
        load_summary(tmp_path)


def test_latest_run_without_runs_says_to_run_update(tmp_path):
    with pytest.raises(RunStoreError) as info:
        latest_run(tmp_path / "runs", STUDY)
    assert f"no runs of study '{STUDY}' under {tmp_path / 'runs'}" in str(info.value)
    assert "run `forecast update` first" in str(info.value)


def test_latest_run_pointing_at_a_missing_run_is_reported(tmp_path):
    root = tmp_path / "runs"
    (root / STUDY).mkdir(parents=True)
    (root / STUDY / LATEST).write_text("20990101T000000Z\n", encoding="utf-8")
    with pytest.raises(RunStoreError, match=r"names run '20990101T000000Z', which has no summary\.json"):
        latest_run(root, STUDY)


# --- leftovers of killed runs ------------------------------------------------------------------


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid():
    """The pid of another process that is running for the whole test."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def leftovers(study_dir, pid: int, run_id: str = "20240101T000000Z") -> set[str]:
    """What a writer with ``pid`` killed mid-run leaves: its partial run (with a file), the empty
    placeholder reserving the id, and the temporary file of a LATEST it was replacing."""
    partial = study_dir / f".{run_id}.partial-{pid}"
    (partial / "posterior").mkdir(parents=True)
    (partial / "posterior" / "steady.nc").write_bytes(b"\0" * 1000)
    (study_dir / run_id).mkdir()
    (study_dir / f".{LATEST}.tmp-{pid}").write_text(run_id, encoding="utf-8")
    return {partial.name, run_id, f".{LATEST}.tmp-{pid}"}


def test_a_new_run_sweeps_what_a_killed_writer_left(tmp_path, dead_pid):
    root = tmp_path / "runs"
    first = write_run(root)
    left = leftovers(root / STUDY, dead_pid)
    assert left <= entries(root / STUDY)
    second = write_run(root, now=NOW + dt.timedelta(hours=1))
    assert entries(root / STUDY) == {first.name, second.name, LATEST}


def test_reading_the_latest_run_sweeps_what_a_killed_writer_left(tmp_path, dead_pid):
    root = tmp_path / "runs"
    first = write_run(root)
    leftovers(root / STUDY, dead_pid)
    assert StoredRun.latest(root, STUDY).path == first
    assert entries(root / STUDY) == {first.name, LATEST}


def test_the_leftovers_of_a_live_process_are_kept(tmp_path, live_pid):
    root = tmp_path / "runs"
    first = write_run(root)
    left = leftovers(root / STUDY, live_pid)
    second = write_run(root, now=NOW + dt.timedelta(hours=1))
    StoredRun.latest(root, STUDY)
    assert entries(root / STUDY) == {first.name, second.name, LATEST} | left
    assert (root / STUDY / f".20240101T000000Z.partial-{live_pid}" / "posterior" / "steady.nc").is_file()


def test_an_empty_run_folder_without_a_live_writer_is_swept(tmp_path):
    """An empty placeholder whose writer removed its partial run and was then killed (or one
    left by an earlier version) belongs to no live writer: a writer's partial run always
    exists, beside it, for as long as its placeholder is empty."""
    root = tmp_path / "runs"
    first = write_run(root)
    (root / STUDY / "20240101T000000Z-2").mkdir()
    StoredRun.latest(root, STUDY)
    assert entries(root / STUDY) == {first.name, LATEST}


def test_the_sweep_leaves_whatever_it_did_not_create(tmp_path, dead_pid):
    root = tmp_path / "runs"
    first = write_run(root)
    study_dir = root / STUDY
    mine = {
        "notes",  # an empty folder that is not named like a run
        "20240101T000000Z",  # named like a run, but not empty
        ".hidden",
        f".{LATEST}.partial-{dead_pid}",  # not a run id
        f"{LATEST}.tmp-{dead_pid}",  # not hidden
        f".{LATEST}.tmp-x{dead_pid}",  # not a pid
    }
    (study_dir / "notes").mkdir()
    (study_dir / "20240101T000000Z").mkdir()
    (study_dir / "20240101T000000Z" / "mine.txt").write_text("keep", encoding="utf-8")
    for name in mine - {"notes", "20240101T000000Z"}:
        (study_dir / name).write_text("keep", encoding="utf-8")
    assert sweep_leftovers(study_dir) == []
    write_run(root, now=NOW + dt.timedelta(hours=1))
    assert mine <= entries(study_dir) and first.name in entries(study_dir)


def test_opening_a_run_sweeps_temporary_files_of_dead_writers_inside_it(tmp_path, dead_pid, live_pid):
    root = tmp_path / "runs"
    run = write_run(root)
    (run / f".report.html.tmp-{dead_pid}").write_text("<html", encoding="utf-8")
    (run / f".report.md.tmp-{live_pid}").write_text("# partial", encoding="utf-8")
    StoredRun.open(run)
    assert entries(run) == {SUMMARY, f".report.md.tmp-{live_pid}"}


def test_a_writer_keeps_its_partial_run_beside_its_placeholder_until_commit(tmp_path):
    """The order sweep_leftovers relies on: partial run first, placeholder second, both with the
    writer's pid on record (in the partial run's name)."""
    root = tmp_path / "runs"
    with RunWriter(root, STUDY, now=NOW) as w:
        assert w.tmp.name == f".{w.run_id}.partial-{os.getpid()}"
        assert w.final.is_dir() and not any(w.final.iterdir())
        assert sweep_leftovers(root / STUDY) == []  # our own: alive
        w.write_json(SUMMARY, summary())
        w.commit()
    assert entries(root / STUDY) == {w.run_id, LATEST}


def test_switching_overdispersion_on_makes_a_run_stale(tmp_path):
    from helpers import base_study, write_study

    from forecast.runs.stored import fitting_content
    from forecast.spec.study import load_study

    plain = base_study()
    cell = base_study()
    cell["model"] = {"overdispersion": "cell"}
    a = fitting_content(load_study(write_study(tmp_path / "a", plain)))
    b = fitting_content(load_study(write_study(tmp_path / "b", cell)))
    assert a != b
