"""Priors stated in an analyst's terms, converted to the model's hyperparameter priors.

Instead of ``{ dist, kwargs }`` on the model's log-odds scale, a study may state a prior as an
interval the analyst can judge and how sure they are of it, for example

    tilt.russia  = { share_between = [0.6, 0.9], mass = 0.9 }
    trend.all    = { share_moves_at_most = 0.05, mass = 0.9 }
    spread.nato  = { share_sd_at_most = 0.15, mass = 0.8, dist = "Gamma" }
    tilt.nato    = { between = [0.5, 2.5], mass = 0.9, dist = "StudentT", nu = 4 }

The statement is mapped to an interval on the model's scale (below) and the maximum-entropy
distribution of the chosen family (``dist``; Normal for tilt and trend, HalfNormal for spread
and volatility by default) that puts ``mass`` in that interval is fitted with PreliZ's
``maxent``. The fitted prior keeps its statement (``Prior.statement``), so both can be shown.
A fit that misses the stated mass by more than one percentage point is an error.

Statements and their mapping to the model's scale (``p0`` is the reference share, below):

- ``between = [lo, hi]``: any hyperparameter, on the model's own scale (log-odds, log-odds per
  year, ...); for spread and volatility ``lo >= 0``.
- ``share_between = [lo, hi]`` (tilt only): the cooperative share with the group in a typical
  domain at the reference quarter, ``0 < lo < hi < 1``; the interval is ``[logit lo, logit hi]``.
- ``share_change_between = [lo, hi]`` (trend only): the share changes by between ``lo`` and
  ``hi`` (fractions: 0.05 is five points) per year, starting from ``p0``; the interval is
  ``[logit(p0 + lo) - logit(p0), logit(p0 + hi) - logit(p0)]``, exact, not linearised.
- ``share_moves_at_most = x`` (trend only): the share moves by at most ``x`` per year, up or
  down. The log-odds bound ``b`` is the smaller of ``logit(p0 + x) - logit(p0)`` and
  ``logit(p0) - logit(p0 - x)``: a trend of ``±b`` moves the share from ``p0`` by at most ``x``
  in *either* direction (on the logistic curve the same log-odds step moves a share near 0.5
  more than one near 0 or 1, so the side towards 0.5 is the binding one). The interval is
  ``[-b, b]``.
- ``share_sd_at_most = x`` (spread, volatility): one standard deviation of the domain effects
  (spread) or of a quarter's random-walk step (volatility) moves the share by at most ``x``,
  converted to log-odds with the same ``b``; the interval is ``[0, b]``.

The reference share ``p0`` is where the share sits at the reference quarter under this
hypothesis: by default the median of the hypothesis's own tilt prior for that group, mapped
to a share (``expit(median tilt)``); ``reference_share = 0.7`` overrides it. A statement for
``all`` groups is fitted separately for each group when ``p0`` differs between groups.

PreliZ is imported only when a study contains a statement (it takes seconds to import).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

from forecast.errors import allowed_list, did_you_mean
from forecast.spec.priors import FAMILIES, Prior, Support, shown

# Statement kind -> (hyperparameters it may describe, what it states).
KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "between": (("tilt", "spread", "trend", "volatility"), "an interval on the model's own scale"),
    "share_between": (("tilt",), "an interval for the cooperative share, e.g. [0.6, 0.9]"),
    "share_change_between": (("trend",), "an interval for the change of the share per year, e.g. [0.0, 0.1]"),
    "share_moves_at_most": (("trend",), "the most the share moves per year, up or down, e.g. 0.05"),
    "share_sd_at_most": (("spread", "volatility"), "the most one standard deviation moves the share, e.g. 0.1"),
}
OPTIONS = ("mass", "dist", "nu", "reference_share", "says")
STATEMENT_KEYS = tuple(KINDS) + OPTIONS
DEFAULT_MASS = 0.9
DEFAULT_NU = 4.0
DEFAULT_DIST: dict[Support, str] = {"real": "Normal", "positive": "HalfNormal"}
MASS_TOLERANCE = 0.01  # the fitted prior must put the stated mass in the interval within 1 point
NEEDS_REFERENCE = ("share_change_between", "share_moves_at_most", "share_sd_at_most")
INTERVAL_KINDS = ("between", "share_between", "share_change_between")


@dataclass(frozen=True)
class Statement:
    """What the analyst stated, validated but not yet fitted."""

    parameter: str
    kind: str
    values: tuple[float, ...]  # (lo, hi) for intervals, (x,) for bounds
    mass: float
    dist: str
    nu: float | None = None
    reference_share: float | None = None
    says: str | None = None

    def to_dict(self) -> dict:
        out: dict = {
            self.kind: list(self.values) if len(self.values) > 1 else self.values[0],
            "mass": self.mass,
            "dist": self.dist,
        }
        if self.nu is not None:
            out["nu"] = self.nu
        if self.reference_share is not None:
            out["reference_share"] = self.reference_share
        if self.says:
            out["says"] = self.says
        return out


@dataclass(frozen=True)
class Elicited:
    """A statement together with its interval on the model's scale and the fit's result.

    Stored as ``Prior.statement`` of the fitted prior.
    """

    statement: Statement
    group: str
    lower: float  # the interval on the model's scale that the fitted prior gives ``mass``
    upper: float
    reference_share: float | None  # the p0 used (None when the statement does not need one)
    fitted_mass: float

    def text(self) -> str:
        """The statement in plain language."""
        s, g = self.statement, self.group
        sure = f"{s.mass:.0%} sure"
        p0 = f" from a share of {self.reference_share:.0%}" if self.reference_share is not None else ""
        if s.kind == "share_between":
            lo, hi = s.values
            text = f"{sure} that {lo:.0%} to {hi:.0%} of interactions with '{g}' are cooperative (typical domain, reference quarter)"
        elif s.kind == "share_change_between":
            lo, hi = s.values
            text = f"{sure} that the cooperative share with '{g}' changes by {100 * lo:+.1f} to {100 * hi:+.1f} points a year{p0}"
        elif s.kind == "share_moves_at_most":
            text = f"{sure} that the cooperative share with '{g}' moves by at most {100 * s.values[0]:.1f} points a year{p0}"
        elif s.kind == "share_sd_at_most" and s.parameter == "spread":
            text = (
                f"{sure} that domains' cooperative shares with '{g}' differ from the typical one by at most "
                f"{100 * s.values[0]:.1f} points (one standard deviation{p0})"
            )
        elif s.kind == "share_sd_at_most":
            text = (
                f"{sure} that the cooperative share with '{g}' swings by at most {100 * s.values[0]:.1f} points "
                f"from one quarter to the next (one standard deviation{p0})"
            )
        else:
            lo, hi = s.values
            text = f"{sure} that {s.parameter} for '{g}' lies between {lo:g} and {hi:g} on the model's scale"
        if s.says:
            text += f' ("{s.says}")'
        return text

    def to_dict(self) -> dict:
        return {
            "stated": self.statement.to_dict(),
            "text": self.text(),
            "model_interval": [self.lower, self.upper],
            "reference_share": self.reference_share,
            "fitted_mass": self.fitted_mass,
        }


def is_statement(raw: object) -> bool:
    """Whether a prior entry is a statement rather than ``{ dist, kwargs }``.

    An entry without ``kwargs`` that has a statement key (or a near miss of one, so a typo
    gets a statement's error messages rather than the ``{ dist, kwargs }`` ones) is a statement.
    """
    if not isinstance(raw, dict) or "kwargs" in raw:
        return False
    for key in raw:
        if key in STATEMENT_KEYS or (key != "dist" and did_you_mean(str(key), KINDS)):
            return True
    return False


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def parse_statement(raw: dict, where: str, parameter: str, support: Support) -> tuple[Statement | None, list[str]]:
    """Validate a statement entry; return it or every problem found."""
    problems: list[str] = []
    for key in sorted(set(raw) - set(STATEMENT_KEYS)):
        problems.append(
            f"{where}: unknown key '{key}'{did_you_mean(str(key), STATEMENT_KEYS)}; a prior statement takes one of "
            f"{allowed_list(KINDS)} and optionally {allowed_list(OPTIONS)}"
        )
    kinds = [k for k in KINDS if k in raw]
    allowed_here = [k for k, (params, _) in KINDS.items() if parameter in params]
    kind = None
    if not kinds:
        problems.append(
            f"{where}: a prior statement needs one of {allowed_list(allowed_here)} "
            f"(or {{ dist, kwargs }} for a distribution on the model's scale)"
        )
    elif len(kinds) > 1:
        problems.append(f"{where}: give one statement, not {allowed_list(kinds)}")
    elif parameter not in KINDS[kinds[0]][0]:
        problems.append(
            f"{where}.{kinds[0]}: not available for {parameter}; for {parameter} state "
            + " or ".join(f"'{k}' ({KINDS[k][1]})" for k in allowed_here)
        )
    else:
        kind = kinds[0]
    values = None if kind is None else _parse_values(raw[kind], f"{where}.{kind}", kind, parameter, support, problems)

    mass = DEFAULT_MASS
    if "mass" in raw:
        m = _number(raw["mass"])
        if m is None or not 0 < m < 1:
            problems.append(
                f"{where}.mass: expected a probability between 0 and 1 (e.g. 0.9 for 90% sure), got {raw['mass']!r}"
            )
        else:
            mass = m

    allowed_dists = [n for n, f in FAMILIES.items() if f.support == support]
    dist = raw.get("dist", DEFAULT_DIST[support])
    if not isinstance(dist, str) or dist not in FAMILIES:
        problems.append(
            f"{where}.dist: unknown distribution {shown(dist)}{did_you_mean(str(dist), FAMILIES)}; "
            f"allowed here: {allowed_list(allowed_dists)}"
        )
        dist = None  # reported; the checks below must not trip over a value that is not a name
    elif dist not in allowed_dists:
        what = "positive values" if support == "positive" else "any real value"
        problems.append(
            f"{where}.dist: {dist} does not fit a parameter that takes {what}; allowed here: {allowed_list(allowed_dists)}"
        )

    nu = None
    if dist in ("StudentT", "HalfStudentT"):
        nu = DEFAULT_NU
        if "nu" in raw:
            n = _number(raw["nu"])
            if n is None or n <= 0:
                problems.append(f"{where}.nu: expected degrees of freedom > 0, got {raw['nu']!r}")
            else:
                nu = n
    elif "nu" in raw and dist in FAMILIES:
        problems.append(f"{where}.nu: only StudentT and HalfStudentT take 'nu' (dist is {dist})")

    reference = None
    if "reference_share" in raw:
        if kind is not None and kind not in NEEDS_REFERENCE:
            problems.append(
                f"{where}.reference_share: only statements about share changes "
                f"({allowed_list(NEEDS_REFERENCE)}) use a reference share"
            )
        else:
            r = _number(raw["reference_share"])
            if r is None or not 0 < r < 1:
                problems.append(
                    f"{where}.reference_share: expected a share between 0 and 1, got {raw['reference_share']!r}"
                )
            else:
                reference = r

    says = raw.get("says")
    if says is not None and not isinstance(says, str):
        problems.append(f"{where}.says: expected text (the analyst's own words), got {says!r}")
        says = None

    if problems or values is None or kind is None:
        return None, problems
    return Statement(parameter, kind, values, mass, str(dist), nu, reference, says), []


def _parse_values(
    value: object, where: str, kind: str, parameter: str, support: Support, problems: list[str]
) -> tuple[float, ...] | None:
    if kind in INTERVAL_KINDS:
        if not isinstance(value, list | tuple) or len(value) != 2:
            problems.append(f"{where}: expected an interval [lower, upper], got {value!r}")
            return None
        lo, hi = (_number(v) for v in value)
        if lo is None or hi is None:
            problems.append(f"{where}: expected two finite numbers, got {value!r}")
            return None
        if not lo < hi:
            problems.append(f"{where}: the lower end {lo:g} must be below the upper end {hi:g}")
            return None
        if kind == "share_between" and not 0 < lo < hi < 1:
            problems.append(f"{where}: shares must lie strictly between 0 and 1 (e.g. [0.6, 0.9]), got {value!r}")
            return None
        if kind == "share_change_between" and not -1 < lo < hi < 1:
            problems.append(
                f"{where}: changes of the share are fractions between -1 and 1 (0.05 is five points), got {value!r}"
            )
            return None
        if kind == "between" and support == "positive" and lo < 0:
            problems.append(
                f"{where}: {parameter} is positive, so the interval must start at 0 or above, got {value!r}"
            )
            return None
        return (lo, hi)
    x = _number(value)
    if x is None or not 0 < x < 1:
        problems.append(f"{where}: expected a share of points between 0 and 1 (0.05 is five points), got {value!r}")
        return None
    return (x,)


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def symmetric_bound(p0: float, x: float) -> float | None:
    """The log-odds step b such that moving by ±b from share p0 moves the share by at most x."""
    sides = []
    if p0 + x < 1:
        sides.append(_logit(p0 + x) - _logit(p0))
    if p0 - x > 0:
        sides.append(_logit(p0) - _logit(p0 - x))
    return min(sides) if sides else None


def model_interval(statement: Statement, p0: float | None) -> tuple[float, float] | str:
    """The statement's interval on the model's scale, or why there is none."""
    s = statement
    if s.kind == "between":
        return s.values[0], s.values[1]
    if s.kind == "share_between":
        return _logit(s.values[0]), _logit(s.values[1])
    assert p0 is not None
    if s.kind == "share_change_between":
        lo, hi = s.values
        if not (0 < p0 + lo and p0 + hi < 1):
            return (
                f"from a reference share of {p0:.1%}, a change of {100 * lo:+.1f} to {100 * hi:+.1f} points "
                "leaves the range 0-100%"
            )
        return _logit(p0 + lo) - _logit(p0), _logit(p0 + hi) - _logit(p0)
    b = symmetric_bound(p0, s.values[0])
    if b is None:
        return f"a share of {p0:.1%} cannot move by {100 * s.values[0]:.1f} points in either direction"
    return (-b, b) if s.kind == "share_moves_at_most" else (0.0, b)


@functools.lru_cache(maxsize=512)
def maxent(dist: str, lower: float, upper: float, mass: float, nu: float | None) -> Prior:
    """The maximum-entropy ``dist`` with ``mass`` in [lower, upper].

    Two cases have a closed form and skip PreliZ (and its import, seconds long): a Normal
    (entropy grows with sigma, and for a given mass sigma is largest with the interval centred
    on mu, so mu is the midpoint and sigma = half-width / z) and a HalfNormal on [0, upper]
    (sigma = upper / z), with z the standard normal's (1 + mass) / 2 quantile. Tests check that
    PreliZ's numerical maxent agrees. Every other case is fitted by PreliZ's ``maxent``.
    """
    if dist == "Normal" or (dist == "HalfNormal" and lower == 0):
        from scipy.stats import norm

        z = float(norm.ppf((1.0 + mass) / 2.0))
        if dist == "Normal":
            return Prior("Normal", {"mu": (lower + upper) / 2.0, "sigma": (upper - lower) / (2.0 * z)})
        return Prior("HalfNormal", {"sigma": upper / z})
    return preliz_maxent(dist, lower, upper, mass, nu)


def preliz_maxent(dist: str, lower: float, upper: float, mass: float, nu: float | None) -> Prior:
    """PreliZ's maximum-entropy fit of ``dist`` with ``mass`` in [lower, upper]."""
    import preliz as pz

    family = FAMILIES[dist]
    fixed = {"nu": nu} if nu is not None else {}
    d = getattr(pz, dist)(**fixed)
    with warnings.catch_warnings():
        # PreliZ warns when it misses the mass; the caller checks the mass itself.
        warnings.simplefilter("ignore")
        pz.maxent(d, lower, upper, mass, plot=False)
    values = dict(zip(d.param_names, (float(v) for v in d.params), strict=True))
    return Prior(dist, {p: values[p] for p in family.params})


def reference_share(statement: Statement, tilt: Prior | None) -> float | None:
    """p0 for a statement about share changes: stated, or the median of the tilt prior as a share."""
    if statement.kind not in NEEDS_REFERENCE:
        return None
    if statement.reference_share is not None:
        return statement.reference_share
    if tilt is None:
        return None
    return _expit(float(tilt.ppf(0.5)))


def elicit(statement: Statement, group: str, p0: float | None, where: str) -> tuple[Prior | None, list[str]]:
    """Fit the statement's prior for one group; check the stated mass is met within 1 point."""
    interval = model_interval(statement, p0)
    if isinstance(interval, str):
        hint = "" if statement.reference_share is not None else " or give 'reference_share'"
        return None, [f"{where}: {interval}; state a smaller change{hint}"]
    lower, upper = interval
    try:
        fitted = maxent(statement.dist, lower, upper, statement.mass, statement.nu)
    except (ValueError, ArithmeticError) as e:  # PreliZ: ValueError for impossible constraints; overflow in its fit
        return None, [f"{where}: could not fit a {statement.dist} to the statement ({e})"]
    achieved = float(fitted.cdf(upper) - fitted.cdf(lower))
    if not abs(achieved - statement.mass) <= MASS_TOLERANCE or not all(math.isfinite(v) for v in fitted.values()):
        return None, [
            f"{where}: no {statement.dist} puts {statement.mass:.0%} of its mass in [{lower:.4g}, {upper:.4g}] on the "
            f"model's scale (the closest maximum-entropy fit puts {achieved:.1%} there); choose another 'dist' "
            f"or a different interval"
        ]
    record = Elicited(statement, group, lower, upper, p0, achieved)
    return Prior(fitted.dist, dict(fitted.kwargs), statement=record), []


@dataclass
class PendingStatement:
    """A statement entry found while reading a hypothesis's priors, fitted once tilts are known."""

    parameter: str
    group_key: str  # a group id or 'all'
    raw: dict
    explicit_groups: frozenset[str]  # groups with their own entry for this parameter


def resolve_statements(
    where: str,
    pending: list[PendingStatement],
    out: dict[tuple[str, str], Prior],
    group_ids: list[str],
    supports: dict[str, Support],
    all_groups: str,
    problems: list[str],
) -> None:
    """Fit every pending statement of one hypothesis into ``out`` (tilt first: others may need it)."""
    for item in sorted(pending, key=lambda p: p.parameter != "tilt"):
        entry = f"{where}.priors.{item.parameter}.{item.group_key}"
        statement, errs = parse_statement(item.raw, entry, item.parameter, supports[item.parameter])
        problems.extend(errs)
        if statement is None:
            continue
        targets = group_ids if item.group_key == all_groups else [item.group_key]
        for g in targets:
            if item.group_key == all_groups and g in item.explicit_groups:
                continue  # a group-specific entry overrides 'all'
            p0 = reference_share(statement, out.get(("tilt", g)))
            if statement.kind in NEEDS_REFERENCE and p0 is None:
                continue  # the tilt prior is missing or invalid; that problem is reported already
            # Fits are cached (see ``maxent``), so groups with the same p0 share one fit.
            prior, errs = elicit(statement, g, p0, entry if len(targets) == 1 else f"{entry} (group '{g}')")
            if prior is None:
                problems.extend(errs)
                if statement.kind not in NEEDS_REFERENCE:
                    break  # the same failure for every group: report it once
                continue
            out[(item.parameter, g)] = prior
