"""Event files as GDELT, ICEWS and POLECAT-style exports provide them: format sniffing, column
aliases, and a bounded, streaming reader.

The reader never loads a file whole: it reads one line at a time (at most ``MAX_LINE_BYTES``),
refuses a header of more than ``MAX_COLUMNS`` columns as soon as it has read it, refuses a field
longer than ``MAX_FIELD_CHARS`` (an unclosed quote runs into that limit instead of swallowing the
file), and names the file, the line and the limit when it does.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from forecast.data.importer.limits import MAX_COLUMNS, MAX_FIELD_CHARS, MAX_LINE_BYTES, clip, echo, names, size
from forecast.errors import InputError, allowed_list, did_you_mean

FORMATS = ("auto", "gdelt", "icews", "polecat", "generic")

# GDELT 2.0 event files have no header: these are its 61 columns (GDELT 1.0: 58 or 57, without
# the three ADM2 codes, and 57 without SOURCEURL).
GDELT2_COLUMNS = (
    "GLOBALEVENTID SQLDATE MonthYear Year FractionDate Actor1Code Actor1Name Actor1CountryCode "
    "Actor1KnownGroupCode Actor1EthnicCode Actor1Religion1Code Actor1Religion2Code Actor1Type1Code "
    "Actor1Type2Code Actor1Type3Code Actor2Code Actor2Name Actor2CountryCode Actor2KnownGroupCode "
    "Actor2EthnicCode Actor2Religion1Code Actor2Religion2Code Actor2Type1Code Actor2Type2Code Actor2Type3Code "
    "IsRootEvent EventCode EventBaseCode EventRootCode QuadClass GoldsteinScale NumMentions NumSources "
    "NumArticles AvgTone Actor1Geo_Type Actor1Geo_FullName Actor1Geo_CountryCode Actor1Geo_ADM1Code "
    "Actor1Geo_ADM2Code Actor1Geo_Lat Actor1Geo_Long Actor1Geo_FeatureID Actor2Geo_Type Actor2Geo_FullName "
    "Actor2Geo_CountryCode Actor2Geo_ADM1Code Actor2Geo_ADM2Code Actor2Geo_Lat Actor2Geo_Long "
    "Actor2Geo_FeatureID ActionGeo_Type ActionGeo_FullName ActionGeo_CountryCode ActionGeo_ADM1Code "
    "ActionGeo_ADM2Code ActionGeo_Lat ActionGeo_Long ActionGeo_FeatureID DATEADDED SOURCEURL"
).split()
_ADM2 = {"Actor1Geo_ADM2Code", "Actor2Geo_ADM2Code", "ActionGeo_ADM2Code"}
GDELT1_COLUMNS = [c for c in GDELT2_COLUMNS if c not in _ADM2]

# Where each field is found, by format (first column present wins); names compare without case,
# spaces or underscores. The mapping file's [columns] table overrides these.
FIELDS = (
    "id",
    "event_date",
    "report_date",
    "source_actor",
    "target_actor",
    "event_code",
    "event_type",
    "quad_class",
    "goldstein",
    "sources",
    "text",
    "publisher",
)
ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "gdelt": {
        "id": ("GLOBALEVENTID",),
        "event_date": ("SQLDATE", "Day"),
        "report_date": ("DATEADDED",),
        "source_actor": ("Actor1CountryCode", "Actor1Code", "Actor1Name"),
        "target_actor": ("Actor2CountryCode", "Actor2Code", "Actor2Name"),
        "event_code": ("EventCode",),
        "quad_class": ("QuadClass",),
        "goldstein": ("GoldsteinScale",),
        "sources": ("NumSources",),
        "text": ("SOURCEURL", "Actor1Name", "Actor2Name"),
    },
    "icews": {
        "id": ("Event ID",),
        "event_date": ("Event Date",),
        "report_date": ("Publication Date", "Story Date"),
        "source_actor": ("Source Country", "Source Name"),
        "target_actor": ("Target Country", "Target Name"),
        "event_code": ("CAMEO Code",),
        "quad_class": ("Quad Class", "quad_class"),
        "goldstein": ("Intensity",),
        "text": ("Event Text", "Source Name", "Target Name", "Headline"),
        "publisher": ("Publisher",),
    },
    "polecat": {
        "id": ("Event ID",),
        "event_date": ("Event Date",),
        "report_date": ("Publication Date", "Story Date"),
        "source_actor": ("Actor Country", "Actor Name"),
        "target_actor": ("Recipient Country", "Recipient Name"),
        "event_code": ("CAMEO Code",),
        "event_type": ("Event Type",),
        "quad_class": ("Quad Code", "Quad Class"),
        "goldstein": ("Event Intensity", "Intensity"),
        "text": ("Headline", "Event Text", "Contexts", "Actor Name", "Recipient Name"),
        "publisher": ("Source", "Publisher"),
    },
    "generic": {
        "id": ("id", "event_id"),
        "event_date": ("event_date", "date"),
        "report_date": ("report_date", "publication_date"),
        "source_actor": ("source_country", "source", "actor1"),
        "target_actor": ("target_country", "target", "actor2"),
        "event_code": ("cameo_code", "event_code", "cameo"),
        "event_type": ("event_type",),
        "quad_class": ("quad_class", "quad"),
        "goldstein": ("goldstein", "goldstein_scale", "intensity"),
        "sources": ("num_sources",),
        "text": ("text", "description", "url"),
        "publisher": ("publisher",),
    },
}
ID_PREFIX = {"gdelt": "GDELT", "icews": "ICEWS", "polecat": "POLECAT", "generic": "EVT"}


def key(name: str) -> str:
    """A column name as aliases compare it: without case, spaces or underscores."""
    return re.sub(r"[\s_]+", "", str(name)).casefold()


def _lines(path: Path, f: BinaryIO) -> Iterator[str]:
    """The file's lines, decoded one at a time; a line over MAX_LINE_BYTES is refused unread."""
    n = 0
    while raw := f.readline(MAX_LINE_BYTES + 1):
        n += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise InputError(
                f"{path}: line {n} is longer than {size(MAX_LINE_BYTES)}, the most an event file's line may be; "
                "is this an event table (CSV or TSV)?"
            )
        if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(
                f"{path}: line {n} is not UTF-8 text (byte {e.start + 1} of the line); save the file as UTF-8"
            ) from None


