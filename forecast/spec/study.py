"""The study file: one schema for the question, counterparts, domains, time and hypotheses.

A study is TOML. Its structure is checked by pydantic models that forbid unknown keys; the
cross-field rules (ids unique, every group given a prior, probabilities summing to one) are
checked afterwards, and every problem is reported at once with its key path.

Hostile or broken input is refused with a message, never followed: the study ``name`` becomes a
folder of the runs directory and hypothesis ids become file names, so the name is a slug and ids
are identifiers (never ``..``, ``/`` or an absolute path); control characters other than TAB and
line breaks are refused in every string of the file; values echoed in messages are cut to about
80 characters.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictStr

from forecast.errors import StudyError, allowed_list, did_you_mean
from forecast.spec.constraints import (
    ConstraintStudy,
    _ConstraintHypothesis,
    _Encompassing,
    reserved_id_problems,
    resolve_constraints,
)
from forecast.spec.elicitation import PendingStatement, is_statement, resolve_statements
from forecast.spec.priors import Prior, Support, parse_prior, shown

# The shared model's hyperparameters, per counterpart group, and the time components that
# bring each one in. Every hypothesis states a prior for each of them.
PARAMETERS: dict[str, tuple[Support, str | None, str]] = {
    "tilt": ("real", None, "log-odds that an interaction with the group is cooperative, at the reference quarter"),
    "spread": ("positive", None, "standard deviation of the domain effects around the tilt (log-odds)"),
    "trend": ("real", "trend", "change in the log-odds of cooperation per year"),
    "volatility": ("positive", "random_walk", "standard deviation of the quarter-to-quarter random walk (log-odds)"),
}
TIME_COMPONENTS = ("trend", "random_walk")
ALL_GROUPS = "all"
PRIOR_SUM_TOLERANCE = 0.002
MAX_ID_LENGTH = 64
# Ids (groups, domains, hypotheses, counterparts) are identifiers; hypothesis ids name files of a
# run. Every id is also a slug (below). fullmatch, not '$': '$' would accept a trailing newline.
_ID = re.compile(rf"[a-z][a-z0-9_]{{0,{MAX_ID_LENGTH - 1}}}")
ID_RULE = f"must be lower-case letters, digits and '_', starting with a letter (at most {MAX_ID_LENGTH} characters)"
# The study name is a folder of the runs directory: a slug, so never '..', '/' or an absolute path.
SLUG = re.compile(rf"[a-z0-9][a-z0-9_-]{{0,{MAX_ID_LENGTH - 1}}}")
SLUG_RULE = (
    f"must be a slug: lower-case letters, digits, '_' and '-', starting with a letter or digit, "
    f"at most {MAX_ID_LENGTH} characters (e.g. 'turkey_nato'); it names the study's folder of runs"
)
_QUARTER = re.compile(r"(\d{4})Q([1-4])")
# Control characters (C0, DEL, C1) other than TAB, LF and CR: refused in every string of a study.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# A study file is a few kilobytes; anything this large is not one (and is not parsed).
MAX_STUDY_BYTES = 4 * 1024 * 1024

# Who acted in an observation (its ``initiator`` column): the study's actor, the counterpart, or
# both together. ``[evidence] initiators`` chooses which of them count as evidence of the actor's
# alignment; by default all three do (every row counts).
INITIATORS = ("actor", "counterpart", "joint")

# ``[model] overdispersion``: how a cell's events share evidence. "none": every event is an
# independent Bernoulli draw at the cell's probability (the events of one cell carry evidence
# without bound); "cell": the cell's cooperative share is Beta(p * concentration, (1 - p) *
# concentration) around p = sigmoid(log-odds), so one cell carries at most about
# ``concentration + 1`` events' worth of evidence (forecast.model.overdispersion, which says why
# "none" is the default and "cell" is advised for studies fed by machine-coded imports).
OVERDISPERSION = ("none", "cell")
CONCENTRATION = "concentration"
# The default prior of the concentration, stated once per study (the same for every hypothesis):
# median 20 events' worth of evidence per cell, 90% between about 4 and 100 (see README).
DEFAULT_CONCENTRATION = Prior("LogNormal", {"mu": math.log(20.0), "sigma": 1.0})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class _StudySection(_Strict):
    name: str
    question: str
    actor: str
    observations: str
    runs: str | None = None


class _Time(_Strict):
    step: Literal["quarter"] = "quarter"
    start: str
    end: str
    reference: str | None = None
    components: list[Literal["trend", "random_walk"]] = ["trend", "random_walk"]


class _Group(_Strict):
    id: str
    label: str
    counterparts: list[str]
    description: str = ""


class _Domain(_Strict):
    id: str
    label: str
    description: str = ""


class _Reliability(_Strict):
    source: dict[str, float] = {"A": 1.0, "B": 0.9, "C": 0.75, "D": 0.5, "E": 0.25, "F": 0.5}
    credibility: dict[str, float] = {"1": 1.0, "2": 0.9, "3": 0.75, "4": 0.5, "5": 0.25, "6": 0.5}


class _Evidence(_Strict):
    # Checked against INITIATORS in _resolve (with a did-you-mean), not by a Literal.
    initiators: list[str] = list(INITIATORS)


class _Robustness(_Strict):
    """``[robustness]``: the class of reasonable priors the conclusion must survive (see RobustnessSpec).

    Strict types (a flag is true or false, not "yes"); the numbers are checked in
    ``_resolve_robustness`` with messages that say what is allowed.
    """

    # One number or a list of numbers (checked in _resolve_robustness; never coerced from text or booleans).
    shifts: object = [0.5]
    scales: object = [1.5]
    by: StrictStr = "parameter"
    joint: StrictBool = True
    hypotheses: list[StrictStr] | None = None
    parameters: list[StrictStr] | None = None
    evidence_variants: StrictBool = True
    pareto_k_threshold: StrictFloat | None = None


class _Model(_Strict):
    """``[model]``: the likelihood's options (see OVERDISPERSION); checked in ``_resolve_model``."""

    overdispersion: StrictStr = "none"
    concentration: object = None


