"""Coded observations: read an event CSV, check every row, and return a clean table.

Columns follow the spirit of PLOVER/CAMEO event data (one dated, directed interaction between the
study's actor and a counterpart, with a cooperative/conflictual reading and a Goldstein-like
intensity), plus the analyst's grading of the report. All checks are vectorised so a million rows
validate in seconds, and every problem is reported with its line and column.

The columns (``COLUMNS``, in the order ``forecast init`` writes them; * = required):

- ``id`` *: unique id of the row.
- ``event_date`` *: the day the act happened, YYYY-MM-DD.
- ``report_date``: the day it became public, if later (empty: the event_date).
- ``counterpart`` *: one of the study's counterparts.
- ``domain`` *: one of the study's issue domains.
- ``outcome`` *: ``cooperative`` or ``conflictual``.
- ``initiator``: who acted: ``actor`` (the study's actor acted towards the counterpart),
  ``counterpart`` (the counterpart acted towards the actor) or ``joint`` (both together). Optional:
  a file without the column is read as if every row said ``joint``, so files written before the
  column existed give the same numbers as before; in a file that has the column, every row needs a
  value. The study's ``[evidence] initiators`` chooses which rows count (default: all three).
- ``intensity``: Goldstein-like -10..10, its sign agreeing with the outcome.
- ``reliability`` *: Admiralty grade (``B2``) or a weight in (0, 1].
- ``description`` *, ``source`` *: what happened, and who reported it.
- ``origin_id``: the id of the row whose event this row reports again (corroboration).
- ``note...``: any columns of the analyst's own.

Text may not hold control characters (NUL, escape, ...); TAB and line breaks are allowed in the
free-text columns (``description``, ``source``, ``note...``) only. Files, lines, fields and headers
beyond sane sizes (``MAX_LINE_BYTES``, ``MAX_FIELD_CHARS``, ``MAX_COLUMNS``) are refused before
they are parsed, and every value echoed in a message is cut to about 80 characters.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.errors import ObservationError, allowed_list, did_you_mean
from forecast.spec.priors import shown
from forecast.spec.study import INITIATORS, Study, quarter_label

REQUIRED_COLUMNS = ("id", "event_date", "counterpart", "domain", "outcome", "reliability", "description", "source")
OPTIONAL_COLUMNS = ("report_date", "initiator", "intensity", "origin_id")
# Every column forecast knows, in the order `forecast init` writes them (see the module docstring).
COLUMNS = (
    "id",
    "event_date",
    "report_date",
    "counterpart",
    "domain",
    "outcome",
    "initiator",
    "intensity",
    "reliability",
    "description",
    "source",
    "origin_id",
)
OUTCOMES = ("cooperative", "conflictual")
# A file without an initiator column: every row is read as a joint act (counted as before the column).
DEFAULT_INITIATOR = "joint"
NOTE_PREFIX = "note"
FREE_TEXT_COLUMNS = ("description", "source")  # and note... columns
MAX_REPORTED_PER_RULE = 20
# Bounds on what is read at all (issue 13: a 100,010-column header, a 200 MiB field).
MAX_LINE_BYTES = 1024 * 1024
MAX_FIELD_CHARS = 100_000
MAX_COLUMNS = 1_000
# Control characters (C0, DEL, C1); TAB, LF and CR are let through here and judged per column.
# In a file's bytes: every byte but C0 controls and DEL is deleted by bytes.translate (one C pass,
# ~10x faster than a regex search on 100 MB); C1 controls are two bytes in UTF-8, '\xc2' first.
_NOT_C0 = bytes(b for b in range(256) if not ((b < 32 and b not in b"\t\n\r") or b == 127))
_C1_BYTES = re.compile(rb"\xc2[\x80-\x9f]")
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_CONTROL_OR_SPACE = r"[\x00-\x1f\x7f-\x9f]"
_DELIMITERS = {";": "';'", "\t": "TAB", "|": "'|'"}


@dataclass(frozen=True)
class Observations:
    """Validated observations and the hash of the file they came from."""

    path: Path
    table: pd.DataFrame
    sha256: str

    @property
    def n(self) -> int:
        return len(self.table)

    @property
    def latest_date(self) -> str | None:
        return None if self.table.empty else self.table["event_date"].max().date().isoformat()


class _Problems:
    def __init__(self, path: Path):
        self.path = path
        self.items: list[str] = []
        # Physical line on which each data row starts (blank lines and quoted line breaks
        # make it differ from row index + 2); None: assume one line per row. Found by
        # ``find_lines`` only when a problem is reported: a clean million-row file skips it.
        self.lines: np.ndarray | None = None
        self.find_lines: Callable[[], np.ndarray | None] | None = None

    def line(self, i: int) -> int:
        if self.find_lines is not None:
            self.lines, self.find_lines = self.find_lines(), None
        return int(self.lines[i]) if self.lines is not None else i + 2

    def add(self, msg: str) -> None:
        self.items.append(f"{self.path.name}: {msg}")

    def rows(self, mask: pd.Series, column: str, what: str, values: pd.Series | None = None) -> None:
        """Report each row where ``mask`` holds, naming its line, column and value."""
        bad = np.flatnonzero(mask.to_numpy())
        for i in bad[:MAX_REPORTED_PER_RULE]:
            value = "" if values is None else f" {shown(values.iloc[i])}"
            self.add(f"line {self.line(i)}, column {shown(column)}:{value} {what}")
        if len(bad) > MAX_REPORTED_PER_RULE:
            self.add(
                f"... and {len(bad) - MAX_REPORTED_PER_RULE} more rows with the same problem in column {shown(column)}"
            )


def _decode(path: Path, raw: bytes, problems: _Problems) -> str | None:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    bad_lines = []
    for n, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad_lines.append(n)
    good = raw.count(b"\n") + 1 - len(bad_lines)
    kind = "mixed encodings" if good > 1 else "not UTF-8"
    shown = ", ".join(map(str, bad_lines[:MAX_REPORTED_PER_RULE]))
    problems.add(
        f"{kind}: line(s) {shown}{' ...' if len(bad_lines) > MAX_REPORTED_PER_RULE else ''} are not valid UTF-8 "
        "(often Latin-1 or Windows-1252 pasted into a UTF-8 file); save the whole file as UTF-8"
    )
    return None


def _records(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Start line and number of fields of every CSV record, header first; blank lines skipped as pandas does."""
    reader = csv.reader(io.StringIO(text))
    starts, widths, previous = [], [], 0
    for record in reader:
        if record and not (len(record) == 1 and not record[0].strip()):
            starts.append(previous + 1)
            widths.append(len(record))
        previous = reader.line_num
    return np.array(starts, dtype=np.int64), np.array(widths, dtype=np.int64)


