"""`forecast import`: map a coded event file into the study's observations, validate, append, report.

The mapping is the data layer's (`forecast.data.importer`); this workflow decides what is
written and writes it, every file through the run store's atomic writer:

1. the study, the mapping file and the event file's header are read and checked;
2. every row is mapped to an observation or to the reason it is not imported;
3. the observation file with the new rows appended is validated in memory, as `forecast
   validate` would (nothing is written if it would not validate);
4. unless ``dry_run``: leftovers of an interrupted import beside the observation file (and in
   the study's import reports) are removed, the run store is checked writable, the observation
   file is replaced atomically with its permissions kept, and two reports are written under
   ``<runs root>/<study>/imports/``: ``<stamp>-<stem>.json`` (the summary: counts by reason, the
   columns read, every skipped row that involves the study's actor) and
   ``<stamp>-<stem>.rows.jsonl.gz`` (every parsed row, imported or skipped, one JSON object a
   line, gzip-compressed; the rows the pre-filter dropped unparsed are one count in it).

A dry run writes nothing at all (no temporary file, no report, no folder) and so needs no write
access to the data folder or the run store.

When machine-coded rows (the mapping's ``source_class``, "machine-coded" by default) are appended,
or would be on a dry run, to a study that counts every event as independent evidence (``[model]
overdispersion = "none"``), one advisory line goes to stderr (``overdispersion_advice``): such
feeds report one event many times, and ``overdispersion = "cell"`` bounds what one cell can say.
It is advice, not an error; the record carries it as ``advice``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
import stat
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from forecast.data.importer import (
    DEFAULT_MAPPING,
    NOT_THE_ACTOR,
    ON_MATCH,
    Skipped,
    check_observations,
    combined_text,
    existing_events,
    load_mapping,
    map_rows,
    read_source,
)
from forecast.data.importer.limits import echo
from forecast.errors import InputError, RunStoreError

# The study's import reports: <runs root>/<study>/imports/<UTC time>-<event file stem>.json.
from forecast.runs.layout import IMPORTS_DIR  # noqa: E402
from forecast.runs.store import (
    TMP_MARK,
    atomic_write_with,
    cannot_write,
    default_root,
    dumps,
    preflight,
    write_json,
)
from forecast.spec.study import Study, load_study

# Room an import's reports need (checked before the observation file is touched).
REPORT_BYTES = 16 * 1024 * 1024
# The per-row report beside the summary (suggested for forecast.runs.layout: IMPORT_ROWS_SUFFIX).
from forecast.runs.layout import IMPORT_ROWS_SUFFIX as ROWS_SUFFIX  # noqa: E402

# The hidden copy an import before the run store's writer left beside a file: ".<name>.import-<pid>".
LEGACY_MARK = ".import-"


@dataclass(frozen=True)
class ImportResult:
    """What an import mapped, skipped and wrote."""

    study: str
    source_file: str
    format: str
    mapping_file: str
    into: str
    dry_run: bool
    n_rows: int
    imported: tuple[dict, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    written: bool = False
    report: str | None = None
    removed_leftovers: tuple[str, ...] = ()
    n_prefiltered: int = 0
    n_events: int = 0
    columns: dict | None = None
    actor_columns: str = "code"
    encoding: str = "utf-8"
    since: str | None = None
    until: str | None = None
    rows_report: str | None = None
    # One line recommending [model] overdispersion = "cell" (``overdispersion_advice``), or None.
    advice: str | None = None

    @property
    def involving_actor(self) -> tuple[Skipped, ...]:
        """The skipped rows that concern the study's actor (every reason but ``no_actor``)."""
        return tuple(s for s in self.skipped if s.reason not in NOT_THE_ACTOR)

    def reasons(self) -> dict[str, int]:
        reasons = Counter(s.reason for s in self.skipped)
        if self.n_prefiltered:
            reasons["no_actor"] += self.n_prefiltered
        return dict(sorted(reasons.items()))

    def to_dict(self) -> dict:
        return {
            "study": self.study,
            "source_file": self.source_file,
            "format": self.format,
            "mapping_file": self.mapping_file,
            "into": self.into,
            "dry_run": self.dry_run,
            "encoding": self.encoding,
            "since": self.since,
            "until": self.until,
            "columns": self.columns or {},
            "actor_columns": self.actor_columns,
            "n_rows": self.n_rows,
            "n_prefiltered": self.n_prefiltered,
            "n_imported": len(self.imported),
            "n_events": self.n_events,
            "n_corroborating": sum(1 for r in self.imported if r.get("origin_id")),
            "n_skipped": len(self.skipped) + self.n_prefiltered,
            "reasons": self.reasons(),
            "imported_ids": [r["id"] for r in self.imported],
            "skipped": [s.to_dict() for s in self.involving_actor],
            "written": self.written,
            "report": self.report,
            "rows_report": self.rows_report,
            "removed_leftovers": list(self.removed_leftovers),
            "advice": self.advice,
        }


