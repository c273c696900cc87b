"""`forecast import`: coded event data (CAMEO, PLOVER) into the study's observation format.

Reads event tables as GDELT, ICEWS and POLECAT-style exports provide them (one row per coded
event: date, source and target actors, a CAMEO event code or PLOVER event type, a quad class,
a Goldstein-like score) and turns the rows that concern the study into observations:

- the *actors*: one side must be the study's actor, the other a counterpart of the study, both
  named through the mapping file's ``actor`` list and ``[counterparts]`` table (country codes,
  actor codes or names, whichever columns the file has);
- the *outcome*: cooperative or conflictual from the quad class (1, 2 cooperative; 3, 4
  conflictual), else from the PLOVER event type or the CAMEO root code through their quad
  classes, else from the sign of the Goldstein score; the score itself becomes the intensity,
  and a score whose sign contradicts the quad class is reported, not guessed;
- the *domain*: the first ``[domains.keywords]`` entry found in the row's text, else the
  longest ``[domains.codes]`` prefix of the CAMEO code, else ``[domains].default``;
- the *dates*: the event date, and the report date (GDELT's DATEADDED, POLECAT's publication
  date) kept apart from it.

Every row that is not imported is reported with its line and the reason; nothing is dropped
silently. The new rows are appended only if the whole file, old rows and new, passes the same
validation as `forecast validate`; ids stay unique (``<prefix>-<source event id>``), so a
re-import adds nothing twice, and an event that matches one already in the file (same date,
counterpart, domain and outcome) is skipped, or added as a corroborating report of it
(``origin_id``) with ``on_match = "corroborate"``.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import pydantic
from pydantic import BaseModel, ConfigDict

from forecast.data.observations import load_observations
from forecast.errors import InputError, ObservationError, allowed_list, did_you_mean
from forecast.runs.store import atomic_write_text, default_root, dumps, fsync
from forecast.spec.study import Study, load_study, quarter_label

DEFAULT_MAPPING = "cameo_mapping.toml"
FORMATS = ("auto", "gdelt", "icews", "polecat", "generic")
OBSERVATION_COLUMNS = (
    "id",
    "event_date",
    "report_date",
    "counterpart",
    "domain",
    "outcome",
    "intensity",
    "reliability",
    "description",
    "source",
    "origin_id",
)

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
QUAD_LABELS = {
    "verbal cooperation": 1,
    "material cooperation": 2,
    "verbal conflict": 3,
    "material conflict": 4,
}
CAMEO_ROOTS = {
    "01": "make public statement",
    "02": "appeal",
    "03": "express intent to cooperate",
    "04": "consult",
    "05": "engage in diplomatic cooperation",
    "06": "engage in material cooperation",
    "07": "provide aid",
    "08": "yield",
    "09": "investigate",
    "10": "demand",
    "11": "disapprove",
    "12": "reject",
    "13": "threaten",
    "14": "protest",
    "15": "exhibit force posture",
    "16": "reduce relations",
    "17": "coerce",
    "18": "assault",
    "19": "fight",
    "20": "use unconventional mass violence",
}

# --- the mapping file -------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _MappingSection(_Strict):
    study: str | None = None
    actor: list[str]
    reliability: str = "C3"
    by_sources: dict[str, str] = {}
    on_match: Literal["skip", "corroborate", "keep"] = "skip"
    id_prefix: str | None = None


class _Domains(_Strict):
    default: str | None = None
    keywords: dict[str, str] = {}
    codes: dict[str, str] = {}


class _Outcome(_Strict):
    quad_classes: dict[str, Literal["cooperative", "conflictual"]] = {
        "1": "cooperative",
        "2": "cooperative",
        "3": "conflictual",
        "4": "conflictual",
    }
    root_codes: dict[str, int] = {
        f"{i:02d}": 1 if i <= 5 else 2 if i <= 8 else 3 if i <= 13 else 4 for i in range(1, 21)
    }
    event_types: dict[str, int] = {}


class _MappingFile(_Strict):
    mapping: _MappingSection
    counterparts: dict[str, str]
    domains: _Domains = _Domains()
    outcome: _Outcome = _Outcome()
    columns: dict[str, str] = {}


@dataclass(frozen=True)
class Mapping:
    path: Path
    actor: frozenset[str]
    counterparts: dict[str, str]  # normalised code or name -> counterpart id
    keywords: list[tuple[str, str]]  # (lower-case keyword, domain), in file order
    codes: list[tuple[str, str]]  # (code prefix, domain), longest first
    default_domain: str | None
    quad_outcome: dict[int, str]
    root_quad: dict[str, int]
    type_quad: dict[str, int]
    reliability: str
    by_sources: list[tuple[int, str]]  # (minimum sources, grade), largest first
    on_match: str
    id_prefix: str | None
    columns: dict[str, str]
    sha256: str


def _norm(x: str) -> str:
    return re.sub(r"\s+", " ", str(x).strip()).casefold()


def load_mapping(path: Path, study: Study) -> Mapping:
    """Read and check a mapping file against the study; every problem is reported at once."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: mapping file not found (see `forecast import --help` for its format)")
    raw_bytes = path.read_bytes()
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"{path}: not a readable TOML file: {e}") from None
    try:
        spec = _MappingFile.model_validate(raw)
    except pydantic.ValidationError as e:
        problems = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                parent = {"mapping": _MappingSection, "domains": _Domains, "outcome": _Outcome}.get(
                    str(err["loc"][0]) if len(err["loc"]) > 1 else "", _MappingFile
                )
                problems.append(
                    f"{loc}: unknown key{did_you_mean(str(err['loc'][-1]), parent.model_fields)}; "
                    f"allowed: {allowed_list(parent.model_fields)}"
                )
            elif err["type"] == "missing":
                problems.append(f"{loc}: required key is missing")
            else:
                problems.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
        raise InputError(problems, heading=f"{path}: the mapping file has problems") from None
    problems: list[str] = []
    m = spec.mapping
    if m.study is not None and m.study != study.name:
        problems.append(f"mapping.study: written for study '{m.study}', not '{study.name}'")
    if not m.actor:
        problems.append("mapping.actor: list the codes or names of the study's actor (e.g. ['TUR', 'Turkey'])")
    counterparts = set(study.counterpart_group)
    for code, cp in spec.counterparts.items():
        if cp not in counterparts:
            problems.append(
                f"counterparts.{code}: '{cp}' is not a counterpart of the study{did_you_mean(cp, counterparts)}; "
                f"known: {allowed_list(counterparts)}"
            )
    domains = {d.id for d in study.domains}
    for where, table in (("domains.keywords", spec.domains.keywords), ("domains.codes", spec.domains.codes)):
        for k, d in table.items():
            if d not in domains:
                problems.append(f"{where}.{k}: '{d}' is not a domain of the study{did_you_mean(d, domains)}")
    for k in spec.domains.codes:
        if not k.isdigit():
            problems.append(f"domains.codes.{k}: CAMEO code prefixes are digits, e.g. '06' or '0631'")
    if spec.domains.default is not None and spec.domains.default not in domains:
        problems.append(f"domains.default: '{spec.domains.default}' is not a domain of the study")
    for k in spec.outcome.quad_classes:
        if k not in {"1", "2", "3", "4"}:
            problems.append(f"outcome.quad_classes.{k}: quad classes are '1'..'4'")
    for where, table in (
        ("outcome.root_codes", spec.outcome.root_codes),
        ("outcome.event_types", spec.outcome.event_types),
    ):
        for k, q in table.items():
            if q not in (1, 2, 3, 4):
                problems.append(f"{where}.{k}: a quad class 1..4, got {q}")
    grades = [m.reliability, *m.by_sources.values()]
    for g in grades:
        if not re.fullmatch(r"[A-F][1-6]", g.strip().upper()):
            problems.append(f"mapping: '{g}' is not an Admiralty grade like 'C3'")
    for k in m.by_sources:
        if not k.isdigit() or int(k) < 1:
            problems.append(f"mapping.by_sources.{k}: keys are minimum numbers of sources, e.g. '3'")
    for k in spec.columns:
        if k not in FIELDS:
            problems.append(f"columns.{k}: unknown field{did_you_mean(k, FIELDS)}; allowed: {allowed_list(FIELDS)}")
    if problems:
        raise InputError(problems, heading=f"{path}: the mapping file has problems")
    return Mapping(
        path=path,
        actor=frozenset(_norm(a) for a in m.actor),
        counterparts={_norm(k): v for k, v in spec.counterparts.items()},
        keywords=[(k.casefold(), d) for k, d in spec.domains.keywords.items()],
        codes=sorted(spec.domains.codes.items(), key=lambda kv: -len(kv[0])),
        default_domain=spec.domains.default,
        quad_outcome={int(k): v for k, v in spec.outcome.quad_classes.items()},
        root_quad=dict(spec.outcome.root_codes),
        type_quad={_norm(k): v for k, v in spec.outcome.event_types.items()},
        reliability=m.reliability.strip().upper(),
        by_sources=sorted(((int(k), g.strip().upper()) for k, g in m.by_sources.items() if k.isdigit()), reverse=True),
        on_match=m.on_match,
        id_prefix=m.id_prefix,
        columns=dict(spec.columns),
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
    )


