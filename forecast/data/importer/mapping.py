"""The mapping file (``cameo_mapping.toml``): how a coded event becomes an observation of a study.

Tables ``[mapping]`` (the study's actor, how actor columns are chosen, reliability grades and the
source class's weight, what to do with an event already in the file, neutral rows),
``[counterparts]`` (codes or names -> counterpart ids), ``[domains]`` (keywords, POLECAT
contexts, modes and event types, CAMEO code prefixes -> domain ids), ``[outcome]`` (quad classes,
CAMEO root codes and PLOVER event types -> cooperative or conflictual; which rows are neutral),
``[cluster]`` (repeated reports of one event), ``[filters]`` (noise: minimum sources and mentions,
blocked sites) and ``[columns]`` (which column carries a field). The schema is strict (unknown
keys are errors, with "did you mean"), and every name is checked against the study; every problem
is reported at once.

Actors and counterparts are named by CAMEO *codes* or by *names*. A code (upper-case letters in
blocks of three: ``TUR``, ``USA``, ``IGOWSTNAT``) matches any code that starts with it, in a
column that carries codes (``TURGOV``, ``USAMIL``, ``IGOWSTNATMIL``; the longest code wins), and
itself, in upper case, in any column. A
name (anything else: ``Turkey``, ``Türkiye``, ``TURKISH``) matches a value equal to it, compared
without case and with inner spaces collapsed.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict

from forecast.data.importer.limits import clip, echo
from forecast.data.importer.sources import FIELDS
from forecast.errors import InputError, allowed_list, did_you_mean
from forecast.spec.study import Study

DEFAULT_MAPPING = "cameo_mapping.toml"
# The shipped mapping is about 10 KB; a file of a megabyte is not a mapping someone wrote.
MAX_MAPPING_BYTES = 1024 * 1024
ON_MATCH = ("skip", "corroborate", "keep")
_CODE = re.compile(r"(?:[A-Z]{3})+")

# The quad class of each CAMEO root code, as GDELT assigns QuadClass (by the root code alone:
# 01-05 verbal cooperation, 06-08 material cooperation, 09-13 verbal conflict, 14-20 material
# conflict). GDELT's Goldstein score comes from another table, per full code, and its sign
# differs from the quad class for some codes by design (e.g. 012 'make pessimistic comment',
# quad 1, -0.4): the quad class decides the outcome, the score is the intensity.
CAMEO_ROOT_QUAD = {f"{i:02d}": 1 if i <= 5 else 2 if i <= 8 else 3 if i <= 13 else 4 for i in range(1, 21)}
# PLOVER (POLECAT) event types and their quad classes, as the PLOVER manual (openeventdata/PLOVER,
# PLOVER_MANUAL.tex, 2024) assigns them; INVESTIGATE, DEMAND, DISAPPROVE and FIGHT are the
# earlier drafts' names (now in ACCUSE, REQUEST, ACCUSE and ASSAULT), kept for older exports.
PLOVER_QUAD = {
    "AGREE": 1,
    "CONSULT": 1,
    "SUPPORT": 1,
    "CONCEDE": 1,
    "COOPERATE": 2,
    "AID": 2,
    "RETREAT": 2,
    "REQUEST": 3,
    "ACCUSE": 3,
    "REJECT": 3,
    "THREATEN": 3,
    "PROTEST": 4,
    "SANCTION": 4,
    "MOBILIZE": 4,
    "COERCE": 4,
    "ASSAULT": 4,
    "INVESTIGATE": 3,
    "DEMAND": 3,
    "DISAPPROVE": 3,
    "FIGHT": 4,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _MappingSection(_Strict):
    study: str | None = None
    actor: list[str]
    actor_columns: Literal["code", "country"] = "code"
    reliability: str = "C3"
    by_sources: dict[str, str] = {}
    source_class: str = "machine-coded"
    class_weight: float = 1.0
    on_match: Literal["skip", "corroborate", "keep"] = "skip"
    neutral: Literal["skip", "keep"] = "skip"
    id_prefix: str | None = None


class _Domains(_Strict):
    default: str | None = None
    keywords: dict[str, str] = {}
    contexts: dict[str, str] = {}
    modes: dict[str, str] = {}
    event_types: dict[str, str] = {}
    codes: dict[str, str] = {}


class _Outcome(_Strict):
    quad_classes: dict[str, Literal["cooperative", "conflictual"]] = {
        "1": "cooperative",
        "2": "cooperative",
        "3": "conflictual",
        "4": "conflictual",
    }
    root_codes: dict[str, int] = dict(CAMEO_ROOT_QUAD)
    event_types: dict[str, int] = dict(PLOVER_QUAD)
    neutral_roots: list[str] = ["01", "02"]
    neutral_goldstein_zero: bool = True


class _Cluster(_Strict):
    window_days: int = 1
    same_domain: bool = False
    reports: Literal["keep", "skip"] = "keep"


class _Filters(_Strict):
    min_sources: int = 0
    min_mentions: int = 0
    blocked_sites: list[str] = []


class _MappingFile(_Strict):
    mapping: _MappingSection
    counterparts: dict[str, str]
    domains: _Domains = _Domains()
    outcome: _Outcome = _Outcome()
    cluster: _Cluster = _Cluster()
    filters: _Filters = _Filters()
    columns: dict[str, str | list[str]] = {}


_SECTIONS = {
    "mapping": _MappingSection,
    "domains": _Domains,
    "outcome": _Outcome,
    "cluster": _Cluster,
    "filters": _Filters,
}


@dataclass(frozen=True)
class Mapping:
    """A checked mapping file, with names normalised for lookup."""

    path: Path
    actor: frozenset[str]  # every entry of ``actor``, normalised (for messages)
    actor_codes: tuple[str, ...]  # CAMEO code prefixes of the actor, longest first
    actor_names: frozenset[str]  # normalised names and aliases of the actor (the entries that are not codes)
    counterparts: dict[str, str]  # normalised name -> counterpart id
    counterpart_codes: tuple[tuple[str, str], ...]  # (code prefix, counterpart id), longest first
    keywords: list[tuple[str, str]]  # (keyword as tokens, domain), in file order
    contexts: dict[str, str]
    modes: dict[str, str]
    type_domains: dict[str, str]
    codes: list[tuple[str, str]]  # (code prefix, domain), longest first
    default_domain: str | None
    quad_outcome: dict[int, str]
    root_quad: dict[str, int]
    type_quad: dict[str, int]
    neutral: str
    neutral_roots: frozenset[str]
    neutral_goldstein_zero: bool
    reliability: str
    by_sources: list[tuple[int, str]]  # (minimum sources, grade), largest first
    source_class: str
    class_weight: float
    on_match: str
    actor_columns: str
    id_prefix: str | None
    columns: dict[str, list[str]]
    window_days: int
    same_domain: bool
    cluster_reports: str
    min_sources: int
    min_mentions: int
    blocked_sites: tuple[str, ...]
    sha256: str

    def grade_for(self, n_sources: int) -> str:
        """The Admiralty grade of an event reported by ``n_sources`` independent sources."""
        return next((g for k, g in self.by_sources if n_sources >= k), self.reliability)


def norm(x: str) -> str:
    """A code or name as the mapping compares it: trimmed, inner spaces collapsed, without case."""
    return re.sub(r"\s+", " ", str(x).strip()).casefold()


def tokens(text: str) -> str:
    """Text as keywords are matched in it: lower case, every run of other characters than letters and
    digits one space, with a space at each end (so ' f 35 ' is in ' f 35 jets ' but not in
    ' chief 3554106 ', and ' trade ' is not in ' trader ')."""
    return " " + " ".join(re.findall(r"[^\W_]+", text.casefold())) + " "


def is_code(x: str) -> bool:
    """Whether a mapping entry is a CAMEO code (matched as a prefix), not a name."""
    return _CODE.fullmatch(x.strip()) is not None


def _schema_problems(e: pydantic.ValidationError) -> list[str]:
    problems = []
    for err in e.errors():
        loc = ".".join(clip(p, 40) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parent = _SECTIONS.get(str(err["loc"][0]) if len(err["loc"]) > 1 else "", _MappingFile)
            problems.append(
                f"{loc}: unknown key{did_you_mean(clip(err['loc'][-1]), parent.model_fields)}; "
                f"allowed: {allowed_list(parent.model_fields)}"
            )
        elif err["type"] == "missing":
            problems.append(f"{loc}: required key is missing")
        else:
            problems.append(f"{loc}: {err['msg']} (got {echo(err.get('input'))})")
    return problems


def _study_problems(spec: _MappingFile, study: Study) -> list[str]:
    """Every name of the mapping checked against the study and the allowed values."""
    problems: list[str] = []
    m = spec.mapping
    if m.study is not None and m.study != study.name:
        problems.append(f"mapping.study: written for study {echo(m.study)}, not '{study.name}'")
    if not m.actor:
        problems.append("mapping.actor: list the codes or names of the study's actor (e.g. ['TUR', 'Turkey'])")
    counterparts = set(study.counterpart_group)
    for code, cp in spec.counterparts.items():
        if cp not in counterparts:
            problems.append(
                f"counterparts.{clip(code)}: '{clip(cp)}' is not a counterpart of the study"
                f"{did_you_mean(clip(cp), counterparts)}; known: {allowed_list(counterparts)}"
            )
    actor = {norm(a) for a in m.actor} | {a.strip() for a in m.actor if is_code(a)}
    for code in spec.counterparts:
        if norm(code) in actor or code.strip() in actor:
            problems.append(f"counterparts.{clip(code)}: also listed as the study's actor in mapping.actor")
    domains = {d.id for d in study.domains}
    d = spec.domains
    for where, table in (
        ("domains.keywords", d.keywords),
        ("domains.contexts", d.contexts),
        ("domains.modes", d.modes),
        ("domains.event_types", d.event_types),
        ("domains.codes", d.codes),
    ):
        for k, dom in table.items():
            if dom not in domains:
                problems.append(
                    f"{where}.{clip(k)}: '{clip(dom)}' is not a domain of the study{did_you_mean(clip(dom), domains)}"
                )
    for k in d.keywords:
        if tokens(k) == "  ":
            problems.append(f"domains.keywords.{echo(k)}: a keyword needs a letter or a digit")
    for k in d.codes:
        if not k.isdigit():
            problems.append(f"domains.codes.{clip(k)}: CAMEO code prefixes are digits, e.g. '06' or '0631'")
    if d.default is not None and d.default not in domains:
        problems.append(f"domains.default: '{clip(d.default)}' is not a domain of the study")
    o = spec.outcome
    for k in o.quad_classes:
        if k not in {"1", "2", "3", "4"}:
            problems.append(f"outcome.quad_classes.{clip(k)}: quad classes are '1'..'4'")
    for where, table in (("outcome.root_codes", o.root_codes), ("outcome.event_types", o.event_types)):
        for k, q in table.items():
            if q not in (1, 2, 3, 4):
                problems.append(f"{where}.{clip(k)}: a quad class 1..4, got {q}")
    for r in o.neutral_roots:
        if not re.fullmatch(r"\d\d", r):
            problems.append(f"outcome.neutral_roots: {echo(r)} is not a CAMEO root code like '01'")
    for g in [m.reliability, *m.by_sources.values()]:
        if not re.fullmatch(r"[A-F][1-6]", g.strip().upper()):
            problems.append(f"mapping: {echo(g)} is not an Admiralty grade like 'C3'")
    for k in m.by_sources:
        if not k.isdigit() or int(k) < 1:
            problems.append(f"mapping.by_sources.{clip(k)}: keys are minimum numbers of sources, e.g. '3'")
    if not 0 < m.class_weight <= 1:
        problems.append(
            f"mapping.class_weight: the weight of a {clip(m.source_class)} row relative to a hand-verified one, "
            f"in (0, 1]; got {m.class_weight:g}"
        )
    c = spec.cluster
    if not 0 <= c.window_days <= 31:
        problems.append(f"cluster.window_days: 0 (the same day only) to 31 days, got {c.window_days}")
    f = spec.filters
    for name, v in (("min_sources", f.min_sources), ("min_mentions", f.min_mentions)):
        if v < 0:
            problems.append(f"filters.{name}: 0 or more, got {v}")
    for site in f.blocked_sites:
        if not re.fullmatch(r"[a-z0-9.-]+\.[a-z]{2,}", site.strip().casefold()):
            problems.append(f"filters.blocked_sites: {echo(site)} is not a site name like 'example.com'")
    for k, v in spec.columns.items():
        if k not in FIELDS:
            problems.append(
                f"columns.{clip(k)}: unknown field{did_you_mean(clip(k), FIELDS)}; allowed: {allowed_list(FIELDS)}"
            )
        if isinstance(v, list) and not v:
            problems.append(f"columns.{clip(k)}: name at least one column")
    return problems


def load_mapping(path: Path, study: Study) -> Mapping:
    """Read and check a mapping file against the study; every problem is reported at once."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a mapping file")
    if not path.is_file():
        raise InputError(f"{path}: mapping file not found (see `forecast import --help` for its format)")
    if path.stat().st_size > MAX_MAPPING_BYTES:
        raise InputError(
            f"{path}: {path.stat().st_size:,} bytes; a mapping file may have at most {MAX_MAPPING_BYTES:,} "
            "(is this the mapping file?)"
        )
    raw_bytes = path.read_bytes()
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"{path}: not a readable TOML file: {clip(e, 200)}") from None
    try:
        spec = _MappingFile.model_validate(raw)
    except pydantic.ValidationError as e:
        raise InputError(_schema_problems(e), heading=f"{path}: the mapping file has problems") from None
    problems = _study_problems(spec, study)
    if problems:
        raise InputError(problems, heading=f"{path}: the mapping file has problems")
    m, d, o = spec.mapping, spec.domains, spec.outcome
    longest = lambda pairs: tuple(sorted(pairs, key=lambda kv: (-len(kv[0]), kv[0])))  # noqa: E731
    return Mapping(
        path=path,
        actor=frozenset(norm(a) for a in m.actor),
        actor_codes=tuple(c for c, _ in longest((a.strip(), "") for a in m.actor if is_code(a))),
        actor_names=frozenset(norm(a) for a in m.actor if not is_code(a)),
        counterparts={norm(k): v for k, v in spec.counterparts.items()},
        counterpart_codes=longest((k.strip(), v) for k, v in spec.counterparts.items() if is_code(k)),
        keywords=[(tokens(k), dom) for k, dom in d.keywords.items()],
        contexts={norm(k): v for k, v in d.contexts.items()},
        modes={norm(k): v for k, v in d.modes.items()},
        type_domains={norm(k): v for k, v in d.event_types.items()},
        codes=sorted(d.codes.items(), key=lambda kv: -len(kv[0])),
        default_domain=d.default,
        quad_outcome={int(k): v for k, v in o.quad_classes.items()},
        root_quad=dict(o.root_codes),
        type_quad={norm(k): v for k, v in o.event_types.items()},
        neutral=m.neutral,
        neutral_roots=frozenset(o.neutral_roots),
        neutral_goldstein_zero=o.neutral_goldstein_zero,
        reliability=m.reliability.strip().upper(),
        by_sources=sorted(((int(k), g.strip().upper()) for k, g in m.by_sources.items() if k.isdigit()), reverse=True),
        source_class=m.source_class,
        class_weight=m.class_weight,
        on_match=m.on_match,
        actor_columns=m.actor_columns,
        id_prefix=m.id_prefix,
        columns={k: [v] if isinstance(v, str) else list(v) for k, v in spec.columns.items()},
        window_days=spec.cluster.window_days,
        same_domain=spec.cluster.same_domain,
        cluster_reports=spec.cluster.reports,
        min_sources=spec.filters.min_sources,
        min_mentions=spec.filters.min_mentions,
        blocked_sites=tuple(s.strip().casefold() for s in spec.filters.blocked_sites),
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
    )