def _cut(text: str, limit: int = 200) -> str:
    """A parser's message, cut (some quote the offending text)."""
    return text if len(text) <= limit else f"{text[:limit]}..."


def _raise(problems: _Problems, what: str = "problem(s) in the observations") -> None:
    raise ObservationError(problems.items, heading=f"{problems.path}: {len(problems.items)} {what}")


def _report_records(path: Path, text: str, problems: _Problems, error: Exception) -> None:
    """Raise an ObservationError that says why the parser refused the file, naming the lines."""
    try:
        starts, widths = _records(text)
    except csv.Error as e:
        raise ObservationError(f"{path}: not a readable CSV file: {_cut(str(e))}") from None
    if "EOF inside string" in str(error) and len(starts):
        # The unclosed quote swallowed the rest of the file into one record: the last one.
        raise ObservationError(
            f"{path}: line {starts[-1]}: a double quote opens a quoted field that is never closed, so the rest "
            'of the file was read as one field; close the quote, or write a quote inside quoted text as ""'
        )
    # Too many fields (usually an unquoted comma) would shift the row; too few are padded with "".
    wrong = np.flatnonzero(widths[1:] > widths[0])
    for i in wrong[:MAX_REPORTED_PER_RULE]:
        problems.add(
            f"line {starts[i + 1]}: {widths[i + 1]} fields, but the header has {widths[0]} "
            "(put text that contains commas in double quotes)"
        )
    if len(wrong) > MAX_REPORTED_PER_RULE:
        problems.add(f"... and {len(wrong) - MAX_REPORTED_PER_RULE} more lines with too many fields")
    if len(wrong):
        _raise(problems)
    raise ObservationError(f"{path}: not a readable CSV file: {_cut(str(error))}")


