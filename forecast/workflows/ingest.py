"""`forecast ingest`: import every new event dump in a folder, then update when a quarter has closed.

Made for a scheduler (cron, a systemd timer): run it as often as dumps arrive; it does the work
that is due and nothing twice.

1. **One at a time.** A lock (``<runs root>/<study>/.ingest.lock``, filelock) is taken without
   waiting: a second ingest of the same study while one runs stops at once with exit 75
   (EX_TEMPFAIL: "try again later"), so two ingests never interleave.
2. **Every new file, once.** The files of the folder (``.csv``, ``.tsv``, ``.tab``, ``.txt`` and
   their ``.gz``/``.zip``, GDELT's ``.export.CSV.zip``; hidden files and others are ignored) are
   taken in name order. A *ledger* (``<runs root>/<study>/imports/ingested.json``) records each
   imported file by the SHA-256 of its content, so a file already imported is passed over, under
   any name; a file whose last line has no line break (a download still being written, or cut
   short) and a damaged ``.gz``/``.zip`` are reported and left for the next run, not recorded.
3. **Never half-imported.** Before a file's import the ledger records it as ``started``; after,
   as ``imported``. The observation file itself is replaced atomically, so an import that was
   killed either wrote all its rows or none. A ``started`` entry found by the next ingest is
   finished: the file is imported again (its rows already in the file are ``already_present``,
   so nothing is added twice) and recorded. A file whose import fails (bad rows are skips, so
   this is a file that cannot be read) is rolled back to "not imported": the entry is removed,
   the observation file was not touched, and the failure is reported (exit 4).
4. **Update when due.** When a quarter has closed since the study's latest run (its manifest's
   ``created`` date is in an earlier quarter than today), when the study has no run yet, or with
   ``update=True``, `forecast update` runs (the workflow, with its own convergence gate: exit 3)
   and the CLI writes its report; ``update=False`` never updates.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from forecast.data.importer.limits import clip
from forecast.errors import ForecastError, InputError, RunStoreError
from forecast.runs.layout import IMPORTS_DIR, MANIFEST

# Suggested for forecast.runs.layout (the one place for run file names): INGEST_LEDGER, INGEST_LOCK.
from forecast.runs.layout import INGEST_LEDGER as LEDGER  # noqa: E402
from forecast.runs.layout import INGEST_LOCK as LOCK  # noqa: E402
from forecast.runs.store import default_root, preflight, write_json
from forecast.runs.stored import StoredRun
from forecast.settings import Progress, SamplerSettings
from forecast.spec.study import load_study
from forecast.workflows.import_events import run_import

LEDGER_SCHEMA = 1
DUMP_SUFFIXES = (".csv", ".tsv", ".tab", ".txt")
COMPRESSED = (".gz", ".zip")
# Exit codes beside forecast.cli.app's: some files could not be imported; another ingest holds the lock.
EXIT_FILES_FAILED = 4
EXIT_BUSY = 75


class IngestBusy(ForecastError):
    """Another ingest of the study holds its lock (exit 75, EX_TEMPFAIL: try again later)."""

    exit_code = EXIT_BUSY


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file of the folder."""

    file: str
    sha256: str
    status: str  # imported | finished | already_imported | incomplete | failed
    detail: str = ""
    n_rows: int = 0
    n_imported: int = 0
    n_events: int = 0
    report: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class IngestResult:
    """What an ingest imported, passed over and updated."""

    study: str
    folder: str
    ledger: str
    files: tuple[FileOutcome, ...] = ()
    update_due: bool = False
    update_reason: str = ""
    updated: bool = False
    run_dir: str | None = None
    update: object | None = field(default=None, compare=False)  # the UpdateResult when it ran

    @property
    def failed(self) -> tuple[FileOutcome, ...]:
        return tuple(f for f in self.files if f.status in ("failed", "incomplete"))

    @property
    def exit_code(self) -> int:
        return EXIT_FILES_FAILED if any(f.status == "failed" for f in self.files) else 0

    def to_dict(self) -> dict:
        by_status: dict[str, int] = {}
        for f in self.files:
            by_status[f.status] = by_status.get(f.status, 0) + 1
        return {
            "study": self.study,
            "folder": self.folder,
            "ledger": self.ledger,
            "n_files": len(self.files),
            "by_status": by_status,
            "n_imported": sum(f.n_imported for f in self.files),
            "files": [f.to_dict() for f in self.files],
            "update_due": self.update_due,
            "update_reason": self.update_reason,
            "updated": self.updated,
            "run_dir": self.run_dir,
            "exit_code": self.exit_code,
        }


# --- the folder and the ledger ------------------------------------------------------------------------


def dump_files(folder: Path) -> list[Path]:
    """The event dumps of ``folder``, in name order (hidden files and other suffixes ignored)."""
    if not folder.is_dir():
        raise InputError(f"--from: {folder} is not a folder")
    out = []
    for p in sorted(folder.iterdir()):
        name = p.name.casefold()
        if name.startswith(".") or not p.is_file():
            continue
        inner = name[: -len(Path(name).suffix)] if name.endswith(COMPRESSED) else name
        if name.endswith(COMPRESSED) and (inner.endswith(DUMP_SUFFIXES) or name.endswith(".zip")):
            out.append(p)
        elif name.endswith(DUMP_SUFFIXES):
            out.append(p)
    return out


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def incomplete(path: Path) -> str | None:
    """Why a plain dump looks unfinished (its last line has no line break), or None."""
    if path.name.casefold().endswith(COMPRESSED):
        return None  # the decompressor tells (a damaged or cut-short archive is an InputError)
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (still being written?)"
    with path.open("rb") as f:
        f.seek(size - 1)
        if f.read(1) != b"\n":
            return "its last line has no line break: still being written, or cut short; left for the next ingest"
    return None


