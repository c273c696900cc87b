"""Coded observations: read an event CSV, check every row, and return a clean table.

Columns follow the spirit of PLOVER/CAMEO event data (one dated interaction between the study's
actor and a counterpart, with a cooperative/conflictual reading and a Goldstein-like intensity),
plus the analyst's grading of the report. All checks are vectorised so a million rows validate
in seconds, and every problem is reported with its line and column.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.errors import ObservationError, allowed_list, did_you_mean
from forecast.spec.study import Study, quarter_label

REQUIRED_COLUMNS = ("id", "event_date", "counterpart", "domain", "outcome", "reliability", "description", "source")
OPTIONAL_COLUMNS = ("report_date", "intensity", "origin_id")
OUTCOMES = ("cooperative", "conflictual")
NOTE_PREFIX = "note"
MAX_REPORTED_PER_RULE = 20


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
            shown = "" if values is None else f" {values.iloc[i]!r}"
            self.add(f"line {self.line(i)}, column '{column}':{shown} {what}")
        if len(bad) > MAX_REPORTED_PER_RULE:
            self.add(f"... and {len(bad) - MAX_REPORTED_PER_RULE} more rows with the same problem in column '{column}'")


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


def _report_records(path: Path, text: str, problems: _Problems) -> None:
    """Raise an ObservationError naming the records with too many fields, if there are any."""
    try:
        starts, widths = _records(text)
    except csv.Error as e:
        raise ObservationError(f"{path}: not a readable CSV file: {e}") from None
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
        raise ObservationError(problems.items, heading=f"{path}: {len(problems.items)} problem(s) in the observations")


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
    try:
        return pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, engine="pyarrow")
    except Exception:  # noqa: BLE001 - any refusal means: let the C parser decide and explain
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
    if not path.is_file():
        raise ObservationError(f"{path}: observation file not found (named by {study.path.name}: study.observations)")
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    problems = _Problems(path)
    text = _decode(path, raw, problems)
    if text is None:
        raise ObservationError(problems.items, heading=f"{path}: cannot read the observations")
    if not text.strip():
        raise ObservationError(f"{path}: the file is empty; it needs a header line: {','.join(REQUIRED_COLUMNS)}")
    df = read_with_arrow(raw)
    if df is None:
        try:
            with warnings.catch_warnings():
                # pandas only warns when the first data row has more fields than the header.
                warnings.simplefilter("error", pd.errors.ParserWarning)
                df = pd.read_csv(
                    io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=False, index_col=False
                )
        except (pd.errors.ParserError, pd.errors.ParserWarning) as e:
            _report_records(path, text, problems)
            raise ObservationError(f"{path}: not a readable CSV file: {e}") from None

    def find_lines() -> np.ndarray | None:
        try:
            starts, _ = _records(text)
        except csv.Error:
            return None
        return starts[1:] if len(starts) - 1 == len(df) else None

    problems.find_lines = find_lines
    table = validate_table(df, study, problems, today=today)
    if problems.items:
        raise ObservationError(problems.items, heading=f"{path}: {len(problems.items)} problem(s) in the observations")
    return Observations(path=path, table=table, sha256=sha)


def validate_table(
    df: pd.DataFrame, study: Study, problems: _Problems, *, today: dt.date | None = None
) -> pd.DataFrame:
    """Check a raw string table against the study; return the typed table (or record problems)."""
    today = today or dt.date.today()
    df = df.rename(columns=lambda c: c.strip())
    known_cols = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
    for c in df.columns:
        if c not in known_cols and not c.startswith(NOTE_PREFIX):
            problems.add(
                f"unknown column '{c}'{did_you_mean(c, known_cols)}; allowed: {allowed_list(known_cols)} "
                f"(columns of your own may start with '{NOTE_PREFIX}')"
            )
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        problems.add(f"missing column(s) {allowed_list(missing)}; the header must include {','.join(REQUIRED_COLUMNS)}")
        return df
    for c in OPTIONAL_COLUMNS:
        if c not in df.columns:
            df[c] = ""
    s = {c: df[c].str.strip() for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}

    for c in ("id", "description", "source"):
        problems.rows(s[c] == "", c, "is empty")
    dup = s["id"].duplicated(keep=False) & (s["id"] != "")
    if dup.any():
        first = s["id"][dup].groupby(s["id"][dup]).apply(lambda x: ", ".join(str(problems.line(i)) for i in x.index))
        for ident, lines in list(first.items())[:MAX_REPORTED_PER_RULE]:
            problems.add(f"column 'id': '{ident}' is used on more than one line ({lines}); ids must be unique")

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

    notes = [c for c in df.columns if c.startswith(NOTE_PREFIX)]
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
