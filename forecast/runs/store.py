"""The run store: each `forecast update` writes one run directory, atomically.

A run is assembled in a hidden temporary directory next to its final place, every file is
fsynced, and the directory is renamed into place; only then is the study's ``LATEST`` pointer
replaced. A crash or Ctrl-C at any point leaves earlier runs and the pointer as they were.

Everything here stays under the runs root: a study name or run id that would name a folder
anywhere else is refused. A directory that cannot be written (full, read-only, no permission)
is a RunStoreError naming it (exit 2), with the partial files removed. What a killed process
left behind (a hidden partial run, an empty placeholder run folder, a ``.<name>.tmp-<pid>``
file) is swept by the next command that touches the study's run folder, once that process is
gone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
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
    "preflight",
    "study_folder",
    "sweep_leftovers",
    "write_json",
    "write_netcdf",
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
    folder = study_folder(root, study_name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe{TMP_MARK}{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise cannot_write(folder, e) from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise RunStoreError(
            f"cannot write runs to {folder}: only {free / 2**20:.0f} MB free, a run needs about "
            f"{need_bytes / 2**20:.0f} MB; free some space or choose another --runs-dir"
        )
    return folder


# Why a directory cannot be written, in a person's words (other errors: the system's own words).
WHY_NOT_WRITABLE = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "it is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "a file is larger than the file system allows",
}


def cannot_write(where: Path, error: OSError, *, what: str = "runs") -> RunStoreError:
    """The RunStoreError (exit 2) for an OSError met while writing under ``where``."""
    why = WHY_NOT_WRITABLE.get(error.errno)
    advice = "; choose another --runs-dir" if why and what == "runs" else ""
    if not why:  # e.g. a source file that vanished: name the file the system names
        why = error.strerror or str(error)[:200] or type(error).__name__
        if error.filename:
            why = f"{error.filename}: {why}"
    return RunStoreError(f"cannot write {what} to {where}: {why}{advice}")


@contextlib.contextmanager
def _writing(where: Path, *, what: str = "runs") -> Iterator[None]:
    """Turn an OSError met while writing under ``where`` into a RunStoreError naming it."""
    try:
        yield
    except OSError as e:
        raise cannot_write(where, e, what=what) from None


# --- where runs live ---------------------------------------------------------------------------

RUN_ID = re.compile(r"\d{8}T\d{6}Z(?:-\d+)?")  # RunWriter's ids: UTC time, then -2, -3... within a second
PARTIAL = re.compile(r"\.(?P<run>\d{8}T\d{6}Z(?:-\d+)?)\.partial-(?P<pid>\d+)")


def _plain_name(name: object) -> bool:
    """A single, visible path component: no separator, no parent, nothing hidden or empty."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not name.startswith(".")
        and not any(c in name for c in ("/", "\\", "\0"))
        and name == name.strip()
    )


def _child(folder: Path, name: str) -> Path | None:
    """``folder / name`` if that stays directly inside ``folder`` (checked on the resolved paths)."""
    if not _plain_name(name):
        return None
    path = folder / name
    return path if Path(os.path.abspath(path)).parent == Path(os.path.abspath(folder)) else None


def study_folder(root: Path, study_name: str) -> Path:
    """``<root>/<study name>`` (root resolved), refusing a name that would leave the runs root."""
    root = Path(root).resolve()
    folder = _child(root, study_name)
    if folder is None:
        raise RunStoreError(
            f"study name {str(study_name)[:80]!r} cannot be a folder under the runs directory {root}: "
            "use a plain name of letters, digits, '-' and '_' (no '/', '..' or leading '.')"
        )
    return folder