class _Hypothesis(_Strict):
    id: str
    label: str
    claim: str
    prior_probability: float
    priors: dict[str, dict[str, object]]


class _StudyFile(_Strict):
    study: _StudySection
    time: _Time
    groups: list[_Group]
    domains: list[_Domain]
    reliability: _Reliability = _Reliability()
    evidence: _Evidence = _Evidence()
    model: _Model = _Model()
    robustness: _Robustness | None = None
    hypotheses: list[_Hypothesis] = []
    # Constraint hypotheses on one encompassing prior: forecast.spec.constraints.
    encompassing: _Encompassing | None = None
    constraint_hypotheses: list[_ConstraintHypothesis] = []
    # Forecast questions are validated by forecast.spec.questions against the resolved study.
    questions: list[dict[str, object]] = []


def quarter_index(text: str) -> int:
    """'2019Q3' -> an integer that counts quarters (year * 4 + quarter - 1)."""
    m = _QUARTER.fullmatch(text)
    if not m:
        raise ValueError(text)
    return int(m.group(1)) * 4 + int(m.group(2)) - 1


def quarter_label(index: int) -> str:
    return f"{index // 4}Q{index % 4 + 1}"


@dataclass(frozen=True)
class Group:
    id: str
    label: str
    counterparts: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class Domain:
    id: str
    label: str
    description: str = ""


@dataclass(frozen=True)
class TimeSpec:
    start: int
    end: int
    reference: int
    components: tuple[str, ...]

    @property
    def quarters(self) -> list[str]:
        return [quarter_label(q) for q in range(self.start, self.end + 1)]

    @property
    def n_quarters(self) -> int:
        return self.end - self.start + 1

    @property
    def static(self) -> bool:
        return not self.components


@dataclass(frozen=True)
class Hypothesis:
    id: str
    label: str
    claim: str
    prior_probability: float
    # (parameter, group id) -> prior
    priors: dict[tuple[str, str], Prior]


ROBUSTNESS_BY = ("parameter", "slot")


