"""The run store: each `forecast update` writes one run directory, atomically.

A run is assembled in a hidden temporary directory next to its final place, every file is
fsynced, and the directory is renamed into place; only then is the study's ``LATEST`` pointer
replaced. A crash or Ctrl-C at any point leaves earlier runs and the pointer as they were.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from forecast.errors import RunStoreError
from forecast.runs.layout import LATEST, MANIFEST, POINTWISE, POSTERIOR_DIR, SCHEMA_VERSION, SUMMARY

__all__ = [
    "LATEST",
    "MANIFEST",
    "POINTWISE",
    "POSTERIOR_DIR",
    "SCHEMA_VERSION",
    "SUMMARY",
    "RunWriter",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_with",
    "default_root",
    "dumps",
    "jsonable",
    "latest_run",
    "load_summary",
    "package_versions",
    "write_json",
]

PACKAGES = (
    "forecast",
    "pymc",
    "pytensor",
    "nutpie",
    "arviz",
    "arviz-base",
    "arviz-stats",
    "numpy",
    "pandas",
    "scipy",
    "xarray",
)


# Room a run needs, checked before any fitting: a default-study run is ~25 MB (three posteriors).
MIN_FREE_BYTES = 64 * 1024 * 1024


def preflight(root: Path, study_name: str, *, need_bytes: int = MIN_FREE_BYTES) -> Path:
    """Check, before any work, that a run of ``study_name`` can be written under ``root``.

    Creates the study's run folder if needed, writes and removes a probe file, and checks free
    space; raises RunStoreError (exit 2) naming the directory otherwise. Returns the folder.
    """
    import errno

    folder = Path(root) / study_name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe{TMP_MARK}{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        why = {
            errno.EROFS: "it is on a read-only file system",
            errno.EACCES: "permission denied",
            errno.EPERM: "permission denied",
            errno.ENOSPC: "the disk is full",
        }.get(e.errno, e.strerror or str(e))
        raise RunStoreError(f"cannot write runs to {folder}: {why}; choose another --runs-dir") from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise RunStoreError(
            f"cannot write runs to {folder}: only {free / 2**20:.0f} MB free, a run needs about "
            f"{need_bytes / 2**20:.0f} MB; free some space or choose another --runs-dir"
        )
    return folder


def default_root() -> Path:
    return Path.cwd() / "reports" / "runs"


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


TMP_MARK = ".tmp-"  # hidden temporary files are ".<name>.tmp-<pid>": recognisable as leftovers


def temporary_name(path: Path) -> Path:
    """Where ``path`` is assembled before it is renamed into place (same directory, hidden)."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def atomic_write_with(path: Path, writer: Callable[[Path], None]) -> Path:
    """Have ``writer`` write a temporary file beside ``path``, fsync it, rename it into place.

    The one way this toolkit writes a file: a crash or Ctrl-C at any moment leaves either the
    old file or the new one, never a mix, and no temporary file behind (it is removed on error).
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        writer(tmp)
        fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync(path.parent)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def jsonable(obj: object) -> object:
    """``obj`` as plain JSON values: records via ``to_dict()``, NumPy scalars and arrays, paths;
    non-finite numbers become ``None`` (null), so every file and ``--json`` output is strict JSON."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str | bool | int):
        return obj
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    import numpy as np

    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, set | frozenset):
        return [jsonable(v) for v in sorted(obj)]
    raise TypeError(f"cannot store {type(obj).__name__} in JSON")


def dumps(obj: object, *, indent: int | None = 2) -> str:
    """The one JSON encoder (strict JSON: non-finite numbers as null)."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False)


def write_json(path: Path, obj: object) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically."""
    return atomic_write_text(path, dumps(obj) + "\n")


class RunWriter:
    """Collects a run's files in a temporary directory; ``commit`` publishes them at once."""

    def __init__(self, root: Path, study_name: str, now: dt.datetime | None = None):
        now = now or dt.datetime.now(dt.UTC)
        self.study_dir = Path(root) / study_name
        self.study_dir.mkdir(parents=True, exist_ok=True)
        base = now.strftime("%Y%m%dT%H%M%SZ")
        run_id, n = base, 1
        while True:
            # Reserve the id atomically with an empty placeholder directory, so runs that
            # overlap (in this or another process) never share an id; commit renames onto it.
            try:
                (self.study_dir / run_id).mkdir()
                break
            except FileExistsError:
                n += 1
                run_id = f"{base}-{n}"
        self.run_id = run_id
        self.final = self.study_dir / run_id
        self.tmp = self.study_dir / f".{run_id}.partial-{os.getpid()}"
        self.tmp.mkdir()
        self.committed = False

    def path(self, name: str) -> Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, name: str, obj: object) -> None:
        self.path(name).write_text(dumps(obj) + "\n", encoding="utf-8")

    def write_with(self, name: str, writer: Callable[[Path], None]) -> None:
        writer(self.path(name))

    def copy(self, name: str, source: Path) -> None:
        shutil.copyfile(source, self.path(name))

    def commit(self) -> Path:
        for p in sorted(self.tmp.rglob("*"), reverse=True):
            fsync(p)
        fsync(self.tmp)
        os.rename(self.tmp, self.final)  # POSIX: replaces the empty placeholder atomically
        self.committed = True
        fsync(self.study_dir)
        atomic_write_text(self.study_dir / LATEST, self.run_id + "\n")
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        if not self.committed:
            try:
                self.final.rmdir()  # the empty placeholder
            except OSError:
                pass

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self.tmp.exists():
            self.abort()


def latest_run(root: Path, study_name: str) -> Path:
    """The most recent complete run of a study, from its LATEST pointer."""
    pointer = Path(root) / study_name / LATEST
    if not pointer.is_file():
        raise RunStoreError(f"no runs of study '{study_name}' under {root}; run `forecast update` first")
    run = pointer.parent / pointer.read_text(encoding="utf-8").strip()
    if not (run / SUMMARY).is_file():
        raise RunStoreError(f"{pointer} names run '{run.name}', which has no {SUMMARY}")
    return run


def load_summary(run_dir: Path) -> dict:
    """A run's summary, checked for a schema version this toolkit can read."""
    path = Path(run_dir) / SUMMARY
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunStoreError(f"{run_dir}: not a run directory (no {SUMMARY})") from None
    except json.JSONDecodeError as e:
        raise RunStoreError(f"{path}: unreadable ({e})") from None
    version = summary.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RunStoreError(
            f"{path}: written with results schema {version!r}; this forecast reads schema {SCHEMA_VERSION}. "
            "Re-run `forecast update` to refresh it."
        )
    return summary