def _check_header(path: Path, text: str) -> None:
    """Refuse a header that cannot be right, before any parser reads the file.

    Too long or too many columns (bounded resources), another delimiter than ',' (named, rather
    than misread as unquoted commas in every row), a column named twice (pandas would rename it
    'domain.1') or a column without a name.
    """
    head = text.lstrip()
    end = head.find("\n")
    line = head if end < 0 else head[:end]
    if len(line) > MAX_LINE_BYTES:
        raise ObservationError(
            f"{path}: the header line is {len(line):,} characters long; forecast reads lines of at most "
            f"{MAX_LINE_BYTES:,} (is this an observation file?)"
        )
    if line.count(",") >= MAX_COLUMNS:
        raise ObservationError(
            f"{path}: the header has {line.count(',') + 1:,} columns; an observation file has at most "
            f"{MAX_COLUMNS:,} (is this an observation file?)"
        )
    try:
        names = [n.strip() for n in next(csv.reader([line.rstrip("\r")]))]
    except (csv.Error, StopIteration):
        return  # the parser will say what is wrong
    n_known = sum(n in COLUMNS for n in names)
    for delimiter, label in _DELIMITERS.items():
        alt = [n.strip().strip('"').strip() for n in line.split(delimiter)]
        if len(alt) > 1 and sum(n in COLUMNS for n in alt) > max(n_known, 1):
            raise ObservationError(
                f"{path}: the file seems to use {label} as delimiter; forecast reads comma-separated files "
                f"(save it as CSV with ',' between fields and text that contains commas in double quotes)"
            )
    problems = _Problems(path)
    where: dict[str, list[int]] = {}
    for i, n in enumerate(names, start=1):
        where.setdefault(n, []).append(i)
    for n, at in where.items():
        if n and len(at) > 1:
            problems.add(
                f"column {shown(n)} appears {len(at)} times in the header (columns "
                f"{', '.join(map(str, at[:MAX_REPORTED_PER_RULE]))}); each column may appear once"
            )
    for i in where.get("", [])[:MAX_REPORTED_PER_RULE]:
        problems.add(
            f"column {i} of the header has no name; name it (columns of your own may start with "
            f"'{NOTE_PREFIX}') or remove it (a trailing comma makes one)"
        )
    if problems.items:
        _raise(problems, "problem(s) in the header")


def _check_lines(path: Path, raw: bytes) -> None:
    """Refuse a line longer than MAX_LINE_BYTES before pandas' parser holds it in memory."""
    if len(raw) <= MAX_LINE_BYTES:
        return
    chunk = 1 << 26
    ends = np.concatenate(
        [
            np.flatnonzero(np.frombuffer(raw, np.uint8, min(chunk, len(raw) - o), o) == ord("\n")) + o
            for o in range(0, len(raw), chunk)
        ]
    )
    starts = np.concatenate(([0], ends + 1))
    lengths = np.concatenate((ends, [len(raw)])) - starts
    long = np.flatnonzero(lengths > MAX_LINE_BYTES)
    if len(long):
        raise ObservationError(
            f"{path}: line {long[0] + 1} is {lengths[long[0]]:,} bytes long; forecast reads lines of at most "
            f"{MAX_LINE_BYTES:,} bytes (is this an observation file?)"
        )


