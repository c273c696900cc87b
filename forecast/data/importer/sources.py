"""Event files as GDELT, ICEWS and POLECAT-style exports provide them: format sniffing, column
aliases, compressed files, and a bounded, chunked streaming reader with a pre-filter.

The reader never loads a file whole: it reads blocks of ``BLOCK_BYTES``, splits them into lines
(a line of more than ``MAX_LINE_BYTES`` is refused as soon as it is seen), refuses a header of
more than ``MAX_COLUMNS`` columns as soon as it has read it, refuses a field longer than
``MAX_FIELD_CHARS`` (an unclosed quote runs into that limit instead of swallowing the file), and
names the file, the line and the limit when it does. ``.gz`` and ``.zip`` files (as GDELT ships
them) are read through their decompressor, in the same blocks.

A *pre-filter* (``Source.records(prefilter=...)``) sees each raw line before the CSV parser does
and drops the lines that cannot concern the study (no code or name of its actor anywhere in the
line): on a GDELT day 98-99% of the rows, which are then counted, not parsed. A line is only
dropped where it is a whole record (a headerless GDELT file, or a CSV line outside a quoted field
with no quote in it), so line numbers stay the file's own.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from forecast.data.importer.limits import MAX_COLUMNS, MAX_FIELD_CHARS, MAX_LINE_BYTES, clip, echo, names, size
from forecast.errors import InputError, allowed_list, did_you_mean

FORMATS = ("auto", "gdelt", "icews", "polecat", "generic")
# Bytes read at a time (the pre-filter and the decoder work on whole blocks of lines).
BLOCK_BYTES = 1 << 20
COMPRESSED = (".gz", ".zip")

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

# Where each field is found, by format; names compare without case, spaces or underscores. Every
# column present is read in this order: the first non-empty value decides (the fallbacks), except
# for text, URL, mode and context, where every value counts. The mapping file's [columns] table overrides these (a name or a list of names),
# and its ``actor_columns`` chooses between actor-code and country columns.
FIELDS = (
    "id",
    "event_date",
    "report_date",
    "source_actor",
    "target_actor",
    "event_code",
    "event_type",
    "mode",
    "context",
    "quad_class",
    "goldstein",
    "sources",
    "mentions",
    "root_event",
    "text",
    "url",
    "publisher",
)
# The actor columns by choice: "code" reads the actor-code column first (CAMEO codes such as
# TURGOV, IGOWSTNAT: also the international organisations, which have no country), "country"
# the country column first; the other columns are the fallbacks, in order.
ACTOR_CHOICES = ("code", "country")
_GDELT_ACTORS = {
    "code": (("Actor1Code", "Actor1CountryCode", "Actor1Name"), ("Actor2Code", "Actor2CountryCode", "Actor2Name")),
    "country": (("Actor1CountryCode", "Actor1Code", "Actor1Name"), ("Actor2CountryCode", "Actor2Code", "Actor2Name")),
}
ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "gdelt": {
        "id": ("GLOBALEVENTID",),
        "event_date": ("SQLDATE", "Day"),
        "report_date": ("DATEADDED",),
        "source_actor": _GDELT_ACTORS["code"][0],
        "target_actor": _GDELT_ACTORS["code"][1],
        "event_code": ("EventCode",),
        "quad_class": ("QuadClass",),
        "goldstein": ("GoldsteinScale",),
        "sources": ("NumSources",),
        "mentions": ("NumMentions",),
        "root_event": ("IsRootEvent",),
        "text": ("Actor1Name", "Actor2Name"),
        "url": ("SOURCEURL",),
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
        "mode": ("Event Mode", "Mode"),
        "context": ("Contexts", "Context"),
        "quad_class": ("Quad Code", "Quad Class"),
        "goldstein": ("Event Intensity", "Intensity"),
        "text": ("Headline", "Event Text", "Actor Name", "Recipient Name"),
        "url": ("URL", "Source URL"),
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
        "mode": ("mode", "event_mode"),
        "context": ("context", "contexts"),
        "quad_class": ("quad_class", "quad"),
        "goldstein": ("goldstein", "goldstein_scale", "intensity"),
        "sources": ("num_sources",),
        "mentions": ("num_mentions",),
        "root_event": ("is_root_event",),
        "text": ("text", "description"),
        "url": ("url",),
        "publisher": ("publisher",),
    },
}
ID_PREFIX = {"gdelt": "GDELT", "icews": "ICEWS", "polecat": "POLECAT", "generic": "EVT"}


def key(name: str) -> str:
    """A column name as aliases compare it: without case, spaces or underscores."""
    return re.sub(r"[\s_]+", "", str(name)).casefold()


def is_code_column(name: str) -> bool:
    """Whether a column carries actor codes (matched by CAMEO code prefix), not names: its name says 'code'."""
    return "code" in key(name)


# --- opening, decompressing, decoding ----------------------------------------------------------------


def check_encoding(encoding: str) -> str:
    """The codec's name, if it is one the reader can split into lines (an ASCII-compatible one)."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise InputError(
            f"--encoding: {echo(encoding)} is not a known text encoding (e.g. utf-8, latin-1, cp1252)"
        ) from None
    if '\n,"\t;'.encode(info.name, errors="replace") != b'\n,"\t;':
        raise InputError(
            f"--encoding: {info.name} does not write line breaks and delimiters as ASCII bytes; convert the "
            "file to UTF-8 first (e.g. iconv -f UTF-16 -t UTF-8)"
        )
    return info.name


