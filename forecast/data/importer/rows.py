"""Each row of an event file mapped to an observation of the study, or to the reason it cannot be.

A row passes, in this order: its dates (a date, not after today, inside the study's window), its
actors (exactly one side the study's actor, the other a counterpart), its outcome (quad class,
else event type, else CAMEO root code, else the Goldstein sign; a contradicting sign is reported),
its domain (keyword, else CAMEO prefix, else the default), a check for control characters in
what it contributes and for fields longer than an observation's, and its identity (not already in the file, not twice in this import, not a
second record of an event already there unless ``on_match`` says otherwise). The first step that
fails names the row's reason; nothing is dropped silently. Who acted (``initiator``) is CAMEO's
source actor: the study's ``actor`` or the ``counterpart``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field

import pandas as pd

from forecast.data.csvsafe import spreadsheet_safe
from forecast.data.importer.limits import MAX_FIELD_CHARS, clip, control_character, echo
from forecast.data.importer.mapping import Mapping, norm
from forecast.data.importer.sources import FIELDS, ID_PREFIX, Source, resolve_columns
from forecast.spec.study import Study, quarter_label

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
# Observation columns of free text that a spreadsheet could read as a formula (see forecast.data.csvsafe).
TEXT_COLUMNS = ("id", "description", "source")


@dataclass(frozen=True)
class Skipped:
    """A row not imported: its line, a reason code, a sentence for a person."""

    line: int
    reason: str
    detail: str
    source_id: str = ""
    matches: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


@dataclass(frozen=True)
class Mapped:
    """What became of an event file's rows."""

    n_rows: int
    imported: list[dict] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class _Skip(Exception):
    """Raised by a step of the mapping: the row is not imported, for this reason."""

    def __init__(self, reason: str, detail: str, matches: str | None = None):
        self.reason, self.detail, self.matches = reason, detail, matches


def parse_date(text: str) -> dt.date | None:
    """YYYYMMDD, YYYYMMDDhhmmss, YYYY-MM-DD (with or without a time after it), or None."""
    t = text.strip()
    for pattern, fmt in ((r"\d{14}", "%Y%m%d%H%M%S"), (r"\d{8}", "%Y%m%d"), (r"\d{4}-\d{2}-\d{2}", "%Y-%m-%d")):
        if re.fullmatch(pattern, t):
            try:
                return dt.datetime.strptime(t, fmt).date()
            except ValueError:
                return None
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[T ].*", t)
    if m:
        return parse_date(m.group(1))
    return None


def parse_quad(value: str) -> int | None:
    """A quad class from '1'..'4', '3.0' or a label like 'verbal conflict', or None."""
    v = norm(value)
    if v in {"1", "2", "3", "4"}:
        return int(v)
    if re.fullmatch(r"[1-4]\.0", v):
        return int(v[0])
    return QUAD_LABELS.get(v)


@dataclass(frozen=True)
class _Outcome:
    outcome: str
    quad: int | None
    quad_text: str
    goldstein: float | None
    gold_text: str
    code: str
    event_type: str


class _Row:
    """One source row with the columns of each field resolved."""

    def __init__(self, values: list[str], cols: dict[str, list[int]]):
        self.values, self.cols = values, cols

    def first(self, f: str) -> str:
        for i in self.cols[f]:
            v = self.values[i].strip()
            if v:
                return v
        return ""

    def all(self, f: str) -> list[str]:
        return [self.values[i] for i in self.cols[f]]


