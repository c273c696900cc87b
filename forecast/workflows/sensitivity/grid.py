"""The sensitivity grid: which prior variants to try (a strict schema) and the variants themselves.

A grid comes from a TOML file (top-level keys or a ``[sensitivity]`` table) and/or command-line
options. ``GridSpec`` is a pydantic model like the study schema: unknown keys are errors with a
"did you mean", and every problem is reported at once (``SensitivitySpecError``, exit 2).
``build_grid`` then turns a spec and a study into the base and its variants, checking first that
the hypotheses and hyperparameters it names exist.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

from forecast.errors import InputError, allowed_list, did_you_mean
from forecast.spec.priors import Prior
from forecast.spec.study import PARAMETERS, Study

REFIT_MODES = ("auto", "all", "none")
BY_MODES = ("parameter", "slot")


class SensitivitySpecError(InputError):
    """A sensitivity grid specification that cannot be used."""


def _problem(message: str) -> PydanticCustomError:
    # The message goes in the context, so braces in a user's value never reach str.format.
    return PydanticCustomError("grid", "{message}", {"message": message})


def _number(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)


class GridSpec(BaseModel):
    """Which prior variants to try. Every field has a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shifts: tuple[float, ...] = (0.5,)  # location shifts of real-valued hyperparameters, in prior SDs (±)
    scales: tuple[float, ...] = (1.5,)  # width factors > 1 (each gives a wider and a narrower variant)
    by: Literal["parameter", "slot"] = "parameter"  # "parameter": all groups at once; "slot": each group alone
    joint: bool = True  # also perturb all selected hyperparameters of a hypothesis together
    hypotheses: tuple[str, ...] | None = None  # default: every hypothesis
    parameters: tuple[str, ...] | None = None  # default: every hyperparameter of the model
    refit: Literal["auto", "all", "none"] = "auto"  # "auto": where Pareto k is too high; "all"; "none"
    pareto_k_threshold: float | None = None  # default min(1 - 1/log10(S), 0.7)

    @field_validator("shifts", "scales", mode="before")
    @classmethod
    def _positive_numbers(cls, value: object, info: pydantic.ValidationInfo) -> tuple[float, ...]:
        """One number or a list; each checked; duplicates dropped and the rest sorted."""
        if info.field_name == "shifts":
            check, what = (lambda v: v > 0), "each shift must be a number of prior standard deviations > 0 (e.g. 0.5)"
        else:
            check = lambda v: v > 1  # noqa: E731
            what = "each scale must be a width factor > 1 (e.g. 1.5 widens by 1.5 and narrows by 1/1.5)"
        values = list(value) if isinstance(value, list | tuple) else [value]
        if not values:
            raise _problem("give at least one value")
        bad = [v for v in values if not _number(v) or not check(float(v))]
        if bad:
            raise _problem(f"{what}, got {', '.join(repr(v) for v in bad)}")
        return tuple(sorted({float(v) for v in values}))

    @field_validator("by", "refit", mode="before")
    @classmethod
    def _one_of(cls, value: object, info: pydantic.ValidationInfo) -> object:
        allowed = BY_MODES if info.field_name == "by" else REFIT_MODES
        if value not in allowed:
            raise _problem(f"{value!r} is not one of {allowed_list(allowed)}{did_you_mean(str(value), allowed)}")
        return value

    @field_validator("joint", mode="before")
    @classmethod
    def _flag(cls, value: object) -> bool:
        if not isinstance(value, bool):
            raise _problem(f"expected true or false, got {value!r}")
        return value

    @field_validator("hypotheses", "parameters", mode="before")
    @classmethod
    def _ids(cls, value: object) -> tuple[str, ...] | None:
        if value is None:
            return None
        ids = [value] if isinstance(value, str) else value
        if not isinstance(ids, list | tuple) or not ids or not all(isinstance(x, str) for x in ids):
            raise _problem(f"expected a list of ids, got {value!r}")
        return tuple(ids)

    @field_validator("pareto_k_threshold", mode="before")
    @classmethod
    def _k(cls, value: object) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise _problem(f"expected a number in (0, 1] (usually 0.7), got {value!r}")
        return float(value)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_dump().items()}


SPEC_KEYS = tuple(GridSpec.model_fields)


def parse_grid_spec(raw: object, source: str = "grid") -> GridSpec:
    """Validate a grid specification (a TOML table or CLI options); raise listing every problem."""
    if not isinstance(raw, dict):
        raise SensitivitySpecError(f"{source}: expected a table of grid settings")
    try:
        return GridSpec.model_validate(raw)
    except pydantic.ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(
                    f"{source}: unknown key '{key}'{did_you_mean(key, SPEC_KEYS)}; allowed: {allowed_list(SPEC_KEYS)}"
                )
            elif err["type"] == "grid":
                problems.append(f"{source}.{key}: {err['ctx']['message']}")
            else:
                problems.append(f"{source}.{key}: {err['msg']} (got {err.get('input')!r})")
        raise SensitivitySpecError(problems, heading=f"{source}: the sensitivity grid has problems") from None


