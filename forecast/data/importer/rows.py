"""Each row of an event file mapped to an observation of the study, or to the reason it cannot be.

A line that names no code or name of the study's actor is dropped by the reader's pre-filter and
counted (reason ``no_actor``), never parsed. A parsed row passes, in this order: its dates (a
date, not after today, inside the study's window and ``--since``/``--until``), its actors
(exactly one side the study's actor, the other a counterpart; each side's value from its columns
in the mapping's order, the first non-empty one), the noise filters (minimum sources and
mentions, blocked sites), its outcome (quad class, else PLOVER event type, else CAMEO root code,
else the Goldstein sign; a quad class that is not its CAMEO root's is reported; neutral rows are
reported as ``neutral`` unless the mapping keeps them), its domain (a keyword as whole words of
the text or the URL's path, else a POLECAT context, mode or event type, else the CAMEO prefix,
else the default), a check for control characters and for fields longer than an observation's,
and its identity (not already in the file, not twice in this import). The rows that pass are then
clustered into events (``forecast.data.importer.cluster``). The first step that fails names the
row's reason; nothing is dropped silently. Who acted (``initiator``): ``actor`` when the study's
actor is the source (CAMEO's Actor1, PLOVER's actor), ``counterpart`` when it is the target.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from urllib.parse import unquote, urlsplit

import pandas as pd

from forecast.data.csvsafe import spreadsheet_safe
from forecast.data.importer.cluster import Candidate, Cluster, cluster, match_existing
from forecast.data.importer.limits import MAX_FIELD_CHARS, clip, control_character, echo
from forecast.data.importer.mapping import Mapping, norm, tokens
from forecast.data.importer.sources import FIELDS, ID_PREFIX, Source, is_code_column, resolve_columns
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
    n_prefiltered: int = 0  # rows the pre-filter dropped unparsed (reason no_actor, not listed one by one)
    n_events: int = 0  # distinct events among the imported rows (clusters)
    columns: dict[str, list[str]] = field(default_factory=dict)  # the columns read for each field


class _Skip(Exception):
    """Raised by a step of the mapping: the row is not imported, for this reason."""

    def __init__(self, reason: str, detail: str, matches: str | None = None):
        self.reason, self.detail, self.matches = reason, detail, matches


def parse_date(text: str) -> dt.date | None:
    """YYYYMMDD, YYYYMMDDhhmmss, YYYY-MM-DD (with or without a time after it), or None."""
    t = text.strip()
    try:
        if len(t) in (8, 14) and t.isdigit():
            if len(t) == 14 and not (int(t[8:10]) < 24 and int(t[10:12]) < 60 and int(t[12:14]) < 62):
                return None
            return dt.date(int(t[:4]), int(t[4:6]), int(t[6:8]))
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t[:10]) and (len(t) == 10 or t[10] in "T "):
            return dt.date(int(t[:4]), int(t[5:7]), int(t[8:10]))
    except ValueError:
        return None
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


# Reasons that say a row does not concern the study's actor (the text report lists the others by row).
NOT_THE_ACTOR = ("no_actor",)


class RowMapper:
    """Maps rows one by one, remembering the ids seen so far (in the file and the import)."""

    def __init__(
        self,
        fmt: str,
        columns: tuple[str, ...],
        cols: dict[str, list[int]],
        study: Study,
        mapping: Mapping,
        existing: pd.DataFrame,
        *,
        today: dt.date,
        since: dt.date | None = None,
        until: dt.date | None = None,
    ):
        self.fmt, self.columns, self.cols = fmt, columns, cols
        self.study, self.mapping, self.today = study, mapping, today
        self.since, self.until = since, until
        self.prefix = mapping.id_prefix or ID_PREFIX[fmt]
        self.first_q, self.last_q = study.time.start, study.time.end
        self.actor_names = ", ".join(sorted(mapping.actor))
        self.existing_ids = set(existing["id"]) if len(existing) else set()
        self.new_ids: set[str] = set()
        self.used = sorted({i for f in FIELDS for i in cols[f]})
        self.code_cols = {i for i, c in enumerate(columns) if is_code_column(c)}

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
        if self.since is not None and event_date < self.since:
            raise _Skip("outside_dates", f"event date {event_date} is before --since {self.since}")
        if self.until is not None and event_date > self.until:
            raise _Skip("outside_dates", f"event date {event_date} is after --until {self.until}")
        q = event_date.year * 4 + (event_date.month - 1) // 3
        if not self.first_q <= q <= self.last_q:
            raise _Skip(
                "outside_window",
                f"event date {event_date} lies outside the study's window "
                f"{quarter_label(self.first_q)}..{quarter_label(self.last_q)}",
            )
        return event_date, report_date

    def _side(self, row: _Row, side: str) -> tuple[str, str, bool, str | None]:
        """The side's value (its first non-empty column, the fallbacks after), the column, whether
        it is the study's actor and the counterpart it names."""
        m = self.mapping
        for i in self.cols[side]:
            v = row.values[i].strip()
            if not v:
                continue
            n = norm(v)
            code = i in self.code_cols
            is_actor = (
                n in m.actor_names or v in m.actor_codes or (code and any(_code_match(v, c) for c in m.actor_codes))
            )
            cp = m.counterparts.get(n)
            if cp is None and code:
                cp = next((p for c, p in m.counterpart_codes if _code_match(v, c)), None)
            return v, self.columns[i], is_actor, cp
        return "", "", False, None

    def sides(self, row: _Row) -> tuple[str, str, str, str]:
        """The source and target actors' values, the counterpart on the side that is not the actor,
        and who acted: ``actor`` when the study's actor is the source, else ``counterpart``."""
        (src, src_col, src_actor, src_cp) = self._side(row, "source_actor")
        (tgt, tgt_col, tgt_actor, tgt_cp) = self._side(row, "target_actor")
        if src_actor and tgt_actor:
            raise _Skip("domestic", f"both sides are the study's actor ({self.actor_names})")
        if not (src_actor or tgt_actor):
            shown = " / ".join(filter(None, [clip(src), clip(tgt)]))
            raise _Skip("no_actor", f"neither side ({shown or 'empty'}) is the study's actor ({self.actor_names})")
        other, col, counterpart = (tgt, tgt_col, tgt_cp) if src_actor else (src, src_col, src_cp)
        if counterpart is None:
            shown = f"{echo(other)} in column {echo(col, 40)}" if other else "an empty actor"
            raise _Skip(
                "unknown_counterpart",
                f"the other side ({shown}) maps to no counterpart; add it to [counterparts] in {self.mapping.path.name}",
            )
        return src, tgt, counterpart, "actor" if src_actor else "counterpart"

    def noise(self, row: _Row) -> tuple[int | None, int | None, bool | None, str]:
        """Sources, mentions, root-event flag and site of the row; raises for a row the filters drop."""
        m = self.mapping
        n_sources = _count(row.first("sources"))
        n_mentions = _count(row.first("mentions"))
        root_text = row.first("root_event")
        is_root = None if not root_text else root_text.strip() in ("1", "1.0", "true", "True", "TRUE")
        url = next((v.strip() for v in row.all("url") if v.strip().startswith(("http://", "https://"))), "")
        site = _host(url) if url else norm(row.first("publisher"))
        if n_sources is not None and n_sources < m.min_sources:
            raise _Skip("few_sources", f"{n_sources} source(s); [filters] min_sources = {m.min_sources}")
        if n_mentions is not None and n_mentions < m.min_mentions:
            raise _Skip("few_mentions", f"{n_mentions} mention(s); [filters] min_mentions = {m.min_mentions}")
        if url and any(site == b or site.endswith("." + b) for b in m.blocked_sites):
            raise _Skip("blocked_site", f"from {echo(site)}, which [filters] blocked_sites lists")
        return n_sources, n_mentions, is_root, site

    def outcome(self, row: _Row) -> _Outcome:
        m = self.mapping
        code = row.first("event_code")
        code = code if code.isdigit() else ""
        quad_text = row.first("quad_class")
        quad = parse_quad(quad_text) if quad_text else None
        if quad_text and quad is None:
            raise _Skip("bad_quad_class", f"quad class {echo(quad_text)} is not 1..4 or a quad class name")
        root_q = m.root_quad.get(code[:2]) if code else None
        if quad is not None and root_q is not None and quad != root_q:
            raise _Skip(
                "quad_mismatch",
                f"quad class {quad}, but CAMEO code {code}'s root {code[:2]} has quad class {root_q} "
                "(GDELT assigns the quad class by the root code): a shifted or damaged row?",
            )
        event_type = row.first("event_type")
        if quad is None and event_type:
            quad = m.type_quad.get(norm(event_type))
            if quad is None:
                raise _Skip(
                    "unknown_event_type",
                    f"event type {echo(event_type)} is not in [outcome] event_types of {m.path.name}",
                )
        if quad is None and root_q is not None:
            quad = root_q
        gold_text = row.first("goldstein")
        goldstein = None
        if gold_text:
            try:
                goldstein = float(gold_text)
            except ValueError:
                raise _Skip("bad_goldstein", f"Goldstein score {echo(gold_text)} is not a number") from None
            if not -10 <= goldstein <= 10:
                raise _Skip("bad_goldstein", f"Goldstein score {goldstein:g} lies outside -10..10")
        if m.neutral == "skip":
            if code and code[:2] in m.neutral_roots:
                raise _Skip(
                    "neutral",
                    f"CAMEO {code} ({CAMEO_ROOTS.get(code[:2], '?')}) is neither cooperation nor conflict "
                    "([outcome] neutral_roots; [mapping] neutral = 'keep' imports it by its quad class)",
                )
            if goldstein == 0 and (m.neutral_goldstein_zero or quad is None):
                raise _Skip(
                    "neutral",
                    "a Goldstein score of 0: neither cooperative nor conflictual "
                    "([mapping] neutral = 'keep' imports it by its quad class)",
                )
        if quad is not None and quad in m.quad_outcome:
            outcome = m.quad_outcome[quad]
        elif goldstein is not None and goldstein != 0:
            outcome = "cooperative" if goldstein > 0 else "conflictual"
        elif goldstein == 0:
            raise _Skip(
                "neutral",
                "no quad class or event code, and a Goldstein score of 0: neither cooperative nor conflictual",
            )
        else:
            raise _Skip(
                "no_outcome", "no quad class, event type, CAMEO code or Goldstein score to read the outcome from"
            )
        return _Outcome(outcome, quad, quad_text, goldstein, gold_text, code, event_type)

    def domain(self, row: _Row, code: str, event_type: str) -> str:
        m = self.mapping
        text = " ".join([*row.all("text"), *(_url_words(u) for u in row.all("url"))])
        words = tokens(text) if m.keywords else ""
        domain = next((d for k, d in m.keywords if k in words), None)
        if domain is None and m.contexts:
            found = [norm(c) for v in row.all("context") for c in re.split(r"[;,|]", v) if c.strip()]
            domain = next((m.contexts[c] for c in found if c in m.contexts), None)
        if domain is None and m.modes:
            found = [norm(v) for v in row.all("mode") if v.strip()]
            domain = next((m.modes[c] for c in found if c in m.modes), None)
        if domain is None and event_type:
            domain = m.type_domains.get(norm(event_type))
        if domain is None and code:
            domain = next((d for p, d in m.codes if code.startswith(p)), None)
        domain = domain or m.default_domain
        if domain is None:
            raise _Skip(
                "no_domain",
                f"no keyword of [domains.keywords] in the row's text, no context, mode or event type of [domains] "
                f"and no [domains.codes] prefix of CAMEO code {code or '(none)'}; add one, or set [domains].default "
                f"in {m.path.name}",
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

    def identity(self, src_id: str, event_date: dt.date, src: str, tgt: str, o: _Outcome) -> str:
        """The observation's id: the prefix and the source's event id (or a hash of the row without one)."""
        if src_id:
            ident = f"{self.prefix}-{src_id}"
        else:
            parts = [str(event_date), src, tgt, o.code, o.event_type, o.quad_text, o.gold_text]
            ident = f"{self.prefix}-" + hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]
        ident = spreadsheet_safe(ident)
        if ident in self.existing_ids:
            raise _Skip("already_present", f"id {clip(ident)} is already in the observation file", matches=ident)
        if ident in self.new_ids:
            raise _Skip("duplicate_id", f"id {clip(ident)} occurs earlier in this import")
        return ident

    # --- one row --------------------------------------------------------------------------------

    def map(self, line: int, row: _Row) -> Candidate:
        """The candidate observation for ``row``; raises _Skip with the reason it has none."""
        event_date, report_date = self.dates(row)
        src, tgt, counterpart, initiator = self.sides(row)
        n_sources, n_mentions, is_root, site = self.noise(row)
        o = self.outcome(row)
        domain = self.domain(row, o.code, o.event_type)
        self.plain_text(row)
        src_id = row.first("id")
        if src_id and self.fmt == "icews":  # ICEWS event ids repeat; with the date they are unique
            src_id = f"{src_id}-{event_date:%Y%m%d}"
        root = CAMEO_ROOTS.get(o.code[:2], "")
        who = f"{src or '?'} -> {tgt or '?'}"
        what = f"CAMEO {o.code} ({root})" if o.code else (o.event_type or f"quad class {o.quad}")
        url = next((v.strip() for v in row.all("url") if v.strip().startswith("http")), "")
        source = " ".join(filter(None, [row.first("publisher") or self.fmt.upper(), url]))
        self.fits(src_id, f"{self.fmt.upper()} coded event {src_id}: {who}, {what}", source)
        ident = self.identity(src_id, event_date, src, tgt, o)
        self.new_ids.add(ident)
        intensity = "" if o.goldstein is None else f"{o.goldstein:g}"
        if o.goldstein is not None and o.goldstein != 0 and (o.goldstein > 0) != (o.outcome == "cooperative"):
            # GDELT scores some codes against their quad class by design (012: quad 1, -0.4): the
            # quad class decides the outcome; the score, of the other sign, is kept in the text only.
            intensity = ""
            what += f", Goldstein {o.goldstein:+g} against its quad class"
        obs = {
            "id": ident,
            "event_date": event_date.isoformat(),
            "report_date": report_date.isoformat() if report_date else "",
            "counterpart": counterpart,
            "domain": domain,
            "outcome": o.outcome,
            "initiator": initiator,
            "intensity": intensity,
            "reliability": "",
            "description": f"{self.fmt.upper()} coded event {src_id or ident}: {who}, {what}".strip(),
            "source": source,
            "origin_id": "",
        }
        return Candidate(
            obs=obs,
            line=line,
            source_id=clip(src_id),
            date=event_date,
            counterpart=counterpart,
            initiator=initiator,
            family=o.outcome,
            domain=domain,
            n_sources=n_sources,
            n_mentions=n_mentions,
            is_root=is_root,
            site=site,
            grade=self.mapping.grade_for(n_sources or 1),
        )

    def reliability(self, grade: str) -> tuple[str, str]:
        """The reliability column for ``grade`` and the note the description gets: the grade itself, or
        with a source-class weight below 1 the plain weight grade x class (see the module docs)."""
        m = self.mapping
        if m.class_weight >= 1:
            return grade, f"grade {grade}"
        w = self.study.reliability_source[grade[0]] * self.study.reliability_credibility[grade[1:]] * m.class_weight
        return f"{w:.4g}", f"grade {grade} x {m.source_class} weight {m.class_weight:g}"