@contextmanager
def open_events(path: Path) -> Iterator[BinaryIO]:
    """The file's bytes, through gzip for ``.gz`` and from its one data member for ``.zip``."""
    suffix = path.suffix.casefold()
    if suffix == ".gz":
        with gzip.open(path, "rb") as f:
            yield f  # type: ignore[misc]
        return
    if suffix == ".zip":
        try:
            z = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise InputError(f"{path}: not a readable zip archive ({clip(e)}); truncated download?") from None
        with z:
            members = [i for i in z.infolist() if not i.is_dir()]
            if len(members) != 1:
                raise InputError(
                    f"{path}: a zip archive of event data holds one file; this one holds {len(members)}"
                    + (f" ({names(i.filename for i in members)}); unpack it and import each" if members else "")
                )
            with z.open(members[0]) as f:
                yield f  # type: ignore[misc]
        return
    with path.open("rb") as f:
        yield f


_DAMAGED = (EOFError, zlib.error, gzip.BadGzipFile, zipfile.BadZipFile)


def _lines(path: Path, f: BinaryIO, encoding: str = "utf-8") -> Iterator[str]:
    """The file's lines (each with its ending)."""
    for chunk in _chunks(path, f, encoding):
        yield from chunk


def _chunks(path: Path, f: BinaryIO, encoding: str = "utf-8") -> Iterator[list[str]]:
    """The file's lines (each with its ending), decoded and returned a block at a time.

    A line over MAX_LINE_BYTES is refused when it is seen (never read whole); a damaged or
    truncated compressed file is refused with the line it reached.
    """
    n = 0
    rest = b""
    first = True
    while True:
        try:
            block = f.read(BLOCK_BYTES)
        except _DAMAGED as e:
            raise InputError(
                f"{path}: the compressed data is damaged or cut short after line {n} ({clip(e)}); "
                "download the file again"
            ) from None
        if first and block:
            first = False
            if block.startswith(codecs.BOM_UTF8) and encoding in ("utf-8", "utf-8-sig"):
                block = block[3:]
        data = rest + block
        if not block:
            if not data:
                return
            cut = len(data)
        else:
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                if len(data) > MAX_LINE_BYTES:
                    raise _too_long(path, n + 1)
                rest = data
                continue
        chunk, rest = data[:cut], data[cut:]
        raw_lines = chunk.split(b"\n")
        if raw_lines[-1] == b"":
            raw_lines.pop()
            ends = True
        else:
            ends = False  # the file's last line, without a line break
        if max(map(len, raw_lines), default=0) > MAX_LINE_BYTES:
            long_at = next(i for i, r in enumerate(raw_lines) if len(r) > MAX_LINE_BYTES)
            raise _too_long(path, n + long_at + 1)
        try:
            text = chunk.decode(encoding)
        except UnicodeDecodeError:
            for i, r in enumerate(raw_lines):
                try:
                    r.decode(encoding)
                except UnicodeDecodeError as e:
                    raise InputError(
                        f"{path}: line {n + i + 1} is not {_label(encoding)} text (byte {e.start + 1} of the line); save "
                        "the file as UTF-8 or name its encoding with --encoding"
                    ) from None
            raise
        lines = text.split("\n")
        if ends:
            lines.pop()
        last = len(lines) - 1
        yield (
            [line + "\n" for line in lines]
            if ends
            else [line + "\n" if i < last else line for i, line in enumerate(lines)]
        )
        n += len(lines)
        if not block:
            return
        if len(rest) > MAX_LINE_BYTES:
            raise _too_long(path, n + 1)


def _too_long(path: Path, line: int) -> InputError:
    return InputError(
        f"{path}: line {line} is longer than {size(MAX_LINE_BYTES)}, the most an event file's line may be; "
        "is this an event table (CSV or TSV)?"
    )


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


@dataclass
class Counts:
    """What the reader saw beside the records it returned: rows the pre-filter dropped unparsed."""

    prefiltered: int = 0
    lines: int = 0