class RowMapper:
    """Maps rows one by one, remembering the ids and events seen so far (in the file and the import)."""

    def __init__(
        self,
        fmt: str,
        columns: tuple[str, ...],
        cols: dict[str, list[int]],
        study: Study,
        mapping: Mapping,
        existing: pd.DataFrame,
        *,
        on_match: str,
        today: dt.date,
    ):
        self.fmt, self.columns, self.cols = fmt, columns, cols
        self.mapping, self.on_match, self.today = mapping, on_match, today
        self.prefix = mapping.id_prefix or ID_PREFIX[fmt]
        self.first_q, self.last_q = study.time.start, study.time.end
        self.actor_names = ", ".join(sorted(mapping.actor))
        self.existing_ids = set(existing["id"]) if len(existing) else set()
        self.seen: dict[tuple, str] = {}
        if len(existing):
            for r in existing.itertuples():
                self.seen.setdefault((r.event_date, r.counterpart, r.domain, r.outcome), r.id)
        self.new_ids: set[str] = set()
        self.used = sorted({i for f in FIELDS for i in cols[f]})

    # --- the steps, in order --------------------------------------------------------------------

    def dates(self, row: _Row) -> tuple[dt.date, dt.date | None]:
        date_text = row.first("event_date")
        event_date = parse_date(date_text)
        if event_date is None:
            raise _Skip("bad_date", f"event date {echo(date_text)} is not a date (YYYYMMDD or YYYY-MM-DD)")
        report_text = row.first("report_date")
        report_date = parse_date(report_text) if report_text else None
        if report_text and report_date is None:
            raise _Skip("bad_date", f"report date {echo(report_text)} is not a date")
        if report_date is not None and report_date < event_date:
            raise _Skip("report_before_event", f"report date {report_date} is before the event date {event_date}")
        if event_date > self.today or (report_date is not None and report_date > self.today):
            raise _Skip("future", f"dated after today ({self.today})")
        q = event_date.year * 4 + (event_date.month - 1) // 3
        if not self.first_q <= q <= self.last_q:
            raise _Skip(
                "outside_window",
                f"event date {event_date} lies outside the study's window "
                f"{quarter_label(self.first_q)}..{quarter_label(self.last_q)}",
            )
        return event_date, report_date

    def sides(self, row: _Row) -> tuple[list[str], list[str], str, str]:
        """The source and target actors' values, the counterpart on the side that is not the actor,
        and who acted (CAMEO's source actor): the study's ``actor`` or the ``counterpart``."""
        m = self.mapping
        sides = []
        for side in ("source_actor", "target_actor"):
            values = [v.strip() for v in row.all(side)]
            values = [v for v in values if v]
            is_actor = any(norm(v) in m.actor for v in values)
            cp = next((m.counterparts[norm(v)] for v in values if norm(v) in m.counterparts), None)
            sides.append((values, is_actor, cp))
        (src_vals, src_actor, src_cp), (tgt_vals, tgt_actor, tgt_cp) = sides
        if src_actor and tgt_actor:
            raise _Skip("domestic", f"both sides are the study's actor ({self.actor_names})")
        if not (src_actor or tgt_actor):
            shown = " / ".join(
                filter(None, [clip(src_vals[0]) if src_vals else "", clip(tgt_vals[0]) if tgt_vals else ""])
            )
            raise _Skip("no_actor", f"neither side ({shown or 'empty'}) is the study's actor ({self.actor_names})")
        other_vals, counterpart = (tgt_vals, tgt_cp) if src_actor else (src_vals, src_cp)
        if counterpart is None:
            shown = ", ".join(echo(v) for v in other_vals) or "an empty actor"
            raise _Skip(
                "unknown_counterpart",
                f"the other side ({shown}) maps to no counterpart; add it to [counterparts] in {m.path.name}",
            )
        return src_vals, tgt_vals, counterpart, "actor" if src_actor else "counterpart"

    def outcome(self, row: _Row) -> _Outcome:
        m = self.mapping
        code = row.first("event_code")
        code = code if code.isdigit() else ""
        quad_text = row.first("quad_class")
        quad = parse_quad(quad_text) if quad_text else None
        if quad_text and quad is None:
            raise _Skip("bad_quad_class", f"quad class {echo(quad_text)} is not 1..4 or a quad class name")
        how = "quad class"
        event_type = row.first("event_type")
        if quad is None and event_type:
            quad, how = m.type_quad.get(norm(event_type)), f"event type {clip(event_type)}"
        if quad is None and code:
            quad, how = m.root_quad.get(code[:2]), f"CAMEO root code {code[:2]}"
        gold_text = row.first("goldstein")
        goldstein = None
        if gold_text:
            try:
                goldstein = float(gold_text)
            except ValueError:
                raise _Skip("bad_goldstein", f"Goldstein score {echo(gold_text)} is not a number") from None
            if not -10 <= goldstein <= 10:
                raise _Skip("bad_goldstein", f"Goldstein score {goldstein:g} lies outside -10..10")
        if quad is not None and quad in m.quad_outcome:
            outcome = m.quad_outcome[quad]
        elif goldstein is not None and goldstein != 0:
            outcome, how = ("cooperative" if goldstein > 0 else "conflictual"), "Goldstein sign"
        elif goldstein == 0:
            raise _Skip(
                "neutral",
                "no quad class or event code, and a Goldstein score of 0: neither cooperative nor conflictual",
            )
        else:
            raise _Skip(
                "no_outcome", "no quad class, event type, CAMEO code or Goldstein score to read the outcome from"
            )
        if goldstein is not None and ((outcome == "cooperative") != (goldstein >= 0)) and goldstein != 0:
            raise _Skip(
                "sign_conflict", f"the {how} says {outcome} but the Goldstein score {goldstein:+g} has the other sign"
            )
        return _Outcome(outcome, quad, quad_text, goldstein, gold_text, code, event_type)

    def domain(self, row: _Row, code: str) -> str:
        m = self.mapping
        text = " ".join(row.all("text")).casefold()
        domain = next((d for k, d in m.keywords if k in text), None)
        if domain is None and code:
            domain = next((d for p, d in m.codes if code.startswith(p)), None)
        domain = domain or m.default_domain
        if domain is None:
            raise _Skip(
                "no_domain",
                f"no keyword of [domains.keywords] in the row's text and no [domains.codes] prefix of CAMEO code "
                f"{code or '(none)'}; add one, or set [domains].default in {m.path.name}",
            )
        return domain

    def plain_text(self, row: _Row) -> None:
        """Refuse a row whose used fields hold NUL or another control character.

        TAB and line breaks are allowed (inside quotes) where they end up in free text, not in
        the event id, which becomes part of the observation's id.
        """
        for i in self.used:
            is_id = i in self.cols["id"]
            where = control_character(row.values[i].strip() if is_id else row.values[i], line_breaks=not is_id)
            if where is not None:
                raise _Skip(
                    "control_character",
                    f"column {echo(self.columns[i], 40)} holds a control character ({where}); "
                    + ("an event id may hold none" if is_id else "only TAB and line breaks are allowed in text"),
                )

    def fits(self, src_id: str, description: str, source: str) -> None:
        """Refuse a row whose id, description or source would be longer than an observation's field may be."""
        for column, text in (("id", src_id), ("description", description), ("source", source)):
            if len(text) > MAX_FIELD_CHARS:
                raise _Skip(
                    "too_long",
                    f"its {column} would be {len(text):,} characters long; an observation's field holds at most "
                    f"{MAX_FIELD_CHARS:,}",
                )

    def identity(self, src_id: str, event_date: dt.date, src_vals: list[str], tgt_vals: list[str], o: _Outcome) -> str:
        """The observation's id: the prefix and the source's event id (or a hash of the row without one)."""
        if src_id:
            ident = f"{self.prefix}-{src_id}"
        else:
            parts = [str(event_date), *src_vals, *tgt_vals, o.code, o.event_type, o.quad_text, o.gold_text]
            ident = f"{self.prefix}-" + hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]
        ident = spreadsheet_safe(ident)
        if ident in self.existing_ids:
            raise _Skip("already_present", f"id {clip(ident)} is already in the observation file", matches=ident)
        if ident in self.new_ids:
            raise _Skip("duplicate_id", f"id {clip(ident)} occurs earlier in this import")
        return ident

    def origin(self, ident: str, event_date: dt.date, counterpart: str, domain: str, outcome: str) -> str:
        """'' for a new event, else the id it corroborates; raises for a second record to skip."""
        key = (pd.Timestamp(event_date), counterpart, domain, outcome == "cooperative")
        if key not in self.seen:
            self.seen[key] = ident
            return ""
        if self.on_match == "skip":
            raise _Skip(
                "matches_existing",
                f"same date, counterpart, domain and outcome as {self.seen[key]} (on_match = 'skip'; "
                "'corroborate' would add it as a report of that event)",
                matches=self.seen[key],
            )
        return self.seen[key] if self.on_match == "corroborate" else ""

    # --- one row --------------------------------------------------------------------------------

    def map(self, row: _Row) -> dict:
        """The observation for ``row``; raises _Skip with the reason it has none."""
        event_date, report_date = self.dates(row)
        src_vals, tgt_vals, counterpart, initiator = self.sides(row)
        o = self.outcome(row)
        domain = self.domain(row, o.code)
        self.plain_text(row)
        src_id = row.first("id")
        if src_id and self.fmt == "icews":  # ICEWS event ids repeat; with the date they are unique
            src_id = f"{src_id}-{event_date:%Y%m%d}"
        root = CAMEO_ROOTS.get(o.code[:2], "")
        who = f"{(src_vals or ['?'])[0]} -> {(tgt_vals or ['?'])[0]}"
        what = f"CAMEO {o.code} ({root})" if o.code else (o.event_type or f"quad class {o.quad}")
        url = next((v for v in row.all("text") if v.startswith("http")), "")
        source = " ".join(filter(None, [row.first("publisher") or self.fmt.upper(), url]))
        self.fits(src_id, f"{self.fmt.upper()} coded event {src_id}: {who}, {what}", source)
        ident = self.identity(src_id, event_date, src_vals, tgt_vals, o)
        origin = self.origin(ident, event_date, counterpart, domain, o.outcome)
        grade = self.mapping.reliability
        n_sources = row.first("sources")
        if n_sources.isdigit():
            grade = next((g for k, g in self.mapping.by_sources if int(n_sources) >= k), grade)
        self.new_ids.add(ident)
        obs = {
            "id": ident,
            "event_date": event_date.isoformat(),
            "report_date": report_date.isoformat() if report_date else "",
            "counterpart": counterpart,
            "domain": domain,
            "outcome": o.outcome,
            "initiator": initiator,
            "intensity": "" if o.goldstein is None else f"{o.goldstein:g}",
            "reliability": grade,
            "description": f"{self.fmt.upper()} coded event {src_id or ident}: {who}, {what}".strip(),
            "source": source,
            "origin_id": origin,
        }
        for c in TEXT_COLUMNS:
            obs[c] = spreadsheet_safe(obs[c])
        return obs


def map_rows(
    source: Source,
    fmt: str,
    study: Study,
    mapping: Mapping,
    existing: pd.DataFrame,
    *,
    on_match: str,
    today: dt.date,
) -> Mapped:
    """Map each row of ``source`` (read as ``fmt``) to an observation, or to the reason it cannot be one.

    ``existing`` holds the observation file's id, event_date, counterpart, domain and outcome
    (cooperative) columns, for duplicates and corroboration.
    """
    cols = resolve_columns(source.columns, fmt, mapping.columns)
    mapper = RowMapper(fmt, source.columns, cols, study, mapping, existing, on_match=on_match, today=today)
    imported: list[dict] = []
    skipped: list[Skipped] = []
    n_rows = 0
    for line, values in source.records():
        n_rows += 1
        row = _Row(values, cols)
        try:
            imported.append(mapper.map(row))
        except _Skip as s:
            skipped.append(Skipped(line, s.reason, s.detail, clip(row.first("id")), s.matches))
    return Mapped(n_rows=n_rows, imported=imported, skipped=skipped)