def _code_match(value: str, code: str) -> bool:
    """Whether a CAMEO actor code (TURGOV) is ``code`` (TUR) or one of its refinements: codes are
    blocks of three letters, the country or organisation first, so a prefix is a refinement."""
    return value.startswith(code)


def _count(text: str) -> int | None:
    t = text.strip()
    if not t:
        return None
    try:
        return max(int(float(t)), 0)
    except ValueError:
        return None


def _host(url: str) -> str:
    host = urlsplit(url).hostname or ""
    return host.casefold().removeprefix("www.")


def _url_words(url: str) -> str:
    """The words of a URL's path (never its host: 'straitstimes.com' is a site, not the straits)."""
    u = url.strip()
    if not u.startswith(("http://", "https://")):
        return u
    return unquote(urlsplit(u).path)


class ActorPrefilter:
    """Which lines of a block may concern the study's actor (a superset: every row the full mapping
    could read as the actor's is among them).

    A code (``TUR``) may be in a line where it occurs in upper case, a name where it occurs without
    case. The block is searched as one text, by plain substring search (C speed, no regular
    expression over the whole file); only the lines it hits are checked with the exact pattern: a
    code where it begins a word (``\\tTURGOV``), a name as a whole word.
    """

    def __init__(self, mapping: Mapping):
        self.codes = tuple(mapping.actor_codes)
        self.names = tuple(sorted({n.lower() for n in mapping.actor_names}, key=len))
        parts = []
        if self.codes:
            parts.append("(?<![A-Z])(?:" + "|".join(re.escape(c) for c in self.codes) + ")")
        if self.names:
            alts = "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in sorted(self.names, key=len, reverse=True))
            parts.append(r"(?i:(?<!\w)(?:" + alts + r")(?!\w))")
        self.pattern = re.compile("|".join(parts)) if parts else None
        # a name with inner spaces may be split by other white space in the file: search its first word
        self.name_needles = tuple({n.split(" ")[0] for n in self.names})

    def __call__(self, lines: list[str]) -> set[int]:
        if self.pattern is None:
            return set()
        text = "".join(lines)
        hits: list[int] = []
        for needle, haystack in [(c, text) for c in self.codes] + (
            [(n, text.lower()) for n in self.name_needles] if self.name_needles else []
        ):
            at = haystack.find(needle)
            while at >= 0:
                hits.append(at)
                at = haystack.find(needle, at + 1)
        if not hits:
            return set()
        ends = list(accumulate(map(len, lines)))
        marked = {bisect_right(ends, at) for at in hits}
        search = self.pattern.search
        return {i for i in marked if i < len(lines) and search(lines[i]) is not None}