# --- leftovers of an interrupted import -------------------------------------------------------------


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def sweep_leftovers(directory: Path, pattern: re.Pattern[str]) -> list[str]:
    """Remove the files of ``directory`` whose whole name matches ``pattern`` (its one group a pid)
    and whose process no longer runs; return their names. Nothing else is touched: not a
    symbolic link, not a folder, not the file of a process that still runs."""
    removed: list[str] = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        m = pattern.fullmatch(p.name)
        if m is None or p.is_symlink() or not p.is_file() or _running(int(m.group(1))):
            continue
        try:
            p.unlink()
        except FileNotFoundError:
            continue  # another import removed it first
        removed.append(p.name)
    return sorted(removed)


def leftover_pattern(target: Path) -> re.Pattern[str]:
    """The hidden temporary copies of ``target`` an interrupted write leaves: ``.<name>.tmp-<pid>``
    (the run store's atomic writer) and ``.<name>.import-<pid>`` (imports before it)."""
    marks = "|".join(re.escape(m) for m in (TMP_MARK, LEGACY_MARK))
    return re.compile(rf"\.{re.escape(target.name)}(?:{marks})(\d+)")


REPORT_LEFTOVER = re.compile(rf"\..+\.(?:json|jsonl\.gz){re.escape(TMP_MARK)}(\d+)")


# --- writing ------------------------------------------------------------------------------------------


def write_keeping_mode(target: Path, text: str) -> None:
    """Replace ``target`` with ``text`` atomically, keeping its permission bits (and owner, if allowed).

    The temporary copy is created private (0600) and given the old file's mode before any byte
    is written, so a 0600 file is never readable by others, not even for a moment.
    """
    data = text.encode("utf-8")
    try:
        old = target.stat()
    except FileNotFoundError:
        old = None

    def writer(tmp: Path) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(tmp, flags, 0o600 if old is not None else 0o666)
        try:
            if old is not None:
                try:
                    os.fchown(fd, old.st_uid, old.st_gid)
                except PermissionError:
                    pass  # not ours to give away: the new file belongs to whoever imports
                os.fchmod(fd, stat.S_IMODE(old.st_mode))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    atomic_write_with(target, writer)  # an OSError: a RunStoreError naming the file (exit 2), the file unchanged


def _report_path(folder: Path, source: Path) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = source.name.split(".")[0] or source.stem
    path, n = folder / f"{stamp}-{stem}.json", 1
    while path.exists() or path.with_name(path.stem + ROWS_SUFFIX).exists():
        n += 1
        path = folder / f"{stamp}-{stem}-{n}.json"
    return path


def rows_report_path(report: Path) -> Path:
    """The per-row report beside an import's summary report."""
    return report.with_name(report.stem + ROWS_SUFFIX)


def write_rows_report(path: Path, result: ImportResult) -> None:
    """Every parsed row, imported or skipped, one JSON object a line, gzip-compressed, atomically."""

    def writer(tmp: Path) -> None:
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6) as f:
            head = {
                "source_file": result.source_file,
                "n_rows": result.n_rows,
                "n_prefiltered": result.n_prefiltered,
                "prefiltered": "rows that name no code or name of the study's actor (reason no_actor), not listed",
            }
            f.write(dumps(head, indent=None) + "\n")
            for r in result.imported:
                f.write(dumps({"status": "imported", **r}, indent=None) + "\n")
            for sk in result.skipped:
                f.write(dumps({"status": "skipped", **sk.to_dict()}, indent=None) + "\n")

    atomic_write_with(path, writer)


# --- advice on the model for machine-coded feeds -------------------------------------------------