@dataclass(frozen=True)
class RobustnessSpec:
    """The class of reasonable priors (and evidence choices) a study's conclusion must survive.

    Stated in the study file as an optional ``[robustness]`` table; every key has a default, and
    the defaults (used when the table is absent) are the grid of `forecast sensitivity`:

    - ``shifts = [0.5]``: each real-valued prior (tilt, trend) moved down and up by 0.5 of its
      prior standard deviation;
    - ``scales = [1.5]``: each prior made 1.5x wider and 1.5x narrower;
    - ``by = "parameter"``: a hyperparameter's priors for every counterpart group change together
      (``"slot"``: each group's prior alone);
    - ``joint = true``: besides one hyperparameter at a time, all of a hypothesis's priors at once;
    - ``hypotheses``, ``parameters``: which hypotheses and hyperparameters to vary (default all);
      one hypothesis's priors change while the others keep theirs;
    - ``evidence_variants = true``: the evidence variants of `forecast update` (whose acts count:
      all rows, the actor's own and joint acts, its own acts only) belong to the class too, when the
      observations record who acted;
    - ``pareto_k_threshold``: Pareto k above which a variant is refitted instead of reweighted
      (default min(1 - 1/log10(S), 0.7) for S draws).
    """

    shifts: tuple[float, ...] = (0.5,)
    scales: tuple[float, ...] = (1.5,)
    by: str = "parameter"
    joint: bool = True
    hypotheses: tuple[str, ...] | None = None
    parameters: tuple[str, ...] | None = None
    evidence_variants: bool = True
    pareto_k_threshold: float | None = None
    declared: bool = False  # the study file has a [robustness] table (else these are the defaults)


@dataclass(frozen=True)
class Study:
    path: Path
    name: str
    question: str
    actor: str
    observations_path: Path
    runs_path: Path | None
    time: TimeSpec
    groups: tuple[Group, ...]
    domains: tuple[Domain, ...]
    reliability_source: dict[str, float]
    reliability_credibility: dict[str, float]
    hypotheses: tuple[Hypothesis, ...]
    questions_raw: tuple[dict, ...] = ()
    sha256: str = field(default="")
    # Which initiators' rows count as evidence (``[evidence] initiators``), in INITIATORS order.
    evidence_initiators: tuple[str, ...] = INITIATORS
    # The class of reasonable priors the conclusion must survive (``[robustness]``).
    robustness: RobustnessSpec = field(default_factory=RobustnessSpec)
    # ``[encompassing]`` and ``[[constraint_hypotheses]]`` (forecast.spec.constraints); None without them.
    constraints: ConstraintStudy | None = None
    # ``[model] overdispersion`` (OVERDISPERSION) and, when "cell", the concentration's prior.
    overdispersion: str = "none"
    concentration: Prior | None = None

    @property
    def overdispersed(self) -> bool:
        """Whether the cells' shares are overdispersed (``[model] overdispersion = "cell"``)."""
        return self.overdispersion != "none"

    @property
    def model_key(self) -> tuple:
        """What of the study's ``[model]`` options changes the compiled model (hashable)."""
        if not self.overdispersed or self.concentration is None:
            return (self.overdispersion,)
        return (self.overdispersion, self.concentration.dist, self.concentration.values())

    @property
    def parameters(self) -> list[str]:
        """The hyperparameters this study's time components bring into the model."""
        return [p for p, (_, comp, _) in PARAMETERS.items() if comp is None or comp in self.time.components]

    @property
    def slots(self) -> list[tuple[str, str]]:
        """(parameter, group id) pairs: one prior each, in the model's order of prior rows."""
        return [(p, g.id) for p in self.parameters for g in self.groups]

    @property
    def counterpart_group(self) -> dict[str, str]:
        return {c: g.id for g in self.groups for c in g.counterparts}

    def hypothesis(self, hid: str) -> Hypothesis:
        for h in self.hypotheses:
            if h.id == hid:
                return h
        ids = [h.id for h in self.hypotheses]
        raise StudyError(
            f"{self.path}: no hypothesis {shown(hid)}{did_you_mean(hid, ids)}; the study has {allowed_list(ids)}"
        )


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _key(part: object) -> str:
    """A key as part of a key path: as it is when plain, else quoted and cut (it may hold anything)."""
    return str(part) if _PLAIN_KEY.fullmatch(str(part)) else shown(str(part))


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{_key(part)}" if out else _key(part))
    return out