@dataclass(frozen=True)
class Source:
    """An event file whose header has been read and checked; ``records()`` streams its rows."""

    path: Path
    format: str  # detected from the columns (``auto``) or as given
    columns: tuple[str, ...]
    delimiter: str
    headerless: bool
    encoding: str = "utf-8"
    counts: Counts = field(default_factory=Counts, compare=False)

    def records(self, prefilter: Callable[[list[str]], set[int]] | None = None) -> Iterator[tuple[int, list[str]]]:
        """Each data row as (the line it starts on, its fields padded to the header's width).

        ``prefilter(lines)`` is given each block of lines and returns the positions of those that
        may concern the study; the others, where they are whole records, are dropped unparsed
        (counted in ``counts.prefiltered``); see the module's docstring.
        """
        width = len(self.columns)
        counts = self.counts
        counts.prefiltered = counts.lines = 0
        consumed: list[int] = []
        headerless = self.headerless

        def feed(chunks: Iterator[list[str]]) -> Iterator[str]:
            header_seen, open_quote = headerless, False
            n = 0
            for lines in chunks:
                keep = prefilter(lines) if prefilter is not None else None
                for i, line in enumerate(lines):
                    n += 1
                    counts.lines = n
                    if keep is not None and i not in keep and header_seen and not open_quote:
                        if headerless or '"' not in line:
                            if line.strip():
                                counts.prefiltered += 1
                            continue
                    if not header_seen and line.strip():
                        header_seen = True
                    if not headerless and line.count('"') % 2:
                        open_quote = not open_quote
                    consumed.append(n)
                    yield line

        old_limit = csv.field_size_limit(MAX_FIELD_CHARS)
        try:
            with open_events(self.path) as f:
                reader = csv.reader(
                    feed(_chunks(self.path, f, self.encoding)),
                    delimiter=self.delimiter,
                    strict=True,
                    quoting=csv.QUOTE_NONE if headerless else csv.QUOTE_MINIMAL,
                )
                header_seen = headerless
                while True:
                    try:
                        record = next(reader)
                    except StopIteration:
                        return
                    except csv.Error as e:
                        start = consumed[0] if consumed else counts.lines
                        raise _csv_problem(self.path, e, start, consumed[-1] if consumed else start) from None
                    start = consumed[0]
                    consumed.clear()
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
                    yield start, record + [""] * (width - len(record)) if len(record) < width else record
        finally:
            csv.field_size_limit(old_limit)


def _header(path: Path, encoding: str) -> tuple[int, str]:
    """The first non-blank line of the file and its line number."""
    with open_events(path) as f:
        for n, line in enumerate(_lines(path, f, encoding), start=1):
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


def read_source(path: Path, fmt: str = "auto", encoding: str = "utf-8") -> Source:
    """Open an event file: read and check its header, tell its format; rows come from ``records()``."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an event file")
    if not path.is_file():
        raise InputError(f"{path}: event file not found")
    encoding = check_encoding(encoding)
    line, first = _header(path, encoding)
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
        return Source(path, "gdelt", tuple(names_), sep, headerless=True, encoding=encoding)
    columns = tuple(c.strip() for c in fields)
    return Source(path, _detect(columns) if fmt == "auto" else fmt, columns, sep, headerless=False, encoding=encoding)


def resolve_columns(
    columns: tuple[str, ...], fmt: str, overrides: dict[str, list[str]], actor_columns: str = "code"
) -> dict[str, list[int]]:
    """For each field, the positions of the columns that carry it (in order of preference)."""
    by_key: dict[str, int] = {}
    first_of: dict[str, int] = {}
    for i, c in enumerate(columns):
        if c in first_of:
            continue  # a repeated column name: its first column counts
        first_of[c] = i
        by_key[key(c)] = i
    aliases = dict(ALIASES[fmt])
    if fmt == "gdelt":
        aliases["source_actor"], aliases["target_actor"] = _GDELT_ACTORS[actor_columns]
    out: dict[str, list[int]] = {}
    for f in FIELDS:
        if f in overrides:
            cols = []
            for col in overrides[f]:
                if col not in first_of:
                    raise InputError(
                        f"mapping file [columns].{f} names column {echo(col)}, which the event file does not have"
                        f"{did_you_mean(clip(col), columns)}; its columns: {names(columns)}"
                    )
                cols.append(first_of[col])
            out[f] = cols
            continue
        found = [by_key[key(a)] for a in aliases.get(f, ()) if key(a) in by_key]
        out[f] = found
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


def _label(encoding: str) -> str:
    return "UTF-8" if encoding in ("utf-8", "utf-8-sig") else encoding