def _has_control(raw: bytes) -> bool:
    """Whether the file's bytes hold a control character other than TAB, LF and CR."""
    return bool(raw.translate(None, _NOT_C0)) or (b"\xc2" in raw and _C1_BYTES.search(raw) is not None)


def _check_fields(df: pd.DataFrame, raw: bytes, problems: _Problems) -> None:
    """Refuse fields longer than MAX_FIELD_CHARS (a line may be short and a quoted field still span many)."""
    if len(raw) <= MAX_FIELD_CHARS:
        return
    import pyarrow as pa
    import pyarrow.compute as pc

    for c in df.columns:
        # Byte lengths come from Arrow's offsets (no pass over the text) and bound the lengths in
        # characters: only a column with a long value is measured in characters.
        if (pc.max(pc.binary_length(pa.array(df[c]))).as_py() or 0) <= MAX_FIELD_CHARS:
            continue
        lengths = df[c].str.len()
        problems.rows(
            lengths > MAX_FIELD_CHARS,
            str(c),
            f"is longer than {MAX_FIELD_CHARS:,} characters, the most a field may hold",
            df[c],
        )
    if problems.items:
        _raise(problems)


def read_with_arrow(raw: bytes) -> pd.DataFrame | None:
    """The table by Arrow's multithreaded CSV reader, or None when it refuses the file.

    Arrow reads a million rows ~6x faster than pandas' C parser, and where it accepts a file it
    gives the same table (``tests/test_observations.py`` holds both to that on tricky files). It
    refuses every row whose field count differs from the header's, and lines of blanks; those
    files go through pandas' C parser, which pads short rows as before and whose errors lead to
    the line-by-line report.
    """
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    import pyarrow as pa  # here: only this fast path needs it, and pandas loads it anyway for engine="pyarrow"

    try:
        return pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, engine="pyarrow")
    except (ValueError, pa.ArrowException):  # ArrowInvalid, pandas' ParserError: the C parser decides and explains
        return None


def lookup(col: pd.Series, table: dict) -> pd.Series:
    """``col.map(table)``, NaN where a value is not a key: mapped once per distinct value
    (``Series.map`` on pandas' Arrow strings builds a Python object per row: seconds at 10^6)."""
    codes, distinct = pd.factorize(col, use_na_sentinel=False)
    if not len(distinct):
        return pd.Series(np.full(len(col), np.nan), index=col.index)
    return _per_row(pd.Series(distinct).map(table), codes, col.index)