def _control_problems(raw: object, loc: tuple = ()) -> list[str]:
    """A problem for every string (value or key) of the parsed TOML that holds a control character.

    TAB and line breaks are allowed in values (multi-line questions and claims); keys allow none.
    """
    where = _loc(loc) or "the file"
    if isinstance(raw, str):
        m = CONTROL.search(raw)
        if m:
            return [
                f"{where}: contains the control character U+{ord(m.group()):04X} at position {m.start() + 1} "
                f"({shown(raw)}); only TAB and line breaks are allowed in text"
            ]
        return []
    problems: list[str] = []
    if isinstance(raw, dict):
        for k, v in raw.items():
            if CONTROL.search(k) or any(c in k for c in "\t\n\r"):
                problems.append(f"{where}: the key {shown(k)} contains a control character; keys may hold none")
                continue
            problems.extend(_control_problems(v, (*loc, k)))
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            problems.extend(_control_problems(v, (*loc, i)))
    return problems


def _pydantic_problems(err: pydantic.ValidationError, raw: dict) -> list[str]:
    problems = []
    for e in err.errors():
        loc = e["loc"]
        if e["type"] == "extra_forbidden":
            parent_model = _model_at(_StudyFile, loc[:-1], raw)
            allowed = list(parent_model.model_fields) if parent_model else []
            hint = did_you_mean(str(loc[-1]), allowed)
            problems.append(f"{_loc(loc)}: unknown key{hint}; allowed: {allowed_list(allowed)}")
        elif e["type"] == "missing":
            problems.append(f"{_loc(loc)}: required key is missing")
        else:
            problems.append(f"{_loc(loc)}: {e['msg']} (got {shown(e.get('input'))})")
    return problems