def _blank(record: list[str]) -> bool:
    return not record or (len(record) == 1 and not record[0].strip())


def _csv_problem(path: Path, e: csv.Error, start: int, line: int) -> InputError:
    text = str(e)
    if "field larger than field limit" in text:
        why = (
            f"a field of the record starting on line {start} is longer than {size(MAX_FIELD_CHARS)} characters, "
            "the most an event file's field may be (an unclosed quote?)"
        )
    elif "unexpected end of data" in text:
        why = f"the record starting on line {start} opens a quoted field that is never closed"
    elif "expected after" in text:
        why = f"line {line}: text follows a closing quote; quote the whole field or none of it"
    else:
        why = f"line {line}: not a readable CSV/TSV table: {clip(text)}"
    return InputError(f"{path}: {why}")


@dataclass(frozen=True)
class Source:
    """An event file whose header has been read and checked; ``records()`` streams its rows."""

    path: Path
    format: str  # detected from the columns (``auto``) or as given
    columns: tuple[str, ...]
    delimiter: str
    headerless: bool

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """Each data row as (the line it starts on, its fields padded to the header's width)."""
        width = len(self.columns)
        old_limit = csv.field_size_limit(MAX_FIELD_CHARS)
        try:
            with self.path.open("rb") as f:
                reader = csv.reader(
                    _lines(self.path, f),
                    delimiter=self.delimiter,
                    strict=True,
                    quoting=csv.QUOTE_NONE if self.headerless else csv.QUOTE_MINIMAL,
                )
                header_seen, previous = self.headerless, 0
                while True:
                    start = previous + 1
                    try:
                        record = next(reader)
                    except StopIteration:
                        return
                    except csv.Error as e:
                        raise _csv_problem(self.path, e, start, reader.line_num) from None
                    previous = reader.line_num
                    if _blank(record):
                        continue
                    if not header_seen:
                        header_seen = True
                        continue
                    if len(record) > width:
                        raise InputError(
                            f"{self.path}: line {start} has {len(record)} fields, the header {width}; "
                            "a field with an unquoted delimiter in it? Quote such fields"
                        )
                    yield start, record + [""] * (width - len(record))
        finally:
            csv.field_size_limit(old_limit)