def actor_prefilter(mapping: Mapping) -> ActorPrefilter:
    """The reader's pre-filter for ``mapping``'s actor (see ActorPrefilter)."""
    return ActorPrefilter(mapping)


def _finish(clusters: list[Cluster], mapper: RowMapper, on_match: str) -> tuple[list[dict], list[Skipped]]:
    """The observations of the clustered candidates, and the rows skipped as repeats or matches."""
    m = mapper.mapping
    imported: list[tuple[int, dict]] = []
    skipped: list[Skipped] = []
    for cl in clusters:
        rep = cl.representative
        if cl.matches is not None and on_match == "skip":
            for c in cl.rows:
                skipped.append(
                    Skipped(
                        c.line,
                        "matches_existing",
                        f"the same event as {clip(cl.matches)} already in the file (same counterpart, outcome and "
                        f"initiator within {m.window_days} day(s); on_match = 'skip', 'corroborate' would add it "
                        "as a report of that event)",
                        c.source_id,
                        cl.matches,
                    )
                )
            continue
        origin = cl.matches if cl.matches is not None and on_match == "corroborate" else ""
        n_indep = cl.independent_sources()
        for c in cl.rows:
            obs = dict(c.obs)
            if c is rep:
                grade = m.grade_for(n_indep) if not origin else c.grade
                obs["origin_id"] = origin
                extra = f"; {n_indep} independent source(s) over {len(cl.rows)} report(s)" if len(cl.rows) > 1 else ""
            else:
                if m.cluster_reports == "skip" and not origin:
                    skipped.append(
                        Skipped(
                            c.line,
                            "repeat",
                            f"reports the event of {clip(rep.obs['id'])} again (same counterpart, initiator and "
                            f"outcome within {m.window_days} day(s)); [cluster] reports = 'skip'",
                            c.source_id,
                            rep.obs["id"],
                        )
                    )
                    continue
                grade, extra = c.grade, ""
                obs["origin_id"] = origin or rep.obs["id"]
            obs["reliability"], note = mapper.reliability(grade)
            obs["description"] = f"{obs['description']} ({note}{extra})"
            for col in TEXT_COLUMNS:
                obs[col] = spreadsheet_safe(obs[col])
            imported.append((c.order, obs))
    imported.sort(key=lambda t: t[0])
    return [o for _, o in imported], skipped


