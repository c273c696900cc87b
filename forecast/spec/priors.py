"""Priors as plain data: a distribution name from a fixed set plus its keyword arguments.

The format follows pymc-extras' ``Prior`` dict (``{"dist": "Normal", "kwargs": {...}}``) so
analysts who know the PyMC ecosystem recognise it, without depending on pymc-extras (which pins
an older PyMC). A prior becomes a PyMC random variable only when the model is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from forecast.errors import allowed_list, did_you_mean

Support = Literal["real", "positive"]

# Longest text of a user's value echoed in a message (a 200 MiB field must not become a 200 MB error).
ECHO_LIMIT = 80


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` for a message, cut to about ``limit`` characters with the length left out.

    Control characters show escaped (``repr``), so a NUL or an escape sequence in a user's value
    can never reach a terminal raw.
    """
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit + 2 else f"{text[:limit]}... ({len(text):,} characters)"


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
    """A validated prior: family name and parameter values in the family's order.

    ``statement`` is set when the prior was elicited from an analyst's statement (see
    forecast.spec.elicitation): it records what was stated next to the fitted distribution. It does
    not take part in comparisons: two priors with the same family and parameters are equal.
    """

    dist: str
    kwargs: dict[str, float]
    statement: Any = field(default=None, compare=False, repr=False)

    @property
    def family(self) -> Family:
        return FAMILIES[self.dist]

    def values(self) -> tuple[float, ...]:
        return tuple(float(self.kwargs[p]) for p in self.family.params)

    def to_dict(self) -> dict:
        out = {"dist": self.dist, "kwargs": dict(self.kwargs)}
        if self.statement is not None:
            out["statement"] = self.statement.to_dict()
        return out

    def describe(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.kwargs.items())
        return f"{self.dist}({args})"

    # Densities, quantiles and draws with scipy, in PyMC's parameterisation of each family
    # (checked against ``pm.logp`` in tests/test_sensitivity.py).

    def logpdf(self, x: Any) -> np.ndarray:
        """Log density at ``x`` (an array of values of the hyperparameter)."""
        from scipy import stats

        x = np.asarray(x, dtype=float)
        k = self.kwargs
        if self.dist == "HalfStudentT":
            out = np.log(2.0) + stats.t.logpdf(x, k["nu"], 0.0, k["sigma"])
            return np.where(x >= 0, out, -np.inf)
        return self._scipy().logpdf(x)

    def cdf(self, x: Any) -> np.ndarray:
        from scipy import stats

        x = np.asarray(x, dtype=float)
        if self.dist == "HalfStudentT":
            k = self.kwargs
            return np.clip(2.0 * stats.t.cdf(x, k["nu"], 0.0, k["sigma"]) - 1.0, 0.0, 1.0)
        return self._scipy().cdf(x)

    def ppf(self, q: Any) -> np.ndarray:
        from scipy import stats

        q = np.asarray(q, dtype=float)
        if self.dist == "HalfStudentT":
            k = self.kwargs
            return stats.t.ppf((1.0 + q) / 2.0, k["nu"], 0.0, k["sigma"])
        return self._scipy().ppf(q)

    def sample(self, rng: np.random.Generator, size: Any) -> np.ndarray:
        """Independent draws (inverse-CDF sampling, so one generator serves every family)."""
        return self.ppf(rng.uniform(size=size))

    def _scipy(self):
        from scipy import stats

        k = self.kwargs
        if self.dist == "Normal":
            return stats.norm(loc=k["mu"], scale=k["sigma"])
        if self.dist == "StudentT":
            return stats.t(df=k["nu"], loc=k["mu"], scale=k["sigma"])
        if self.dist == "HalfNormal":
            return stats.halfnorm(scale=k["sigma"])
        if self.dist == "LogNormal":
            return stats.lognorm(s=k["sigma"], scale=math.exp(k["mu"]))
        if self.dist == "Gamma":
            return stats.gamma(a=k["alpha"], scale=1.0 / k["beta"])
        if self.dist == "Exponential":
            return stats.expon(scale=1.0 / k["lam"])
        raise ValueError(f"no scipy counterpart for {self.dist}")  # pragma: no cover


def parse_prior(raw: object, where: str, support: Support) -> tuple[Prior | None, list[str]]:
    """Check a raw ``{"dist": ..., "kwargs": {...}}`` value; return the prior or the problems."""
    if not isinstance(raw, dict):
        return None, [f'{where}: expected a table like {{ dist = "Normal", kwargs = {{ mu = 0, sigma = 1 }} }}']
    problems: list[str] = []
    unknown = set(raw) - {"dist", "kwargs"}
    for key in sorted(unknown):
        problems.append(
            f"{where}: unknown key {shown(key)}{did_you_mean(key, ['dist', 'kwargs'])}; allowed: 'dist', 'kwargs'"
        )
    dist = raw.get("dist")
    if not isinstance(dist, str) or dist not in FAMILIES:
        allowed = [n for n, f in FAMILIES.items() if f.support == support]
        problems.append(
            f"{where}.dist: unknown distribution {shown(dist)}{did_you_mean(str(dist), FAMILIES)}; "
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
            f"{where}.kwargs: unknown parameter {shown(key)} for {dist}{did_you_mean(key, family.params)}; "
            f"{dist} takes {allowed_list(family.params)}"
        )
    clean: dict[str, float] = {}
    for name in family.params:
        if name not in kwargs:
            problems.append(f"{where}.kwargs: missing parameter '{name}' for {dist}")
            continue
        value = kwargs[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            problems.append(f"{where}.kwargs.{name}: expected a finite number, got {shown(value)}")
            continue
        if name in family.positive_params and value <= 0:
            problems.append(f"{where}.kwargs.{name}: must be > 0, got {shown(value)}")
            continue
        clean[name] = float(value)
    if problems:
        return None, problems
    return Prior(dist, clean), []