def _header(path: Path) -> tuple[int, str]:
    """The first non-blank line of the file and its line number."""
    with path.open("rb") as f:
        for n, line in enumerate(_lines(path, f), start=1):
            if line.strip():
                return n, line.rstrip("\r\n")
    raise InputError(f"{path}: the file is empty")


def _delimiter(first: str) -> str:
    if "\t" in first:
        return "\t"
    if "," not in first and ";" in first:
        return ";"
    return ","


def _detect(columns: tuple[str, ...]) -> str:
    cols = {key(c) for c in columns}
    if {"globaleventid", "sqldate"} & cols:
        return "gdelt"
    if "cameocode" in cols and "sourcecountry" in cols:
        return "icews"
    if "eventtype" in cols and ({"quadcode", "recipientcountry", "recipientname"} & cols):
        return "polecat"
    return "generic"


def read_source(path: Path, fmt: str = "auto") -> Source:
    """Open an event file: read and check its header, tell its format; rows come from ``records()``."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an event file")
    if not path.is_file():
        raise InputError(f"{path}: event file not found")
    line, first = _header(path)
    sep = _delimiter(first)
    try:
        fields = next(csv.reader([first], delimiter=sep))
    except csv.Error as e:
        raise _csv_problem(path, e, line, line) from None
    if len(fields) > MAX_COLUMNS:
        raise InputError(
            f"{path}: line {line} has {len(fields):,} columns; an event file may have at most {MAX_COLUMNS:,} "
            f"(GDELT has {len(GDELT2_COLUMNS)})"
        )
    if fmt not in FORMATS:
        raise InputError(f"--format: {echo(fmt)} is not one of {allowed_list(FORMATS)}")
    if fields and fields[0].strip().isdigit() and len(fields) in (57, 58, 61):
        names_ = GDELT2_COLUMNS if len(fields) == 61 else GDELT1_COLUMNS[: len(fields)]
        return Source(path, "gdelt", tuple(names_), sep, headerless=True)
    columns = tuple(c.strip() for c in fields)
    return Source(path, _detect(columns) if fmt == "auto" else fmt, columns, sep, headerless=False)


def resolve_columns(columns: tuple[str, ...], fmt: str, overrides: dict[str, str]) -> dict[str, list[int]]:
    """For each field, the positions of the columns that carry it (in order of preference)."""
    by_key: dict[str, int] = {}
    first_of: dict[str, int] = {}
    for i, c in enumerate(columns):
        if c in first_of:
            continue  # a repeated column name: its first column counts
        first_of[c] = i
        by_key[key(c)] = i
    out: dict[str, list[int]] = {}
    for f in FIELDS:
        if f in overrides:
            col = overrides[f]
            if col not in first_of:
                raise InputError(
                    f"mapping file [columns].{f} names column {echo(col)}, which the event file does not have"
                    f"{did_you_mean(clip(col), columns)}; its columns: {names(columns)}"
                )
            out[f] = [first_of[col]]
            continue
        out[f] = [by_key[key(a)] for a in ALIASES[fmt].get(f, ()) if key(a) in by_key]
    missing = [f for f in ("event_date", "source_actor", "target_actor") if not out[f]]
    if missing:
        raise InputError(
            f"cannot find the {', '.join(missing)} column(s) of this {fmt} file; name them in the mapping "
            f'file\'s [columns] table (e.g. event_date = "Date"); its columns: {names(columns)}'
        )
    if not (out["quad_class"] or out["event_code"] or out["event_type"] or out["goldstein"]):
        raise InputError(
            "the event file has no quad class, CAMEO code, event type or Goldstein column, so no row can be "
            f"read as cooperative or conflictual; its columns: {names(columns)}"
        )
    return out
