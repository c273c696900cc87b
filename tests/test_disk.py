"""A full disk or a read-only runs directory: a clear message naming the directory, exit 2,
earlier runs and LATEST intact, no partial files, never a crash.

Two ways: an OSError(ENOSPC/EROFS) raised by a monkeypatched write (always run), and a real,
tiny tmpfs mounted for the test (run only as root where ``mount -t tmpfs`` works; skipped with
the reason otherwise).
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import pathlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import forecast.runs.store as store
from forecast.cli import main
from forecast.errors import RunStoreError
from forecast.runs.layout import LATEST, SUMMARY
from forecast.runs.store import RunWriter, atomic_write_text, preflight
from forecast.runs.stored import StoredRun

REPO = Path(__file__).resolve().parents[1]
GOLDEN_INPUTS = REPO / "tests" / "golden" / "inputs"
NOW = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
STUDY = "mini"


def full_disk(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def write_run(root: Path, now: dt.datetime = NOW) -> Path:
    with RunWriter(root, STUDY, now=now) as w:
        w.write_json(SUMMARY, {"schema_version": 1, "study": STUDY})
        return w.commit()


def entries(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def assert_untouched(root: Path, first: Path, pointer: bytes) -> None:
    assert entries(root / STUDY) == {first.name, LATEST}  # no partial run, no placeholder, no temporaries
    assert (root / STUDY / LATEST).read_bytes() == pointer
    assert StoredRun.latest(root, STUDY).path == first


# --- monkeypatched: an OSError raised where the write happens ----------------------------------


@pytest.mark.parametrize("step", ["write_json", "write_with", "copy", "write_netcdf"])
def test_a_full_disk_while_writing_a_run_names_the_folder_and_leaves_earlier_runs(tmp_path, monkeypatch, step):
    root = tmp_path / "runs"
    first = write_run(root)
    pointer = (root / STUDY / LATEST).read_bytes()
    source = tmp_path / "study.toml"
    source.write_text("x", encoding="utf-8")
    later = NOW + dt.timedelta(hours=1)
    with pytest.raises(RunStoreError) as info:
        with RunWriter(root, STUDY, now=later) as w:
            w.write_json("history.json", {"ok": True})
            monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
            monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)
            monkeypatch.setattr(store.shutil, "copyfile", full_disk)
            if step == "write_json":
                w.write_json(SUMMARY, {"schema_version": 1})
            elif step == "write_with":
                w.write_with("loo_pointwise.csv", lambda p: p.write_text("a,b\n"))
            elif step == "copy":
                w.copy("study.toml", source)
            else:
                import numpy as np
                import xarray as xr

                w.write_netcdf("posterior/steady.nc", xr.Dataset({"a": ("draw", np.zeros(10))}))
            w.commit()
    monkeypatch.undo()
    assert str(info.value) == f"cannot write runs to {root / STUDY}: the disk is full; choose another --runs-dir"
    assert info.value.exit_code == 2
    assert_untouched(root, first, pointer)


def test_a_full_disk_when_latest_moves_takes_the_new_run_back_out(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    first = write_run(root)
    pointer = (root / STUDY / LATEST).read_bytes()
    monkeypatch.setattr(store, "_atomic_write_with", full_disk)
    with pytest.raises(RunStoreError, match="the disk is full"):
        write_run(root, NOW + dt.timedelta(hours=1))
    monkeypatch.undo()
    assert_untouched(root, first, pointer)


def test_a_read_only_runs_folder_is_reported_before_anything_is_created(tmp_path, monkeypatch):
    root = tmp_path / "runs"

    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    with pytest.raises(RunStoreError) as info:
        RunWriter(root, STUDY, now=NOW)
    assert str(info.value) == (
        f"cannot write runs to {root / STUDY}: it is on a read-only file system; choose another --runs-dir"
    )


def test_an_atomic_write_on_a_full_disk_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    target.write_text("old", encoding="utf-8")
    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    with pytest.raises(RunStoreError) as info:
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert str(info.value) == f"cannot write report.html to {tmp_path}: the disk is full"
    assert entries(tmp_path) == {"report.html"}
    assert target.read_text(encoding="utf-8") == "old"


def test_an_unmapped_full_disk_error_at_the_cli_is_exit_2_naming_the_file(monkeypatch):
    """A write that does not go through the run store (so no RunStoreError yet) is still the
    environment's fault: exit 2 with the file named, not an internal error."""
    import forecast.workflows.validate as validate

    def boom(*_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/somewhere/out.json")

    monkeypatch.setattr(validate, "run_validate", boom)
    result = CliRunner().invoke(main, ["validate"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert result.stderr == "forecast: error: /somewhere/out.json: the disk is full\n"


# --- a real tmpfs ------------------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(size)``: a fresh tmpfs of that size under tmp_path (skips without root or mount)."""
    mounted: list[Path] = []

    def mount(size: str = "1m") -> Path:
        if os.geteuid() != 0:
            pytest.skip("a real tmpfs needs root (mount -t tmpfs); the monkeypatched tests cover the logic")
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True
        )
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount_read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (a crash there cannot take the test process with it)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=600, cwd=REPO
    )


@pytest.mark.slow
def test_posteriors_larger_than_a_real_full_disk_end_in_a_message_not_a_crash(tmpfs):
    """A real 1 MB tmpfs and a 3 MB posterior: HDF5 writing to that disk itself segfaults
    (exit 139) once the process collects the half-closed file; RunWriter.write_netcdf writes
    the bytes from memory, so the error is Python's and the run store names the folder."""
    root = tmpfs("1m")
    first = write_run(root)
    pointer = (root / STUDY / LATEST).read_bytes()
    result = run_python(
        """
        import sys
        import numpy as np, xarray as xr
        from forecast.errors import RunStoreError
        from forecast.runs.store import RunWriter

        draws = np.random.default_rng(0).random((4, 1000, 100))
        tree = xr.DataTree.from_dict({"posterior": xr.Dataset({"a": (("chain", "draw", "x"), draws)})})
        try:
            with RunWriter(sys.argv[1], "mini") as w:
                w.write_json("summary.json", {"schema_version": 1})
                w.write_netcdf("posterior/steady.nc", tree)
                w.commit()
        except RunStoreError as e:
            print(e)
            sys.exit(e.exit_code)
        """,
        str(root),
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == f"cannot write runs to {root / STUDY}: the disk is full; choose another --runs-dir\n"
    assert_untouched(root, first, pointer)


def test_preflight_on_a_real_small_disk_says_how_much_room_a_run_needs(tmpfs):
    root = tmpfs("1m")
    with pytest.raises(RunStoreError, match=r"cannot write runs to .*: only 1 MB free, a run needs about 64 MB"):
        preflight(root, STUDY)


def test_a_real_read_only_runs_folder_is_refused_and_its_runs_are_still_read(tmpfs):
    root = tmpfs("1m")
    first = write_run(root)
    pointer = (root / STUDY / LATEST).read_bytes()
    remount_read_only(root)
    with pytest.raises(RunStoreError, match="it is on a read-only file system"):
        RunWriter(root, STUDY)
    with pytest.raises(RunStoreError, match="it is on a read-only file system"):
        preflight(root, STUDY)
    assert_untouched(root, first, pointer)  # reading (and its sweep) works on a read-only disk


def test_update_into_a_real_read_only_runs_folder_exits_2_before_fitting(tmpfs, tmp_path):
    root = tmpfs("1m")
    remount_read_only(root)
    result = CliRunner().invoke(
        main, ["update", str(GOLDEN_INPUTS / "golden.toml"), "--runs-dir", str(root), "-q"], catch_exceptions=False
    )
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"forecast: error: cannot write runs to {root / 'golden'}: it is on a read-only file system; "
        "choose another --runs-dir\n"
    )


@pytest.mark.slow
def test_update_on_a_disk_that_fills_while_the_run_is_written_exits_2_and_keeps_earlier_runs(tmpfs, tmp_path):
    """A real tmpfs too small for the run (the free-space preflight switched off, as if the
    disk filled during the fits): `forecast update` exits 2 naming the folder, no crash."""
    root = tmpfs("1m")
    result = run_python(
        """
        import sys
        import forecast.workflows.update as update
        from forecast.cli import main

        update.preflight = lambda *a, **k: None
        main(["update", sys.argv[1], "--draws", "1000", "--tune", "100", "--allow-unconverged", "--runs-dir",
              sys.argv[2], "-q"])
        """,
        str(GOLDEN_INPUTS / "golden.toml"),
        str(root),
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"forecast: error: cannot write runs to {root / 'golden'}: the disk is full; choose another --runs-dir\n"
    )
    assert entries(root / "golden") == set()


def test_a_source_that_vanished_while_the_run_is_written_is_named(tmp_path):
    root = tmp_path / "runs"
    first = write_run(root)
    pointer = (root / STUDY / LATEST).read_bytes()
    gone = tmp_path / "events.csv"
    with pytest.raises(RunStoreError) as info:
        with RunWriter(root, STUDY, now=NOW + dt.timedelta(hours=1)) as w:
            w.copy("observations.csv", gone)
    assert str(info.value) == f"cannot write runs to {root / STUDY}: {gone}: No such file or directory"
    assert_untouched(root, first, pointer)