def _model_at(model: type[BaseModel], loc: tuple, raw: object) -> type[BaseModel] | None:
    """The pydantic model class that validates the value at ``loc`` (for 'allowed keys' hints)."""
    current: object = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        f = current.model_fields.get(str(part))
        if f is None:
            return None
        ann = f.annotation
        args = getattr(ann, "__args__", ())
        current = args[0] if args and isinstance(args[0], type) and issubclass(args[0], BaseModel) else ann
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; raise StudyError listing every problem."""
    path = Path(path)
    if path.is_dir():
        raise StudyError(
            f"{path}: is a directory, not a study file (name the .toml file, e.g. priors/turkey_nato.toml)"
        )
    if not path.is_file():
        raise StudyError(f"{path}: study file not found")
    try:
        size = path.stat().st_size
        if size > MAX_STUDY_BYTES:
            raise StudyError(
                f"{path}: {size:,} bytes is far too large for a study file (at most {MAX_STUDY_BYTES:,} bytes); "
                "is this the right file?"
            )
        data = path.read_bytes()
    except OSError as e:
        raise StudyError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise StudyError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise StudyError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:
        raise StudyError(f"{path}: not valid TOML: nested too deeply") from None
    control = _control_problems(raw)
    try:
        spec = _StudyFile.model_validate(raw)
    except pydantic.ValidationError as e:
        problems = control + _pydantic_problems(e, raw)
        raise StudyError(problems, heading=f"{path}: the study file has problems") from None
    problems = control
    study = _resolve(path, spec, problems)
    if problems:
        raise StudyError(problems, heading=f"{path}: the study file has problems")
    return Study(**{**study.__dict__, "sha256": hashlib.sha256(data).hexdigest()})


def _check_ids(kind: str, ids: list[str], problems: list[str]) -> None:
    seen: set[str] = set()
    for i, x in enumerate(ids):
        if not _ID.fullmatch(x):
            problems.append(f"{kind}[{i}].id: {shown(x)} {ID_RULE}")
        if x in seen:
            problems.append(f"{kind}[{i}].id: {shown(x)} is used twice")
        seen.add(x)


def _resolve_path(base: Path, given: str, key: str, problems: list[str]) -> Path:
    try:
        return (base / given).resolve()
    except (OSError, ValueError) as e:  # e.g. a name too long for the file system
        problems.append(f"{key}: {shown(given)} is not a usable path ({e})")
        return base / "invalid"


def _resolve_evidence(evidence: _Evidence, problems: list[str]) -> tuple[str, ...]:
    chosen = evidence.initiators
    for i, x in enumerate(chosen):
        if x not in INITIATORS:
            problems.append(
                f"evidence.initiators[{i}]: unknown initiator {shown(x)}{did_you_mean(x, INITIATORS)}; "
                f"allowed: {allowed_list(INITIATORS)} (who acted: the study's actor, the counterpart, or both)"
            )
    if len(set(chosen)) != len(chosen):
        problems.append("evidence.initiators: an initiator is listed twice")
    if not chosen:
        problems.append(
            f"evidence.initiators: list at least one of {allowed_list(INITIATORS)} (all three: every row counts)"
        )
    return tuple(x for x in INITIATORS if x in chosen)


def _resolve(path: Path, spec: _StudyFile, problems: list[str]) -> Study:
    if not SLUG.fullmatch(spec.study.name):
        problems.append(f"study.name: {shown(spec.study.name)} {SLUG_RULE}")
    _check_ids("groups", [g.id for g in spec.groups], problems)
    _check_ids("domains", [d.id for d in spec.domains], problems)
    _check_ids("hypotheses", [h.id for h in spec.hypotheses], problems)
    problems.extend(reserved_id_problems([h.id for h in spec.hypotheses]))
    if not spec.groups:
        problems.append("groups: at least one counterpart group is required")
    if not spec.domains:
        problems.append("domains: at least one issue domain is required")
    if len(spec.hypotheses) < 1 and not spec.constraint_hypotheses:
        problems.append("hypotheses: at least one hypothesis is required")

    owner: dict[str, str] = {}
    for i, g in enumerate(spec.groups):
        if not g.counterparts:
            problems.append(f"groups[{i}].counterparts: list at least one counterpart")
        for c in g.counterparts:
            if not _ID.fullmatch(c):
                problems.append(f"groups[{i}].counterparts: {shown(c)} {ID_RULE}")
            if c in owner:
                problems.append(f"groups[{i}].counterparts: {shown(c)} is already in group {shown(owner[c])}")
            owner[c] = g.id

    time = _resolve_time(spec.time, problems)
    for table, key_pattern in ((spec.reliability.source, r"^[A-F]$"), (spec.reliability.credibility, r"^[1-6]$")):
        name = "source" if table is spec.reliability.source else "credibility"
        allowed = "A-F" if name == "source" else "1-6"
        for k, v in table.items():
            if not re.match(key_pattern, k):
                problems.append(f"reliability.{name}: key {shown(k)} is not an Admiralty grade ({allowed})")
            if not 0 < v <= 1:
                problems.append(f"reliability.{name}.{k}: weight must be in (0, 1], got {v}")
        missing = [k for k in (list("ABCDEF") if name == "source" else list("123456")) if k not in table]
        if missing:
            problems.append(f"reliability.{name}: missing grades {allowed_list(missing)}")

    group_ids = [g.id for g in spec.groups]
    params = [p for p, (_, comp, _) in PARAMETERS.items() if comp is None or comp in time.components]
    hypotheses = []
    for i, h in enumerate(spec.hypotheses):
        where = f"hypotheses[{i}] ({shown(h.id)})"
        if not 0 < h.prior_probability < 1 and len(spec.hypotheses) > 1:
            problems.append(f"{where}.prior_probability: must be in (0, 1), got {h.prior_probability}")
        priors = _resolve_priors(where, h.priors, params, group_ids, time.components, problems)
        hypotheses.append(Hypothesis(h.id, h.label, h.claim.strip(), h.prior_probability, priors))
    total = sum(h.prior_probability for h in spec.hypotheses)
    if spec.hypotheses and abs(total - 1) > PRIOR_SUM_TOLERANCE:
        problems.append(f"hypotheses: prior probabilities must sum to 1, they sum to {total:g}")
    elif total > 0:
        # Rounded thirds (0.334, 0.333, 0.333) are fine; use the exact normalised values.
        hypotheses = [replace(h, prior_probability=h.prior_probability / total) for h in hypotheses]

    evidence = _resolve_evidence(spec.evidence, problems)
    overdispersion, concentration = _resolve_model(spec.model, problems)
    robustness = _resolve_robustness(spec.robustness, [h.id for h in spec.hypotheses], params, problems)
    base = path.parent
    return Study(
        path=path.resolve(),
        name=spec.study.name,
        question=spec.study.question.strip(),
        actor=spec.study.actor,
        observations_path=_resolve_path(base, spec.study.observations, "study.observations", problems),
        runs_path=_resolve_path(base, spec.study.runs, "study.runs", problems) if spec.study.runs else None,
        time=time,
        groups=tuple(Group(g.id, g.label, tuple(g.counterparts), g.description) for g in spec.groups),
        domains=tuple(Domain(d.id, d.label, d.description) for d in spec.domains),
        reliability_source=dict(spec.reliability.source),
        reliability_credibility=dict(spec.reliability.credibility),
        hypotheses=tuple(hypotheses),
        questions_raw=tuple(spec.questions),
        evidence_initiators=evidence,
        robustness=robustness,
        overdispersion=overdispersion,
        concentration=concentration,
        constraints=resolve_constraints(
            spec.encompassing,
            spec.constraint_hypotheses,
            groups=group_ids,
            domains=[d.id for d in spec.domains],
            start=time.start,
            end=time.end,
            resolve_priors=lambda where, raw: _resolve_priors(where, raw, params, group_ids, time.components, problems),
            id_ok=lambda x: bool(_ID.fullmatch(x)),
            problems=problems,
        ),
    )


def _resolve_model(raw: _Model, problems: list[str]) -> tuple[str, Prior | None]:
    """``[model]``: the overdispersion option and, with "cell", the concentration's prior
    (``DEFAULT_CONCENTRATION`` when not given)."""
    kind = raw.overdispersion
    if kind not in OVERDISPERSION:
        problems.append(
            f"model.overdispersion: {shown(kind)} is not one of {allowed_list(OVERDISPERSION)}"
            f"{did_you_mean(kind, OVERDISPERSION)} ('none': every event is independent evidence; 'cell': "
            "one cell carries at most about concentration + 1 events' worth of evidence)"
        )
        return "none", None
    if raw.concentration is not None and kind == "none":
        problems.append(
            'model.concentration: a prior for the concentration is used only with overdispersion = "cell"; '
            'remove it or set model.overdispersion = "cell"'
        )
        return kind, None
    if kind == "none":
        return kind, None
    if raw.concentration is None:
        return kind, DEFAULT_CONCENTRATION
    prior, errs = parse_prior(raw.concentration, f"model.{CONCENTRATION}", "positive")
    problems.extend(errs)
    return kind, prior


def _finite_number(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)


def _resolve_robustness(
    raw: _Robustness | None, hypothesis_ids: list[str], params: list[str], problems: list[str]
) -> RobustnessSpec:
    """``[robustness]`` checked value by value (every problem reported); the defaults when absent."""
    if raw is None:
        return RobustnessSpec()
    values: dict[str, tuple[float, ...]] = {}
    for key, ok, rule in (
        ("shifts", lambda v: v > 0, "a location shift in prior standard deviations > 0 (e.g. 0.5)"),
        ("scales", lambda v: v > 1, "a width factor > 1 (e.g. 1.5: 1.5x wider and 1.5x narrower)"),
    ):
        given = getattr(raw, key)
        listed = given if isinstance(given, list) else [given]
        if not listed:
            problems.append(f"robustness.{key}: give at least one value, each {rule}")
        for i, v in enumerate(listed):
            if not _finite_number(v) or not ok(float(v)):
                problems.append(f"robustness.{key}[{i}]: {shown(v)} is not {rule}")
        values[key] = tuple(sorted({float(v) for v in listed if _finite_number(v)}))
    if raw.by not in ROBUSTNESS_BY:
        problems.append(
            f"robustness.by: {shown(raw.by)} is not one of {allowed_list(ROBUSTNESS_BY)}{did_you_mean(raw.by, ROBUSTNESS_BY)} "
            "('parameter': a hyperparameter's priors for every group together; 'slot': each group alone)"
        )
    for key, known, what in (
        ("hypotheses", hypothesis_ids, "hypothesis of the study"),
        ("parameters", params, "hyperparameter of the model"),
    ):
        chosen = getattr(raw, key)
        if chosen is None:
            continue
        if not chosen:
            problems.append(f"robustness.{key}: list at least one, or leave the key out to vary every {what}")
        for i, x in enumerate(chosen):
            if x not in known:
                why = " (its time component is not in the study)" if key == "parameters" and x in PARAMETERS else ""
                problems.append(
                    f"robustness.{key}[{i}]: {shown(x)} is not a {what}{why}{did_you_mean(x, known)}; "
                    f"known: {allowed_list(known)}"
                )
        if len(set(chosen)) != len(chosen):
            problems.append(f"robustness.{key}: a name is listed twice")
    k = raw.pareto_k_threshold
    if k is not None and not (_finite_number(k) and 0 < k <= 1):
        problems.append(f"robustness.pareto_k_threshold: expected a number in (0, 1] (usually 0.7), got {shown(k)}")
    return RobustnessSpec(
        shifts=values["shifts"],
        scales=values["scales"],
        by=raw.by,
        joint=raw.joint,
        hypotheses=tuple(raw.hypotheses) if raw.hypotheses is not None else None,
        parameters=tuple(raw.parameters) if raw.parameters is not None else None,
        evidence_variants=raw.evidence_variants,
        pareto_k_threshold=float(k) if k is not None and _finite_number(k) else None,
        declared=True,
    )


def _resolve_time(t: _Time, problems: list[str]) -> TimeSpec:
    idx = {}
    for key in ("start", "end", "reference"):
        value = getattr(t, key)
        if value is None:
            continue
        try:
            idx[key] = quarter_index(value)
        except ValueError:
            problems.append(f"time.{key}: {shown(value)} is not a quarter like '2019Q3'")
    start, end = idx.get("start", 0), idx.get("end", 0)
    if "start" in idx and "end" in idx and end < start:
        problems.append(f"time: end {t.end} is before start {t.start}")
    reference = idx.get("reference", (start + end) // 2)
    if "reference" in idx and not start <= reference <= end:
        problems.append(f"time.reference: {t.reference} lies outside {t.start}..{t.end}")
    if len(set(t.components)) != len(t.components):
        problems.append("time.components: a component is listed twice")
    return TimeSpec(start, end, reference, tuple(c for c in TIME_COMPONENTS if c in t.components))


def _resolve_priors(
    where: str,
    raw: dict[str, dict[str, object]],
    params: list[str],
    group_ids: list[str],
    components: tuple[str, ...],
    problems: list[str],
) -> dict[tuple[str, str], Prior]:
    out: dict[tuple[str, str], Prior] = {}
    # Priors stated in the analyst's terms (forecast.spec.elicitation) are fitted after the loop,
    # once this hypothesis's tilt priors are known (share-change statements start from them).
    pending: list[PendingStatement] = []
    for pname, per_group in raw.items():
        if pname not in PARAMETERS:
            problems.append(
                f"{where}.priors.{_key(pname)}: unknown hyperparameter{did_you_mean(pname, PARAMETERS)}; "
                f"the model has {allowed_list(params)}"
            )
            continue
        if pname not in params:
            comp = PARAMETERS[pname][1]
            problems.append(
                f"{where}.priors.{pname}: the study's time components {list(components)} do not include "
                f"'{comp}', so the model has no {pname}; remove this prior or add '{comp}' to time.components"
            )
            continue
        if not isinstance(per_group, dict):
            problems.append(f"{where}.priors.{pname}: expected a table keyed by group id or '{ALL_GROUPS}'")
            continue
        support = PARAMETERS[pname][0]
        for gkey, rawprior in per_group.items():
            if gkey != ALL_GROUPS and gkey not in group_ids:
                problems.append(
                    f"{where}.priors.{pname}.{_key(gkey)}: unknown group{did_you_mean(gkey, group_ids)}; "
                    f"known: {allowed_list([*group_ids, ALL_GROUPS])}"
                )
                continue
            if is_statement(rawprior):
                explicit = frozenset(k for k in per_group if k != ALL_GROUPS)
                pending.append(PendingStatement(pname, gkey, rawprior, explicit))
                continue
            prior, errs = parse_prior(rawprior, f"{where}.priors.{pname}.{gkey}", support)
            problems.extend(errs)
            if prior is None:
                continue
            targets = group_ids if gkey == ALL_GROUPS else [gkey]
            for g in targets:
                # A group-specific prior overrides the 'all' default, whatever the key order.
                if gkey == ALL_GROUPS and (pname, g) in out and g in per_group:
                    continue
                out[(pname, g)] = prior
    if pending:
        supports = {p: PARAMETERS[p][0] for p in PARAMETERS}
        resolve_statements(where, pending, out, group_ids, supports, ALL_GROUPS, problems)
    for pname in params:
        missing = [g for g in group_ids if (pname, g) not in out]
        if missing and pname in raw:
            problems.append(
                f"{where}.priors.{pname}: no prior for group(s) {allowed_list(missing)}; give one or use '{ALL_GROUPS}'"
            )
        elif missing:
            problems.append(f"{where}.priors: missing '{pname}' ({PARAMETERS[pname][2]})")
    return out