def read_grid_file(path: str | Path) -> dict:
    """The raw grid settings of a TOML file: top-level keys, or a ``[sensitivity]`` table."""
    path = Path(path)
    if not path.is_file():
        raise SensitivitySpecError(f"{path}: grid file not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SensitivitySpecError(f"{path}: not valid TOML: {e}") from None
    return raw["sensitivity"] if set(raw) == {"sensitivity"} and isinstance(raw["sensitivity"], dict) else raw


def grid_spec_from(path: str | Path | None = None, **overrides) -> GridSpec:
    """A grid file's settings (if any) with command-line values (those not None) on top."""
    raw = read_grid_file(path) if path else {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return parse_grid_spec(raw, str(path) if path else "sensitivity options")


def check_spec(spec: GridSpec, study: Study) -> None:
    """Hypothesis and hyperparameter names in the spec must exist in the study."""
    problems = []
    hids = [h.id for h in study.hypotheses]
    for h in spec.hypotheses or ():
        if h not in hids:
            problems.append(
                f"hypotheses: '{h}' is not a hypothesis of '{study.name}'{did_you_mean(h, hids)}; known: {allowed_list(hids)}"
            )
    for p in spec.parameters or ():
        if p not in study.parameters:
            why = "" if p not in PARAMETERS else " (its time component is not in the study)"
            problems.append(
                f"parameters: '{p}' is not a hyperparameter of the model{why}{did_you_mean(p, study.parameters)}; "
                f"known: {allowed_list(study.parameters)}"
            )
    if problems:
        raise SensitivitySpecError(problems, heading="the sensitivity grid does not fit the study")


# --------------------------------------------------------------------------------------------
# Variants


@dataclass(frozen=True)
class Variant:
    """One hypothesis with changed priors (or the unperturbed base, ``hypothesis`` None)."""

    id: str
    hypothesis: str | None
    target: str  # "tilt", "tilt.russia", "all", or "" for the base
    change: str  # "base", "shift+0.5", "shift-0.5", "wider1.5", "narrower1.5"
    priors: dict[tuple[str, str], Prior] = field(default_factory=dict)
    changed: tuple[tuple[str, str], ...] = ()

    @property
    def joint(self) -> bool:
        return self.target == "all"


def shift_prior(prior: Prior, sds: float) -> Prior:
    """Move a real-valued prior's location by ``sds`` of its scale parameter sigma."""
    k = dict(prior.kwargs)
    k["mu"] = k["mu"] + sds * k["sigma"]
    return Prior(prior.dist, k)


def scale_prior(prior: Prior, factor: float) -> Prior:
    """Widen (factor > 1) or narrow a prior.

    Real-valued: sigma times factor (around the same location). Positive: the variable itself
    times factor, so every quantile is scaled (HalfNormal/HalfStudentT sigma, LogNormal mu +
    log factor, Gamma beta / factor, Exponential lam / factor).
    """
    k = dict(prior.kwargs)
    if prior.dist in ("Normal", "StudentT", "HalfNormal", "HalfStudentT"):
        k["sigma"] *= factor
    elif prior.dist == "LogNormal":
        k["mu"] += math.log(factor)
    elif prior.dist == "Gamma":
        k["beta"] /= factor
    elif prior.dist == "Exponential":
        k["lam"] /= factor
    else:  # pragma: no cover - every family is handled above
        raise ValueError(prior.dist)
    return Prior(prior.dist, k)


def _changes(spec: GridSpec, real: bool) -> list[tuple[str, Callable[[Prior], Prior]]]:
    out: list[tuple[str, Callable[[Prior], Prior]]] = []
    if real:
        for s in spec.shifts:
            out.append((f"shift-{s:g}", lambda p, s=s: shift_prior(p, -s)))
            out.append((f"shift+{s:g}", lambda p, s=s: shift_prior(p, s)))
    for f in spec.scales:
        out.append((f"wider{f:g}", lambda p, f=f: scale_prior(p, f)))
        out.append((f"narrower{f:g}", lambda p, f=f: scale_prior(p, 1.0 / f)))
    return out


def build_grid(study: Study, spec: GridSpec) -> list[Variant]:
    """The base and every variant the spec asks for, in a stable order."""
    check_spec(spec, study)
    params = [p for p in study.parameters if spec.parameters is None or p in spec.parameters]
    variants = [Variant("base", None, "", "base")]
    for h in study.hypotheses:
        if spec.hypotheses is not None and h.id not in spec.hypotheses:
            continue
        targets: list[tuple[str, list[tuple[str, str]]]] = []
        for p in params:
            if spec.by == "parameter":
                targets.append((p, [(p, g.id) for g in study.groups]))
            else:
                targets += [(f"{p}.{g.id}", [(p, g.id)]) for g in study.groups]
        for target, slot_list in targets:
            real = PARAMETERS[slot_list[0][0]][0] == "real"
            for change, fn in _changes(spec, real):
                priors = dict(h.priors)
                for s in slot_list:
                    priors[s] = fn(h.priors[s])
                variants.append(Variant(f"{h.id}/{target}/{change}", h.id, target, change, priors, tuple(slot_list)))
        if spec.joint and len(params) > 1:
            every = [(p, g.id) for p in params for g in study.groups]
            real_slots = [s for s in every if PARAMETERS[s[0]][0] == "real"]
            for change, fn in _changes(spec, True):
                chosen = real_slots if change.startswith("shift") else every
                if not chosen:
                    continue
                priors = dict(h.priors)
                for s in chosen:
                    priors[s] = fn(h.priors[s])
                variants.append(Variant(f"{h.id}/all/{change}", h.id, "all", change, priors, tuple(chosen)))
    return variants


__all__ = [
    "BY_MODES",
    "REFIT_MODES",
    "SPEC_KEYS",
    "GridSpec",
    "SensitivitySpecError",
    "Variant",
    "build_grid",
    "check_spec",
    "grid_spec_from",
    "parse_grid_spec",
    "read_grid_file",
    "scale_prior",
    "shift_prior",
]