# --- reading the source file ------------------------------------------------------------------------


def read_source(path: Path, fmt: str = "auto") -> tuple[pd.DataFrame, str, int]:
    """The event table as strings, its format and the file line of its first data row."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: event file not found")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    if not text.strip():
        raise InputError(f"{path}: the file is empty")
    first = text.split("\n", 1)[0]
    sep = "\t" if "\t" in first else ","
    fields = next(csv.reader([first], delimiter=sep))
    headerless = fields and fields[0].strip().isdigit() and len(fields) in (57, 58, 61)
    if fmt not in FORMATS:
        raise InputError(f"--format: '{fmt}' is not one of {allowed_list(FORMATS)}")
    try:
        if headerless:
            names = GDELT2_COLUMNS if len(fields) == 61 else GDELT1_COLUMNS[: len(fields)]
            df = pd.read_csv(
                io.StringIO(text), sep=sep, header=None, names=names, dtype=str, keep_default_na=False, quoting=3
            )
            return df, "gdelt", 1
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as e:
        raise InputError(f"{path}: not a readable CSV/TSV table: {e}") from None
    df.columns = [str(c).strip() for c in df.columns]
    if fmt == "auto":
        cols = {_key(c) for c in df.columns}
        if {"globaleventid", "sqldate"} & cols:
            fmt = "gdelt"
        elif "cameocode" in cols and "sourcecountry" in cols:
            fmt = "icews"
        elif "eventtype" in cols and ({"quadcode", "recipientcountry", "recipientname"} & cols):
            fmt = "polecat"
        else:
            fmt = "generic"
    return df, fmt, 2


def _key(name: str) -> str:
    return re.sub(r"[\s_]+", "", str(name)).casefold()


def resolve_columns(df: pd.DataFrame, fmt: str, overrides: dict[str, str]) -> dict[str, list[str]]:
    """For each field, the columns of ``df`` that carry it (in order of preference)."""
    by_key = {_key(c): c for c in df.columns}
    out: dict[str, list[str]] = {}
    for f in FIELDS:
        if f in overrides:
            col = overrides[f]
            if col not in df.columns:
                raise InputError(
                    f"mapping file [columns].{f} names column '{col}', which the event file does not have"
                    f"{did_you_mean(col, df.columns)}; its columns: {allowed_list(df.columns)}"
                )
            out[f] = [col]
            continue
        out[f] = [by_key[_key(a)] for a in ALIASES[fmt].get(f, ()) if _key(a) in by_key]
    missing = [f for f in ("event_date", "source_actor", "target_actor") if not out[f]]
    if missing:
        raise InputError(
            f"cannot find the {', '.join(missing)} column(s) of this {fmt} file; name them in the mapping "
            f'file\'s [columns] table (e.g. event_date = "Date"); its columns: {allowed_list(df.columns)}'
        )
    if not (out["quad_class"] or out["event_code"] or out["event_type"] or out["goldstein"]):
        raise InputError(
            "the event file has no quad class, CAMEO code, event type or Goldstein column, so no row can be "
            f"read as cooperative or conflictual; its columns: {allowed_list(df.columns)}"
        )
    return out


# --- mapping rows -----------------------------------------------------------------------------------


@dataclass
class Skipped:
    line: int
    reason: str
    detail: str
    source_id: str = ""
    matches: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


@dataclass
class ImportResult:
    study: str
    source_file: str
    format: str
    mapping_file: str
    into: str
    dry_run: bool
    n_rows: int
    imported: list[dict] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    written: bool = False
    report: str | None = None

    def to_dict(self) -> dict:
        reasons = Counter(s.reason for s in self.skipped)
        return {
            "study": self.study,
            "source_file": self.source_file,
            "format": self.format,
            "mapping_file": self.mapping_file,
            "into": self.into,
            "dry_run": self.dry_run,
            "n_rows": self.n_rows,
            "n_imported": len(self.imported),
            "n_corroborating": sum(1 for r in self.imported if r.get("origin_id")),
            "n_skipped": len(self.skipped),
            "reasons": dict(sorted(reasons.items())),
            "imported_ids": [r["id"] for r in self.imported],
            "skipped": [s.to_dict() for s in self.skipped],
            "written": self.written,
            "report": self.report,
        }


def _first(row: dict, cols: list[str]) -> str:
    for c in cols:
        v = str(row.get(c, "")).strip()
        if v:
            return v
    return ""


def _parse_date(text: str) -> dt.date | None:
    t = text.strip()
    for pattern, fmt in ((r"\d{14}", "%Y%m%d%H%M%S"), (r"\d{8}", "%Y%m%d"), (r"\d{4}-\d{2}-\d{2}", "%Y-%m-%d")):
        if re.fullmatch(pattern, t):
            try:
                return dt.datetime.strptime(t, fmt).date()
            except ValueError:
                return None
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[T ].*", t)
    if m:
        return _parse_date(m.group(1))
    return None


def _quad(value: str) -> int | None:
    v = _norm(value)
    if v in {"1", "2", "3", "4"}:
        return int(v)
    if re.fullmatch(r"[1-4]\.0", v):
        return int(v[0])
    return QUAD_LABELS.get(v)


def map_rows(
    df: pd.DataFrame,
    fmt: str,
    first_line: int,
    study: Study,
    mapping: Mapping,
    existing: pd.DataFrame,
    *,
    on_match: str,
    today: dt.date,
) -> tuple[list[dict], list[Skipped]]:
    """Map each source row to an observation, or to the reason it cannot be one."""
    cols = resolve_columns(df, fmt, mapping.columns)
    prefix = mapping.id_prefix or ID_PREFIX[fmt]
    existing_ids = set(existing["id"]) if len(existing) else set()
    seen: dict[tuple, str] = {}
    if len(existing):
        for r in existing.itertuples():
            seen.setdefault((r.event_date, r.counterpart, r.domain, r.outcome), r.id)
    new_ids: set[str] = set()
    imported: list[dict] = []
    skipped: list[Skipped] = []
    first_q, last_q = study.time.start, study.time.end
    actor_names = ", ".join(sorted(mapping.actor))

    for n, row in enumerate(df.to_dict("records")):
        line = first_line + n
        src_id = _first(row, cols["id"])

        def skip(reason: str, detail: str, matches: str | None = None, line=line, src_id=src_id) -> None:
            skipped.append(Skipped(line, reason, detail, src_id, matches))

        date_text = _first(row, cols["event_date"])
        event_date = _parse_date(date_text)
        if event_date is None:
            skip("bad_date", f"event date {date_text!r} is not a date (YYYYMMDD or YYYY-MM-DD)")
            continue
        report_text = _first(row, cols["report_date"])
        report_date = _parse_date(report_text) if report_text else None
        if report_text and report_date is None:
            skip("bad_date", f"report date {report_text!r} is not a date")
            continue
        if report_date is not None and report_date < event_date:
            skip("report_before_event", f"report date {report_date} is before the event date {event_date}")
            continue
        if event_date > today or (report_date is not None and report_date > today):
            skip("future", f"dated after today ({today})")
            continue
        q = event_date.year * 4 + (event_date.month - 1) // 3
        if not first_q <= q <= last_q:
            skip(
                "outside_window",
                f"event date {event_date} lies outside the study's window {quarter_label(first_q)}..{quarter_label(last_q)}",
            )
            continue

        sides = []
        for side in ("source_actor", "target_actor"):
            values = [str(row.get(c, "")).strip() for c in cols[side]]
            values = [v for v in values if v]
            is_actor = any(_norm(v) in mapping.actor for v in values)
            cp = next((mapping.counterparts[_norm(v)] for v in values if _norm(v) in mapping.counterparts), None)
            sides.append((values, is_actor, cp))
        (src_vals, src_actor, src_cp), (tgt_vals, tgt_actor, tgt_cp) = sides
        if src_actor and tgt_actor:
            skip("domestic", f"both sides are the study's actor ({actor_names})")
            continue
        if not (src_actor or tgt_actor):
            shown = " / ".join(filter(None, [src_vals[0] if src_vals else "", tgt_vals[0] if tgt_vals else ""]))
            skip("no_actor", f"neither side ({shown or 'empty'}) is the study's actor ({actor_names})")
            continue
        other_vals, counterpart = (tgt_vals, tgt_cp) if src_actor else (src_vals, src_cp)
        if counterpart is None:
            shown = ", ".join(repr(v) for v in other_vals) or "an empty actor"
            skip(
                "unknown_counterpart",
                f"the other side ({shown}) maps to no counterpart; add it to [counterparts] in {mapping.path.name}",
            )
            continue

        code = _first(row, cols["event_code"])
        code = code if code.isdigit() else ""
        quad_text = _first(row, cols["quad_class"])
        quad = _quad(quad_text) if quad_text else None
        if quad_text and quad is None:
            skip("bad_quad_class", f"quad class {quad_text!r} is not 1..4 or a quad class name")
            continue
        how = "quad class"
        event_type = _first(row, cols["event_type"])
        if quad is None and event_type:
            quad, how = mapping.type_quad.get(_norm(event_type)), f"event type {event_type}"
        if quad is None and code:
            quad, how = mapping.root_quad.get(code[:2]), f"CAMEO root code {code[:2]}"
        gold_text = _first(row, cols["goldstein"])
        goldstein = None
        if gold_text:
            try:
                goldstein = float(gold_text)
            except ValueError:
                skip("bad_goldstein", f"Goldstein score {gold_text!r} is not a number")
                continue
            if not -10 <= goldstein <= 10:
                skip("bad_goldstein", f"Goldstein score {goldstein:g} lies outside -10..10")
                continue
        if quad is not None and quad in mapping.quad_outcome:
            outcome = mapping.quad_outcome[quad]
        elif goldstein is not None and goldstein != 0:
            outcome, how = ("cooperative" if goldstein > 0 else "conflictual"), "Goldstein sign"
        elif goldstein == 0:
            skip(
                "neutral",
                "no quad class or event code, and a Goldstein score of 0: neither cooperative nor conflictual",
            )
            continue
        else:
            skip("no_outcome", "no quad class, event type, CAMEO code or Goldstein score to read the outcome from")
            continue
        if goldstein is not None and ((outcome == "cooperative") != (goldstein >= 0)) and goldstein != 0:
            skip(
                "sign_conflict",
                f"the {how} says {outcome} but the Goldstein score {goldstein:+g} has the other sign",
            )
            continue

        text = " ".join(str(row.get(c, "")) for c in cols["text"]).casefold()
        domain = next((d for k, d in mapping.keywords if k in text), None)
        if domain is None and code:
            domain = next((d for p, d in mapping.codes if code.startswith(p)), None)
        domain = domain or mapping.default_domain
        if domain is None:
            skip(
                "no_domain",
                f"no keyword of [domains.keywords] in the row's text and no [domains.codes] prefix of CAMEO code "
                f"{code or '(none)'}; add one, or set [domains].default in {mapping.path.name}",
            )
            continue

        grade = mapping.reliability
        n_sources = _first(row, cols["sources"])
        if n_sources.isdigit():
            grade = next((g for k, g in mapping.by_sources if int(n_sources) >= k), grade)

        if src_id and fmt == "icews":  # ICEWS event ids repeat; with the date they are unique
            src_id = f"{src_id}-{event_date:%Y%m%d}"
        ident = (
            f"{prefix}-{src_id}"
            if src_id
            else f"{prefix}-"
            + hashlib.sha1(
                "|".join([str(event_date), *src_vals, *tgt_vals, code, event_type, quad_text, gold_text]).encode()
            ).hexdigest()[:12]
        )
        if ident in existing_ids:
            skip("already_present", f"id {ident} is already in the observation file", matches=ident)
            continue
        if ident in new_ids:
            skip("duplicate_id", f"id {ident} occurs earlier in this import")
            continue
        key = (pd.Timestamp(event_date), counterpart, domain, outcome == "cooperative")
        origin = ""
        if key in seen:
            if on_match == "skip":
                skip(
                    "matches_existing",
                    f"same date, counterpart, domain and outcome as {seen[key]} (on_match = 'skip'; "
                    "'corroborate' would add it as a report of that event)",
                    matches=seen[key],
                )
                continue
            if on_match == "corroborate":
                origin = seen[key]
        else:
            seen[key] = ident
        root = CAMEO_ROOTS.get(code[:2], "")
        who = f"{(src_vals or ['?'])[0]} -> {(tgt_vals or ['?'])[0]}"
        what = f"CAMEO {code} ({root})" if code else (f"{event_type}" if event_type else f"quad class {quad}")
        url = next((str(row.get(c, "")) for c in cols["text"] if str(row.get(c, "")).startswith("http")), "")
        publisher = _first(row, cols["publisher"])
        new_ids.add(ident)
        imported.append(
            {
                "id": ident,
                "event_date": event_date.isoformat(),
                "report_date": report_date.isoformat() if report_date else "",
                "counterpart": counterpart,
                "domain": domain,
                "outcome": outcome,
                "intensity": "" if goldstein is None else f"{goldstein:g}",
                "reliability": grade,
                "description": f"{fmt.upper()} coded event {src_id or ident}: {who}, {what}".strip(),
                "source": " ".join(filter(None, [publisher or fmt.upper(), url])),
                "origin_id": origin,
            }
        )
    return imported, skipped


# --- writing ------------------------------------------------------------------------------------------


def _existing(study: Study, path: Path, today: dt.date) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=["id", "event_date", "counterpart", "domain", "outcome"])
    obs = load_observations(study, path, today=today)
    t = obs.table
    return pd.DataFrame(
        {
            "id": t["id"],
            "event_date": t["event_date"],
            "counterpart": t["counterpart"],
            "domain": t["domain"],
            "outcome": t["cooperative"],
        }
    )


def _combined_text(path: Path, rows: list[dict]) -> str:
    """The observation file with ``rows`` appended (its header extended if a column is missing)."""
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        header = list(OBSERVATION_COLUMNS)
        old_rows: list[list[str]] = []
        text = None
    else:
        text = path.read_text(encoding="utf-8-sig")
        reader = list(csv.reader(io.StringIO(text)))
        header, old_rows = [h.strip() for h in reader[0]], reader[1:]
    needed = [c for c in OBSERVATION_COLUMNS if c not in header and any(r.get(c) for r in rows)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if text is not None and not needed:
        # Append to the file as it is, in its own column order.
        out.write(text if text.endswith("\n") else text + "\n")
        for r in rows:
            writer.writerow([r.get(c, "") for c in header])
        return out.getvalue()
    header = header + needed
    writer.writerow(header)
    for r in old_rows:
        writer.writerow(r + [""] * (len(header) - len(r)))
    for r in rows:
        writer.writerow([r.get(c, "") for c in header])
    return out.getvalue()


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
) -> ImportResult:
    """Map a coded event file into the study's observations; append them after validation."""
    today = today or dt.date.today()
    study = load_study(study_path)
    mapping_file = Path(mapping_path) if mapping_path else study.observations_path.parent / DEFAULT_MAPPING
    mapping = load_mapping(mapping_file, study)
    policy = on_match or mapping.on_match
    if policy not in ("skip", "corroborate", "keep"):
        raise InputError(f"--on-match: '{policy}' is not one of 'skip', 'corroborate', 'keep'")
    target = Path(into) if into else study.observations_path
    df, detected, first_line = read_source(Path(source), fmt)
    fmt = detected if fmt == "auto" else fmt
    existing = _existing(study, target, today)
    rows, skipped = map_rows(df, fmt, first_line, study, mapping, existing, on_match=policy, today=today)
    result = ImportResult(
        study=study.name,
        source_file=str(Path(source).resolve()),
        format=fmt,
        mapping_file=str(mapping.path.resolve()),
        into=str(target.resolve()),
        dry_run=dry_run,
        n_rows=len(df),
        imported=rows,
        skipped=skipped,
    )
    if rows:
        tmp = target.with_name(f".{target.name}.import-{os.getpid()}")
        tmp.write_text(_combined_text(target, rows), encoding="utf-8")
        try:
            load_observations(study, tmp, today=today)  # the whole file, old rows and new
        except ObservationError as e:
            tmp.unlink(missing_ok=True)
            raise ObservationError(
                [p.replace(tmp.name, target.name) for p in e.problems],
                heading=f"{target}: the file with the imported rows would not validate, so nothing was written",
            ) from None
        if dry_run:
            tmp.unlink()
        else:
            fsync(tmp)
            os.replace(tmp, target)
            fsync(target.parent)
            result.written = True
    if write_report and not dry_run:
        root = runs_root or study.runs_path or default_root()
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        report = Path(root) / study.name / "imports" / f"{stamp}-{Path(source).stem}.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        result.report = str(report)
        atomic_write_text(report, dumps(result.to_dict()) + "\n")
    return result


def render(result: ImportResult, max_lines: int = 30) -> str:
    d = result.to_dict()
    lines = [
        f"{Path(d['source_file']).name} ({d['format']}): {d['n_rows']} rows; {d['n_imported']} mapped into "
        f"{Path(d['into']).name}"
        + (f" ({d['n_corroborating']} as corroborating reports)" if d["n_corroborating"] else ""),
    ]
    if d["dry_run"]:
        lines.append("dry run: nothing written")
    elif d["written"]:
        lines.append(f"appended {d['n_imported']} observations to {d['into']}")
    if d["n_skipped"]:
        lines.append(f"{d['n_skipped']} rows not imported:")
        lines += [f"  {reason}: {n}" for reason, n in d["reasons"].items()]
        for s in result.skipped[:max_lines]:
            lines.append(f"  line {s.line}: {s.reason}: {s.detail}")
        if len(result.skipped) > max_lines:
            lines.append(f"  ... and {len(result.skipped) - max_lines} more (all listed in --json and the report)")
    if d["report"]:
        lines.append(f"report: {d['report']}")
    return "\n".join(lines)