def read_ledger(path: Path) -> dict:
    if not path.is_file():
        return {"schema": LEDGER_SCHEMA, "files": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunStoreError(
            f"{path}: the ingest ledger is unreadable ({clip(e)}); move it aside to import the folder anew "
            "(files already imported are then skipped row by row as already_present)"
        ) from None
    if not isinstance(data, dict) or data.get("schema") != LEDGER_SCHEMA or not isinstance(data.get("files"), dict):
        raise RunStoreError(f"{path}: not an ingest ledger of schema {LEDGER_SCHEMA}")
    return data


def update_due(last_run: dt.date | None, today: dt.date) -> tuple[bool, str]:
    """Whether a quarter has closed since the last run (or there is none), and why."""
    if last_run is None:
        return True, "the study has no run yet"
    q = lambda d: d.year * 4 + (d.month - 1) // 3  # noqa: E731
    if q(today) > q(last_run):
        return True, f"a quarter has closed since the latest run ({last_run})"
    return False, f"no quarter has closed since the latest run ({last_run})"


def _last_run(root: Path, study_name: str) -> dt.date | None:
    try:
        run = StoredRun.latest(root, study_name)
    except RunStoreError:
        return None
    created = run.manifest.get("created") if run.manifest else None
    if not created and (run.path / MANIFEST).exists():
        return None
    try:
        return dt.datetime.fromisoformat(created).date() if created else None
    except ValueError:
        return None


# --- the workflow -------------------------------------------------------------------------------------


def run_ingest(
    study_path: str | Path,
    from_dir: str | Path,
    *,
    mapping_path: str | Path | None = None,
    fmt: str = "auto",
    encoding: str = "utf-8",
    runs_root: Path | None = None,
    update: bool | None = None,
    settings: SamplerSettings | None = None,
    allow_unconverged: bool = False,
    progress: Progress | None = None,
    today: dt.date | None = None,
) -> IngestResult:
    """Import every new dump of ``from_dir`` into the study, then update if due (see the module docstring)."""
    today = today or dt.date.today()
    say = progress or (lambda _msg: None)
    study = load_study(study_path)
    folder = Path(from_dir)
    files = dump_files(folder)
    root = Path(runs_root or study.runs_path or default_root())
    study_dir = preflight(root, study.name)
    imports = study_dir / IMPORTS_DIR
    imports.mkdir(exist_ok=True)
    ledger_path = imports / LEDGER
    lock = FileLock(str(study_dir / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise IngestBusy(
            f"another `forecast ingest` of study '{study.name}' is running (lock {study_dir / LOCK}); "
            "this one did nothing: try again later"
        ) from None
    try:
        ledger = read_ledger(ledger_path)
        entries: dict = ledger["files"]
        outcomes: list[FileOutcome] = []
        for path in files:
            sha = sha256_of(path)
            entry = entries.get(sha)
            if entry is not None and entry.get("state") == "imported":
                outcomes.append(
                    FileOutcome(
                        path.name, sha, "already_imported", f"imported as {entry.get('file')} on {entry.get('at')}"
                    )
                )
                continue
            why = incomplete(path)
            if why is not None:
                outcomes.append(FileOutcome(path.name, sha, "incomplete", why))
                continue
            finishing = entry is not None and entry.get("state") == "started"
            say(f"{'finishing' if finishing else 'importing'} {path.name}")
            entries[sha] = {
                "file": path.name,
                "state": "started",
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            write_json(ledger_path, ledger)
            try:
                r = run_import(
                    path,
                    study_path,
                    mapping_path=mapping_path,
                    fmt=fmt,
                    encoding=encoding,
                    runs_root=root,
                    today=today,
                )
            except InputError as e:
                del entries[sha]  # rolled back: the observation file is replaced whole or not at all
                write_json(ledger_path, ledger)
                outcomes.append(FileOutcome(path.name, sha, "failed", clip(str(e), 500)))
                continue
            d = r.to_dict()
            entries[sha] = {
                "file": path.name,
                "state": "imported",
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "n_rows": d["n_rows"],
                "n_imported": d["n_imported"],
                "report": d["report"],
            }
            write_json(ledger_path, ledger)
            outcomes.append(
                FileOutcome(
                    path.name,
                    sha,
                    "finished" if finishing else "imported",
                    n_rows=d["n_rows"],
                    n_imported=d["n_imported"],
                    n_events=d["n_events"],
                    report=d["report"],
                )
            )
        due, reason = update_due(_last_run(root, study.name), today)
        if update is True:
            due, reason = True, "--update"
        elif update is False:
            reason = f"--no-update ({reason})"
            due = False
        result = IngestResult(
            study=study.name,
            folder=str(folder.resolve()),
            ledger=str(ledger_path),
            files=tuple(outcomes),
            update_due=due,
            update_reason=reason,
        )
        if not due:
            return result
        from forecast.workflows.update import run_update

        say(f"updating: {reason}")
        up = run_update(
            study_path,
            settings,
            runs_root=root,
            allow_unconverged=allow_unconverged,
            progress=progress,
        )
        run_dir = up.run_dir
        return IngestResult(
            study=result.study,
            folder=result.folder,
            ledger=result.ledger,
            files=result.files,
            update_due=True,
            update_reason=reason,
            updated=True,
            run_dir=str(run_dir) if run_dir else None,
            update=up,
        )
    finally:
        lock.release()