def map_rows(
    source: Source,
    fmt: str,
    study: Study,
    mapping: Mapping,
    existing: pd.DataFrame,
    *,
    on_match: str,
    today: dt.date,
    since: dt.date | None = None,
    until: dt.date | None = None,
    prefilter: bool = True,
) -> Mapped:
    """Map each row of ``source`` (read as ``fmt``) to an observation, or to the reason it cannot be one.

    ``existing`` holds the observation file's id, event_date, counterpart, domain, outcome
    (cooperative), initiator and origin_id columns, for duplicates and matching events.
    """
    cols = resolve_columns(source.columns, fmt, mapping.columns, mapping.actor_columns)
    mapper = RowMapper(fmt, source.columns, cols, study, mapping, existing, today=today, since=since, until=until)
    candidates: list[Candidate] = []
    skipped: list[Skipped] = []
    n_parsed = 0
    keep = actor_prefilter(mapping) if prefilter else None
    for line, values in source.records(prefilter=keep):
        n_parsed += 1
        row = _Row(values, cols)
        try:
            candidates.append(mapper.map(line, row))
        except _Skip as s:
            skipped.append(Skipped(line, s.reason, s.detail, clip(row.first("id")), s.matches))
    clusters = cluster(candidates, mapping.window_days, same_domain=mapping.same_domain)
    match_existing(clusters, existing, mapping.window_days, same_domain=mapping.same_domain)
    imported, more = _finish(clusters, mapper, on_match)
    skipped = sorted(skipped + more, key=lambda s: s.line)
    n_pre = source.counts.prefiltered
    return Mapped(
        n_rows=n_parsed + n_pre,
        imported=imported,
        skipped=skipped,
        n_prefiltered=n_pre,
        n_events=sum(1 for cl in clusters if not (cl.matches and on_match == "skip")),
        columns={f: [source.columns[i] for i in cols[f]] for f in FIELDS if cols[f]},
    )