def overdispersion_advice(study: Study, source_class: str, n_rows: int) -> str | None:
    """One line recommending ``[model] overdispersion = "cell"`` when ``n_rows`` machine-coded rows
    go into a study that leaves it at "none"; None otherwise (hand-verified rows, or already set).

    The figures are forecast.model.overdispersion's measurement on the default study: 1,951 copies
    of one imported consultation moved 'hedging' from 0.84 to 0.95 without the option, to 0.92 with it.
    """
    if n_rows == 0 or study.overdispersed or "machine" not in source_class.lower():
        return None
    return (
        f"advice: {study.path} counts each of these {n_rows} {source_class} rows as independent evidence "
        '([model] overdispersion = "none"); for studies fed by machine-coded feeds set [model] '
        'overdispersion = "cell", which bounds what one cell can say (1,951 copies of one event moved '
        "'hedging' from 0.84 to 0.95 on the default study without it, to 0.92 with it)"
    )


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- the workflow -------------------------------------------------------------------------------------


def run_import(
    source: str | Path,
    study_path: str | Path,
    *,
    mapping_path: str | Path | None = None,
    into: str | Path | None = None,
    fmt: str = "auto",
    on_match: str | None = None,
    dry_run: bool = False,
    runs_root: Path | None = None,
    today: dt.date | None = None,
    write_report: bool = True,
    encoding: str = "utf-8",
    since: dt.date | None = None,
    until: dt.date | None = None,
    advise: Callable[[str], None] | None = _to_stderr,
) -> ImportResult:
    """Map a coded event file into the study's observations; append them after validation.

    ``encoding`` is the event file's text encoding; ``since``/``until`` keep only events dated
    within them (inclusive; the study's window applies too). ``advise`` receives the advisory
    line on the model (``overdispersion_advice``; default: stderr; None: kept in the record only).
    """
    if since is not None and until is not None and since > until:
        raise InputError(f"--since {since} is after --until {until}")
    today = today or dt.date.today()
    study = load_study(study_path)
    mapping_file = Path(mapping_path) if mapping_path else study.observations_path.parent / DEFAULT_MAPPING
    mapping = load_mapping(mapping_file, study)
    policy = on_match or mapping.on_match
    if policy not in ON_MATCH:
        raise InputError(f"--on-match: {echo(policy)} is not one of 'skip', 'corroborate', 'keep'")
    target = Path(into) if into else study.observations_path
    src = read_source(Path(source), fmt, encoding)
    fmt = src.format if fmt == "auto" else fmt
    existing = existing_events(study, target, today)
    mapped = map_rows(src, fmt, study, mapping, existing, on_match=policy, today=today, since=since, until=until)
    result = ImportResult(
        study=study.name,
        source_file=str(Path(source).resolve()),
        format=fmt,
        mapping_file=str(mapping.path.resolve()),
        into=str(target.resolve()),
        dry_run=dry_run,
        n_rows=mapped.n_rows,
        imported=tuple(mapped.imported),
        skipped=tuple(mapped.skipped),
        n_prefiltered=mapped.n_prefiltered,
        n_events=mapped.n_events,
        columns=mapped.columns,
        actor_columns=mapping.actor_columns,
        encoding=src.encoding,
        since=since.isoformat() if since else None,
        until=until.isoformat() if until else None,
        advice=overdispersion_advice(study, mapping.source_class, len(mapped.imported)),
    )
    text = None
    if mapped.imported:
        text = combined_text(target, mapped.imported)
        check_observations(study, text, target, today=today)  # the whole file, old rows and new
    if dry_run:
        _advise(result, advise)
        return result

    removed = sweep_leftovers(target.parent, leftover_pattern(target))
    reports = None
    if write_report:
        root = Path(runs_root or study.runs_path or default_root())
        reports = preflight(root, study.name, need_bytes=REPORT_BYTES) / IMPORTS_DIR
        removed += sweep_leftovers(reports, REPORT_LEFTOVER)
        try:
            reports.mkdir(exist_ok=True)
        except OSError as e:
            raise cannot_write(reports, e, what="import reports") from None
    if text is not None:
        write_keeping_mode(target, text)
        result = replace(result, written=True)
    result = replace(result, removed_leftovers=tuple(removed))
    if reports is not None:
        report = _report_path(reports, Path(source))
        rows = rows_report_path(report)
        result = replace(result, report=str(report), rows_report=str(rows))
        try:
            write_rows_report(rows, result)
            write_json(report, result)
        except RunStoreError as e:
            if not result.written:
                raise
            raise RunStoreError(f"{e}; the observations were appended, only the import report is missing") from None
    _advise(result, advise)
    return result


def _advise(result: ImportResult, advise: Callable[[str], None] | None) -> None:
    """Pass the record's advice on, once its rows are written (or would be, on a dry run)."""
    if advise is not None and result.advice is not None and (result.written or result.dry_run):
        advise(result.advice)
