"""Everything that becomes a path stays where it belongs: runs under the runs root, a run's
files inside the run, and the paths reported are absolute."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from forecast.errors import RunStoreError
from forecast.runs.layout import LATEST, SUMMARY
from forecast.runs.store import RunWriter, latest_run, preflight, study_folder
from forecast.runs.stored import StoredRun

GOLDEN_RUN = Path(__file__).resolve().parent / "golden" / "run-v1"
NOW = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)

ESCAPING_NAMES = ["../../x", "..", ".", "", "/tmp/elsewhere", "a/b", "a\\b", ".hidden", "nul\0byte", " padded "]


def everything_under(path: Path) -> set[Path]:
    return set(path.rglob("*"))


@pytest.mark.parametrize("name", ESCAPING_NAMES)
def test_a_run_writer_refuses_a_study_name_that_is_not_one_folder_under_the_root(tmp_path, name):
    root = tmp_path / "deep" / "runs"
    root.mkdir(parents=True)
    before = everything_under(tmp_path)
    with pytest.raises(RunStoreError, match="cannot be a folder under the runs directory"):
        RunWriter(root, name, now=NOW)
    assert everything_under(tmp_path) == before


@pytest.mark.parametrize("name", ESCAPING_NAMES)
def test_reading_and_preflight_refuse_the_same_names(tmp_path, name):
    root = tmp_path / "runs"
    for call in (StoredRun.latest, latest_run, preflight):
        with pytest.raises(RunStoreError, match="cannot be a folder under the runs directory"):
            call(root, name)
    assert not root.exists()


def test_a_slug_is_a_folder_directly_under_the_resolved_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert study_folder(Path("runs"), "turkey_nato-2") == tmp_path / "runs" / "turkey_nato-2"


@pytest.mark.parametrize("pointer", ["../../outside", "/tmp", "..", ".hidden", "a/b", ""])
def test_a_latest_pointer_that_leaves_the_study_folder_is_refused(tmp_path, pointer):
    root = tmp_path / "runs"
    outside = tmp_path / "outside"
    shutil.copytree(GOLDEN_RUN, outside)  # a complete run the pointer must not reach
    (root / "golden").mkdir(parents=True)
    (root / "golden" / LATEST).write_text(pointer + "\n", encoding="utf-8")
    for read in (StoredRun.latest, latest_run):
        with pytest.raises(RunStoreError, match="does not name a run folder beside it"):
            read(root, "golden")


def test_run_paths_are_reported_absolute_when_the_root_is_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with RunWriter(Path("runs"), "mini", now=NOW) as w:
        w.write_json(SUMMARY, {"schema_version": 1})
        final = w.commit()
    assert final == tmp_path / "runs" / "mini" / "20240506T070809Z"
    assert final.is_absolute() and w.tmp.is_absolute()
    assert StoredRun.latest(Path("runs"), "mini").path == final
    assert StoredRun.open(Path("runs/mini/20240506T070809Z")).path == final
    assert latest_run(Path("runs"), "mini").is_absolute()


def test_a_run_file_name_cannot_leave_the_run(tmp_path):
    with RunWriter(tmp_path / "runs", "mini", now=NOW) as w:
        with pytest.raises(RunStoreError, match="outside the run directory"):
            w.write_json("../../escaped.json", {})
        with pytest.raises(RunStoreError, match="outside the run directory"):
            w.write_with("/tmp/escaped.txt", lambda p: p.write_text("x"))
    assert not (tmp_path / "escaped.json").exists()
    assert everything_under(tmp_path / "runs") == {tmp_path / "runs" / "mini"}


@pytest.mark.parametrize("hypothesis", ["../steady", "../../summary", "a/b"])
def test_a_hypothesis_id_cannot_name_a_file_outside_the_posterior_folder(tmp_path, hypothesis):
    run = tmp_path / "run"
    shutil.copytree(GOLDEN_RUN, run)
    with pytest.raises(RunStoreError, match="cannot name a file in"):
        StoredRun.open(run).posterior_path(hypothesis)
