"""The mapping file (``cameo_mapping.toml``): how a coded event becomes an observation of a study.

Tables ``[mapping]`` (the study's actor, reliability grades, what to do with an event already in
the file), ``[counterparts]`` (codes or names -> counterpart ids), ``[domains]`` (keywords and
CAMEO code prefixes -> domain ids), ``[outcome]`` (quad classes, CAMEO root codes and PLOVER
event types -> cooperative or conflictual) and ``[columns]`` (which column carries a field). The
schema is strict (unknown keys are errors, with "did you mean"), and every name is checked
against the study; every problem is reported at once.
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
# The shipped mapping is about 6 KB; a file of a megabyte is not a mapping someone wrote.
MAX_MAPPING_BYTES = 1024 * 1024
ON_MATCH = ("skip", "corroborate", "keep")


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
    """A checked mapping file, with names normalised for lookup."""

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


def norm(x: str) -> str:
    """A code or name as the mapping compares it: trimmed, inner spaces collapsed, without case."""
    return re.sub(r"\s+", " ", str(x).strip()).casefold()


def _schema_problems(e: pydantic.ValidationError) -> list[str]:
    problems = []
    for err in e.errors():
        loc = ".".join(clip(p, 40) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parent = {"mapping": _MappingSection, "domains": _Domains, "outcome": _Outcome}.get(
                str(err["loc"][0]) if len(err["loc"]) > 1 else "", _MappingFile
            )
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
    domains = {d.id for d in study.domains}
    for where, table in (("domains.keywords", spec.domains.keywords), ("domains.codes", spec.domains.codes)):
        for k, d in table.items():
            if d not in domains:
                problems.append(
                    f"{where}.{clip(k)}: '{clip(d)}' is not a domain of the study{did_you_mean(clip(d), domains)}"
                )
    for k in spec.domains.codes:
        if not k.isdigit():
            problems.append(f"domains.codes.{clip(k)}: CAMEO code prefixes are digits, e.g. '06' or '0631'")
    if spec.domains.default is not None and spec.domains.default not in domains:
        problems.append(f"domains.default: '{clip(spec.domains.default)}' is not a domain of the study")
    for k in spec.outcome.quad_classes:
        if k not in {"1", "2", "3", "4"}:
            problems.append(f"outcome.quad_classes.{clip(k)}: quad classes are '1'..'4'")
    for where, table in (
        ("outcome.root_codes", spec.outcome.root_codes),
        ("outcome.event_types", spec.outcome.event_types),
    ):
        for k, q in table.items():
            if q not in (1, 2, 3, 4):
                problems.append(f"{where}.{clip(k)}: a quad class 1..4, got {q}")
    for g in [m.reliability, *m.by_sources.values()]:
        if not re.fullmatch(r"[A-F][1-6]", g.strip().upper()):
            problems.append(f"mapping: {echo(g)} is not an Admiralty grade like 'C3'")
    for k in m.by_sources:
        if not k.isdigit() or int(k) < 1:
            problems.append(f"mapping.by_sources.{clip(k)}: keys are minimum numbers of sources, e.g. '3'")
    for k in spec.columns:
        if k not in FIELDS:
            problems.append(
                f"columns.{clip(k)}: unknown field{did_you_mean(clip(k), FIELDS)}; allowed: {allowed_list(FIELDS)}"
            )
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
    m = spec.mapping
    return Mapping(
        path=path,
        actor=frozenset(norm(a) for a in m.actor),
        counterparts={norm(k): v for k, v in spec.counterparts.items()},
        keywords=[(k.casefold(), d) for k, d in spec.domains.keywords.items()],
        codes=sorted(spec.domains.codes.items(), key=lambda kv: -len(kv[0])),
        default_domain=spec.domains.default,
        quad_outcome={int(k): v for k, v in spec.outcome.quad_classes.items()},
        root_quad=dict(spec.outcome.root_codes),
        type_quad={norm(k): v for k, v in spec.outcome.event_types.items()},
        reliability=m.reliability.strip().upper(),
        by_sources=sorted(((int(k), g.strip().upper()) for k, g in m.by_sources.items() if k.isdigit()), reverse=True),
        on_match=m.on_match,
        id_prefix=m.id_prefix,
        columns=dict(spec.columns),
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
    )