def load_observations(study: Study, path: Path | None = None, *, today: dt.date | None = None) -> Observations:
    """Read and check the study's observation file; raise ObservationError listing every problem."""
    path = Path(path or study.observations_path)
    named_by = f"(named by {study.path.name}: study.observations)"
    if path.is_dir():
        raise ObservationError(f"{path}: is a directory, not an observation file {named_by}")
    if not path.is_file():
        raise ObservationError(f"{path}: observation file not found {named_by}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ObservationError(f"{path}: cannot be read ({e.strerror or e})") from None
    table = check_observation_bytes(study, raw, path, today=today)
    return Observations(path=path, table=table, sha256=hashlib.sha256(raw).hexdigest())


def check_observation_bytes(study: Study, raw: bytes, path: Path, *, today: dt.date | None = None) -> pd.DataFrame:
    """Every check ``load_observations`` makes, on ``raw`` as the content of ``path`` (which need
    not exist: an import checks the file it would write); the validated table, or ObservationError."""
    problems = _Problems(path)
    text = _decode(path, raw, problems)
    if text is None:
        raise ObservationError(problems.items, heading=f"{path}: cannot read the observations")
    if not text.strip():
        raise ObservationError(f"{path}: the file is empty; it needs a header line: {','.join(COLUMNS)}")
    _check_header(path, text)
    df = read_with_arrow(raw)
    if df is None:
        _check_lines(path, raw)
        try:
            with warnings.catch_warnings():
                # pandas only warns when the first data row has more fields than the header.
                warnings.simplefilter("error", pd.errors.ParserWarning)
                df = pd.read_csv(
                    io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=False, index_col=False
                )
        except (pd.errors.ParserError, pd.errors.ParserWarning) as e:
            _report_records(path, text, problems, e)

    def find_lines() -> np.ndarray | None:
        try:
            starts, _ = _records(text)
        except csv.Error:
            return None
        return starts[1:] if len(starts) - 1 == len(df) else None

    problems.find_lines = find_lines
    _check_fields(df, raw, problems)
    # A line break inside a field needs quotes; TAB and CR show in the bytes.
    spaces = b"\t" in raw or b"\r" in raw or b'"' in raw
    table = validate_table(df, study, problems, today=today, control=_has_control(raw), spaces=spaces)
    if problems.items:
        _raise(problems)
    return table


def validate_table(
    df: pd.DataFrame,
    study: Study,
    problems: _Problems,
    *,
    today: dt.date | None = None,
    control: bool = True,
    spaces: bool = True,
) -> pd.DataFrame:
    """Check a raw string table against the study; return the typed table (or record problems).

    ``control=False`` skips the search for control characters in every field, and ``spaces=False``
    the search for TABs and line breaks inside ids: the caller has found none in the file's bytes
    (a million clean rows need not be searched column by column).
    """
    today = today or dt.date.today()
    df = df.rename(columns=lambda c: c.strip())
    for c in df.columns:
        if c not in COLUMNS and not c.startswith(NOTE_PREFIX):
            problems.add(
                f"unknown column {shown(c)}{did_you_mean(c, COLUMNS)}; allowed: {allowed_list(COLUMNS)} "
                f"(columns of your own may start with '{NOTE_PREFIX}')"
            )
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        problems.add(f"missing column(s) {allowed_list(missing)}; the header must include {','.join(REQUIRED_COLUMNS)}")
        return df
    directed = "initiator" in df.columns
    if not directed and DEFAULT_INITIATOR not in study.evidence_initiators:
        problems.add(
            f"no 'initiator' column, so every row is read as '{DEFAULT_INITIATOR}', but the study counts only "
            f"{allowed_list(study.evidence_initiators)} as evidence ([evidence] initiators): no row would count; "
            f"add the column (who acted: {allowed_list(INITIATORS)})"
        )
    for c in OPTIONAL_COLUMNS:
        if c not in df.columns:
            df[c] = DEFAULT_INITIATOR if c == "initiator" else ""
    notes = [c for c in df.columns if c.startswith(NOTE_PREFIX)]
    # Coded columns (dates, counterpart, ...) refuse any control character through their own value
    # checks; ids and free text have none, so they are searched here.
    if control:
        for c in ("id", "origin_id", *FREE_TEXT_COLUMNS, *notes):
            free = c not in ("id", "origin_id")
            pattern = _CONTROL if free else _CONTROL_OR_SPACE
            # Surrounding whitespace is stripped from ids (as before); inside, it is refused.
            col = df[c] if free else df[c].str.strip()
            problems.rows(
                col.str.contains(pattern, regex=True),
                c,
                "contains a control character; "
                + (
                    "only TAB and line breaks are allowed in free text"
                    if free
                    else "this column allows none (not even TAB or a line break)"
                ),
                df[c],
            )
    elif spaces:
        # Quoted TABs and line breaks inside an id would still be read; ids are named in reports and exports.
        for c in ("id", "origin_id"):
            problems.rows(
                df[c].str.strip().str.contains(r"[\t\n\r]", regex=True),
                c,
                "contains a TAB or a line break",
                df[c],
            )
    s = {c: df[c].str.strip() for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}

    for c in ("id", "description", "source"):
        problems.rows(s[c] == "", c, "is empty")
    dup = s["id"].duplicated(keep=False) & (s["id"] != "")
    if dup.any():
        where: dict[str, list[int]] = {}
        for i, ident in zip(np.flatnonzero(dup.to_numpy()), s["id"][dup], strict=True):
            where.setdefault(ident, []).append(int(i))
        for ident, rows in list(where.items())[:MAX_REPORTED_PER_RULE]:
            lines = ", ".join(str(problems.line(i)) for i in rows[:MAX_REPORTED_PER_RULE])
            more = f" and {len(rows) - MAX_REPORTED_PER_RULE} more" if len(rows) > MAX_REPORTED_PER_RULE else ""
            problems.add(
                f"column 'id': {shown(ident)} is used on more than one line ({lines}{more}); ids must be unique"
            )

    event_date = _dates(s["event_date"], "event_date", problems, today, required=True)
    report_date = _dates(s["report_date"], "report_date", problems, today, required=False)
    has_report = s["report_date"] != ""
    problems.rows(has_report & (report_date < event_date), "report_date", "is before the event_date")
    report_date = report_date.where(has_report, event_date)

    first, last = study.time.start, study.time.end
    q = event_date.dt.year * 4 + (event_date.dt.month - 1) // 3
    outside = event_date.notna() & ((q < first) | (q > last))
    problems.rows(
        outside,
        "event_date",
        f"lies outside the study's time window {quarter_label(first)}..{quarter_label(last)} (time.start/time.end)",
        s["event_date"],
    )

    group_of = study.counterpart_group
    problems.rows(
        ~s["counterpart"].isin(group_of),
        "counterpart",
        f"is not a counterpart of this study; known: {allowed_list(group_of)}",
        s["counterpart"],
    )
    domains = [d.id for d in study.domains]
    problems.rows(
        ~s["domain"].isin(domains),
        "domain",
        f"is not a domain of this study; known: {allowed_list(domains)}",
        s["domain"],
    )
    outcome = s["outcome"].str.lower()
    problems.rows(~outcome.isin(OUTCOMES), "outcome", f"must be {allowed_list(OUTCOMES)}", s["outcome"])
    cooperative = outcome == "cooperative"

    initiator = _initiators(s["initiator"], problems) if directed else s["initiator"]

    intensity = pd.to_numeric(s["intensity"].where(s["intensity"] != ""), errors="coerce")
    problems.rows((s["intensity"] != "") & intensity.isna(), "intensity", "is not a number", s["intensity"])
    problems.rows(
        intensity.notna() & ~intensity.between(-10, 10),
        "intensity",
        "must lie in -10..10 (Goldstein scale)",
        s["intensity"],
    )
    conflict_sign = (
        intensity.notna()
        & outcome.isin(OUTCOMES)
        & ((cooperative & (intensity < 0)) | (~cooperative & (intensity > 0)))
    )
    problems.rows(
        conflict_sign,
        "intensity",
        "has the wrong sign for the row's outcome (cooperative >= 0, conflictual <= 0)",
        s["intensity"],
    )

    weight = reliability_weight(s["reliability"], study, problems)

    has_origin = s["origin_id"] != ""
    if has_origin.any():
        # object dtype: pandas' Arrow-string isin builds a scalar per id (~40 s at 1M rows)
        known = s["origin_id"].astype(object).isin(s["id"].astype(object))
        problems.rows(has_origin & ~known, "origin_id", "names no id in this file", s["origin_id"])
    problems.rows(has_origin & (s["origin_id"] == s["id"]), "origin_id", "names its own row")

    out = pd.DataFrame(
        {
            "id": s["id"],
            "event_date": event_date,
            "report_date": report_date,
            "quarter": q.astype("Int64"),
            "counterpart": s["counterpart"],
            "group": lookup(s["counterpart"], group_of),
            "domain": s["domain"],
            "cooperative": cooperative,
            "initiator": initiator,
            "intensity": intensity,
            "reliability": s["reliability"],
            "weight": weight,
            "description": s["description"],
            "source": s["source"],
            "origin_id": s["origin_id"],
            **{c: df[c] for c in notes},
        }
    )
    return out


def _per_row(of_distinct: pd.Series, codes: np.ndarray, index: pd.Index) -> pd.Series:
    """Values worked out per distinct value (``pd.factorize``'s uniques), spread back to the rows."""
    return pd.Series(of_distinct.to_numpy()[codes], index=index)


def _initiators(col: pd.Series, problems: _Problems) -> pd.Series:
    """The initiator column in lower case; an empty or unknown value is a problem (no default here)."""
    codes, distinct = pd.factorize(col, use_na_sentinel=False)
    lower = pd.Series(distinct, dtype=object).str.lower()
    known = _per_row(lower.isin(INITIATORS), codes, col.index).astype(bool)
    what = "who acted: the study's actor, the counterpart, or both together"
    problems.rows(col == "", "initiator", f"is empty; must be {allowed_list(INITIATORS)} ({what})")
    problems.rows(
        (col != "") & ~known,
        "initiator",
        f"is not an initiator{_suggest(col, known)}; must be {allowed_list(INITIATORS)} ({what})",
        col,
    )
    return _per_row(lower, codes, col.index)


def _suggest(col: pd.Series, known: pd.Series) -> str:
    """A did-you-mean for the first unknown value (one hint per rule keeps the message short)."""
    bad = col[~known & (col != "")]
    return did_you_mean(str(bad.iloc[0]).lower(), INITIATORS) if len(bad) and bad.nunique() == 1 else ""


def _dates(col: pd.Series, name: str, problems: _Problems, today: dt.date, *, required: bool) -> pd.Series:
    # Parsed once per distinct value: a decade of events has a few thousand distinct dates.
    codes, distinct = pd.factorize(col, use_na_sentinel=False)
    distinct = pd.Series(distinct)
    # The format check keeps '2016-1-5' out: strptime would accept it, ISO dates do not.
    iso = distinct.str.fullmatch(r"\d{4}-\d{2}-\d{2}")
    parsed = _per_row(pd.to_datetime(distinct.where(iso), format="%Y-%m-%d", errors="coerce"), codes, col.index)
    given = col != ""
    if required:
        problems.rows(~given, name, "is empty; expected a date like 2019-07-12")
    problems.rows(given & parsed.isna(), name, "is not a date like 2019-07-12 (YYYY-MM-DD)", col)
    problems.rows(parsed > pd.Timestamp(today), name, f"is in the future (today is {today.isoformat()})", col)
    return parsed


def reliability_weight(col: pd.Series, study: Study, problems: _Problems | None = None) -> pd.Series:
    """Map Admiralty grades ('B2') or plain weights ('0.8') to likelihood weights in (0, 1].

    An Admiralty grade's weight is the product of the study's source-reliability and
    information-credibility weights (``[reliability]`` table in the study file).
    """
    # Worked out once per distinct value (a handful of grades, even in a million rows).
    codes, distinct = pd.factorize(col, use_na_sentinel=False)
    grade = pd.Series(distinct).str.strip().str.upper()
    admiralty = grade.str.fullmatch(r"[A-F][1-6]")
    # astype: on an empty column map() keeps the str dtype, and str * str raises TypeError
    src = grade.str[0].map(study.reliability_source).astype("float64")
    cred = grade.str[1:].map(study.reliability_credibility).astype("float64")
    graded = (src * cred).where(admiralty)
    plain_of = pd.to_numeric(grade.where(~admiralty), errors="coerce")
    weight = _per_row(graded.fillna(plain_of), codes, col.index)
    plain = _per_row(plain_of, codes, col.index)
    col = _per_row(grade, codes, col.index)
    if problems is not None:
        problems.rows(
            weight.isna(),
            "reliability",
            "must be an Admiralty grade (source A-F then credibility 1-6, e.g. 'B2') or a weight in (0, 1]",
            col,
        )
        problems.rows(
            plain.notna() & ~((plain > 0) & (plain <= 1)), "reliability", "as a plain weight must lie in (0, 1]", col
        )
    return weight.where((weight > 0) & (weight <= 1))
