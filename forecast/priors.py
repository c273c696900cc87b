"""Priors as plain data: a distribution name from a fixed set plus its keyword arguments.

The format follows pymc-extras' ``Prior`` dict (``{"dist": "Normal", "kwargs": {...}}``) so
analysts who know the PyMC ecosystem recognise it, without depending on pymc-extras (which pins
an older PyMC). A prior becomes a PyMC random variable only when the model is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from forecast.errors import allowed_list, did_you_mean

Support = Literal["real", "positive"]


@dataclass(frozen=True)
class Family:
    """A distribution family a study may name, with the order of its parameters."""

    name: str
    params: tuple[str, ...]
    support: Support
    positive_params: tuple[str, ...]


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("Normal", ("mu", "sigma"), "real", ("sigma",)),
        Family("StudentT", ("nu", "mu", "sigma"), "real", ("nu", "sigma")),
        Family("HalfNormal", ("sigma",), "positive", ("sigma",)),
        Family("HalfStudentT", ("nu", "sigma"), "positive", ("nu", "sigma")),
        Family("LogNormal", ("mu", "sigma"), "positive", ("sigma",)),
        Family("Gamma", ("alpha", "beta"), "positive", ("alpha", "beta")),
        Family("Exponential", ("lam",), "positive", ("lam",)),
    )
}

# Every family has at most this many parameters; the compiled model reserves this many slots.
MAX_PARAMS = max(len(f.params) for f in FAMILIES.values())


@dataclass(frozen=True)
class Prior:
    """A validated prior: family name and parameter values in the family's order."""

    dist: str
    kwargs: dict[str, float]

    @property
    def family(self) -> Family:
        return FAMILIES[self.dist]

    def values(self) -> tuple[float, ...]:
        return tuple(float(self.kwargs[p]) for p in self.family.params)

    def to_dict(self) -> dict:
        return {"dist": self.dist, "kwargs": dict(self.kwargs)}

    def describe(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.kwargs.items())
        return f"{self.dist}({args})"


def parse_prior(raw: object, where: str, support: Support) -> tuple[Prior | None, list[str]]:
    """Check a raw ``{"dist": ..., "kwargs": {...}}`` value; return the prior or the problems."""
    if not isinstance(raw, dict):
        return None, [f'{where}: expected a table like {{ dist = "Normal", kwargs = {{ mu = 0, sigma = 1 }} }}']
    problems: list[str] = []
    unknown = set(raw) - {"dist", "kwargs"}
    for key in sorted(unknown):
        problems.append(
            f"{where}: unknown key '{key}'{did_you_mean(key, ['dist', 'kwargs'])}; allowed: 'dist', 'kwargs'"
        )
    dist = raw.get("dist")
    if dist not in FAMILIES:
        allowed = [n for n, f in FAMILIES.items() if f.support == support]
        problems.append(
            f"{where}.dist: unknown distribution {dist!r}{did_you_mean(str(dist), FAMILIES)}; "
            f"allowed here: {allowed_list(allowed)}"
        )
        return None, problems
    family = FAMILIES[dist]
    if family.support != support:
        allowed = [n for n, f in FAMILIES.items() if f.support == support]
        what = "positive values" if support == "positive" else "any real value"
        problems.append(
            f"{where}.dist: {dist} does not fit a parameter that takes {what}; allowed here: {allowed_list(allowed)}"
        )
    kwargs = raw.get("kwargs")
    if not isinstance(kwargs, dict):
        problems.append(f"{where}.kwargs: expected a table of {dist} parameters {allowed_list(family.params)}")
        return None, problems
    for key in sorted(set(kwargs) - set(family.params)):
        problems.append(
            f"{where}.kwargs: unknown parameter '{key}' for {dist}{did_you_mean(key, family.params)}; "
            f"{dist} takes {allowed_list(family.params)}"
        )
    clean: dict[str, float] = {}
    for name in family.params:
        if name not in kwargs:
            problems.append(f"{where}.kwargs: missing parameter '{name}' for {dist}")
            continue
        value = kwargs[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            problems.append(f"{where}.kwargs.{name}: expected a finite number, got {value!r}")
            continue
        if name in family.positive_params and value <= 0:
            problems.append(f"{where}.kwargs.{name}: must be > 0, got {value!r}")
            continue
        clean[name] = float(value)
    if problems:
        return None, problems
    return Prior(dist, clean), []