def pointed_run(pointer: Path) -> Path:
    """The run a study's LATEST file names, refused unless it is a run folder beside the pointer."""
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise RunStoreError(f"{pointer}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
    run = _child(pointer.parent, name)
    if run is None:
        raise RunStoreError(f"{pointer}: does not name a run folder beside it ({name[:80]!r})")
    return run


def _alive(pid: int) -> bool:
    """Whether process ``pid`` may still be running (when in doubt: yes, so nothing of it is swept)."""
    if pid <= 0 or pid == os.getpid():
        return pid == os.getpid()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # e.g. another user's process (EPERM)
    return True


def _tmp_pid(name: str) -> int | None:
    """The creator pid of a hidden temporary file ``.<name>.tmp-<pid>`` (``temporary_name``), or None."""
    if not name.startswith(".") or TMP_MARK not in name:
        return None
    pid = name.rsplit(TMP_MARK, 1)[1]
    return int(pid) if pid.isdigit() else None


def sweep_temporaries(folder: Path) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>`` files and folders in ``folder`` whose process is gone; return them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        pid = _tmp_pid(entry.name)
        if pid is None or _alive(pid):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            elif entry.is_dir(follow_symlinks=False):  # a folder assembled by atomic_write_with
                shutil.rmtree(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def sweep_leftovers(study_dir: Path) -> list[Path]:
    """Remove what killed runs of this toolkit left in a study's run folder; return what went.

    Only names RunWriter and the atomic writer create, and only once their process is gone:

    - hidden partial runs ``.<run id>.partial-<pid>`` (with the empty placeholder ``<run id>``
      they reserved);
    - empty placeholder folders ``<run id>`` that no live partial run belongs to (a writer
      creates its partial run before the placeholder and removes the placeholder first, so a
      live writer's placeholder always has one);
    - temporary files ``.<name>.tmp-<pid>`` (``.LATEST.tmp-<pid>``, probes).

    A process on another machine sharing the folder looks dead to this one: share a runs root
    between machines only if they never write it at the same time. Best effort: whatever cannot
    be listed or removed is left where it is.
    """
    removed: list[Path] = []
    study_dir = Path(study_dir)
    try:
        names = os.listdir(study_dir)
    except OSError:
        return removed
    for name in names:
        m = PARTIAL.fullmatch(name)
        if m and not _alive(int(m["pid"])):
            shutil.rmtree(study_dir / name, ignore_errors=True)
            if not (study_dir / name).exists():
                removed.append(study_dir / name)
    removed += sweep_temporaries(study_dir)
    for name in names:
        if not RUN_ID.fullmatch(name):
            continue
        placeholder = study_dir / name
        with contextlib.suppress(OSError):
            if not placeholder.is_dir() or placeholder.is_symlink() or any(placeholder.iterdir()):
                continue
            # Listed afresh: a live writer's partial run was created before its placeholder.
            owners = [PARTIAL.fullmatch(p.name) for p in study_dir.glob(f".{name}.partial-*")]
            if any(o and _alive(int(o["pid"])) for o in owners):
                continue
            placeholder.rmdir()  # fails, harmlessly, if the folder is no longer empty
            removed.append(placeholder)
    return removed


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


def _atomic_write_with(path: Path, writer: Callable[[Path], None]) -> Path:
    tmp = temporary_name(path)
    try:
        writer(tmp)
        fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    fsync(path.parent)
    return path


def _remove(path: Path) -> None:
    """Remove a temporary file or directory (a writer may assemble a whole folder), quietly."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def atomic_write_with(path: Path, writer: Callable[[Path], None]) -> Path:
    """Have ``writer`` write a temporary file beside ``path``, fsync it, rename it into place.

    The one way this toolkit writes a file: a crash or Ctrl-C at any moment leaves either the
    old file or the new one, never a mix, and no temporary file behind (it is removed on error).
    A full, read-only or forbidden directory is a RunStoreError naming it (exit 2).
    """
    path = Path(path)
    with _writing(path.parent, what=path.name):
        return _atomic_write_with(path, writer)


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def netcdf_bytes(tree) -> bytes:
    """An ``xarray.DataTree`` (or Dataset) as the bytes of a NetCDF-4 file, written in memory.

    HDF5 never touches the disk: on a full disk, h5py/h5netcdf raise on close and then crash the
    process when the half-closed file is collected (a segmentation fault, exit 139); the bytes
    are written by Python instead, whose OSError the run store maps to a message.
    """
    view = tree.to_netcdf(None, engine="h5netcdf")  # a view of xarray's BytesIO
    try:
        # A copy: a view still exported when its BytesIO is collected crashes the interpreter.
        return bytes(view)
    finally:
        view.release()


def write_netcdf(path: Path, tree) -> Path:
    """Write ``tree`` as NetCDF-4 to ``path`` atomically (see ``netcdf_bytes``)."""
    data = netcdf_bytes(tree)
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


@contextlib.contextmanager
def _interrupt_deferred() -> Iterator[Callable[[], bool]]:
    """Hold a Ctrl-C that arrives inside the block until it ends; yields "was there one?".

    Only in the main thread (where Python runs signal handlers), and only when Ctrl-C would
    raise KeyboardInterrupt (an ignored SIGINT stays ignored).
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield lambda: False
        return
    seen: list = []
    signal.signal(signal.SIGINT, lambda signum, frame: seen.append(frame))
    try:
        yield lambda: bool(seen)
    finally:
        signal.signal(signal.SIGINT, previous)
    if seen:
        previous(signal.SIGINT, seen[0])  # Python's default handler raises KeyboardInterrupt


class RunWriter:
    """Collects a run's files in a temporary directory; ``commit`` publishes them at once.

    On disk while it works: ``.<run id>.partial-<pid>`` (the files) and the empty placeholder
    ``<run id>`` that reserves the id; the pid in the partial run's name tells a later command
    (``sweep_leftovers``) whether the writer is still alive. Every OSError while writing is a
    RunStoreError naming the study's run folder (exit 2), and leaves no partial files.
    """

    def __init__(self, root: Path, study_name: str, now: dt.datetime | None = None):
        now = now or dt.datetime.now(dt.UTC)
        self.study_dir = study_folder(root, study_name)
        self.committed = False
        with _writing(self.study_dir):
            self.study_dir.mkdir(parents=True, exist_ok=True)
            sweep_leftovers(self.study_dir)
            base = now.strftime("%Y%m%dT%H%M%SZ")
            n = 1
            while True:
                run_id = base if n == 1 else f"{base}-{n}"
                n += 1
                # The partial run first, then the placeholder that reserves the id atomically
                # (mkdir), so runs that overlap (in this or another process) never share an id
                # and a live writer's placeholder always has its partial run beside it.
                tmp = self.study_dir / f".{run_id}.partial-{os.getpid()}"
                try:
                    tmp.mkdir()
                except FileExistsError:
                    continue  # another writer of this process holds this id
                try:
                    (self.study_dir / run_id).mkdir()
                    break
                except FileExistsError:
                    tmp.rmdir()
                except BaseException:
                    tmp.rmdir()
                    raise
        self.run_id = run_id
        self.final = self.study_dir / run_id
        self.tmp = tmp

    def path(self, name: str) -> Path:
        p = self.tmp / name
        if not Path(os.path.abspath(p)).is_relative_to(os.path.abspath(self.tmp)):
            raise RunStoreError(f"file name {name[:80]!r} would be written outside the run directory")
        with _writing(self.study_dir):
            p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, name: str, obj: object) -> None:
        text = dumps(obj) + "\n"  # a value JSON cannot hold fails before the file is opened
        with _writing(self.study_dir):
            self.path(name).write_text(text, encoding="utf-8")

    def write_with(self, name: str, writer: Callable[[Path], None]) -> None:
        with _writing(self.study_dir):
            writer(self.path(name))

    def write_netcdf(self, name: str, tree) -> None:
        """``tree`` as the NetCDF-4 file ``name`` (serialised in memory: see ``netcdf_bytes``)."""
        data = netcdf_bytes(tree)
        with _writing(self.study_dir):
            self.path(name).write_bytes(data)

    def copy(self, name: str, source: Path) -> None:
        with _writing(self.study_dir):
            shutil.copyfile(source, self.path(name))

    def commit(self) -> Path:
        """Publish the run, then move LATEST to it; until LATEST has moved, any failure or Ctrl-C
        takes the run back out again (earlier runs and the pointer stay as they were)."""
        with _writing(self.study_dir):
            for p in sorted(self.tmp.rglob("*"), reverse=True):
                fsync(p)
            fsync(self.tmp)
            with _interrupt_deferred() as interrupted:
                os.rename(self.tmp, self.final)  # POSIX: replaces the empty placeholder atomically
                try:
                    fsync(self.study_dir)
                    if interrupted():
                        raise KeyboardInterrupt
                    _atomic_write_with(
                        self.study_dir / LATEST, lambda tmp: tmp.write_text(self.run_id + "\n", encoding="utf-8")
                    )
                except BaseException:
                    shutil.rmtree(self.final, ignore_errors=True)
                    raise
                self.committed = True
        return self.final

    def abort(self) -> None:
        """Remove the partial run and the placeholder (the placeholder first: see sweep_leftovers)."""
        if not self.committed:
            with contextlib.suppress(OSError):
                self.final.rmdir()  # the empty placeholder
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self.tmp.exists():
            self.abort()


def latest_run(root: Path, study_name: str) -> Path:
    """The most recent complete run of a study, from its LATEST pointer."""
    folder = study_folder(root, study_name)
    sweep_leftovers(folder)
    pointer = folder / LATEST
    if not pointer.is_file():
        raise RunStoreError(f"no runs of study '{study_name}' under {root}; run `forecast update` first")
    run = pointed_run(pointer)
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
