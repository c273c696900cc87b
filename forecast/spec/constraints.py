"""Constraint (informative) hypotheses on one shared encompassing model: the study file's schema.

A prior-specified hypothesis is a full set of priors; its Bayes factor judges how wide each was
written. A constraint hypothesis is instead a claim about the world, stated as constraints on
quantities an analyst can judge, and its prior is ONE shared encompassing prior restricted to
those constraints (Klugkist, Laudy & Hoijtink 2005; Hoijtink 2012; the R package ``bain``).
Its Bayes factor against the encompassing model is the posterior mass of its region over its
prior mass, both from one fit of the encompassing model (``forecast.stats.encompassing``).

In a study file::

    [encompassing.priors]              # the shared prior, written like a hypothesis's priors
    tilt.all = { share_between = [0.1, 0.9], mass = 0.9 }
    ...
    [encompassing.periods]             # optional names for periods
    before = "2015Q1..2019Q2"
    after = "2019Q3..2026Q3"

    [[constraint_hypotheses]]
    id = "hedging"
    label = "Pragmatic hedging"
    claim = "..."
    constraints = [                    # all must hold (a conjunction)
      "domain_gap(russia, after) > 20%",
      "share(nato, after) > share(russia, after)",
    ]

    [[constraint_hypotheses]]
    id = "other"
    label = "None of these"
    complement = true                  # the region where no other constraint hypothesis holds

Quantities (shares are fractions, 0.2 or 20% alike; ``%`` always divides by 100):

- ``share(group, period[, domain])``: the probability that an interaction with the group is
  cooperative, averaged over the period's quarters and (without a domain) over the study's
  domains with equal weight;
- ``change(group, from, to[, domain])``: ``share(group, to) - share(group, from)``;
- ``trend(group)``: the change of the share over one year from the reference quarter in a
  typical domain (log-odds ``tilt``), from the long-run trend alone (random walk excluded):
  ``expit(tilt + trend) - expit(tilt)``;
- ``domain_gap(group, period)``: the share in the group's most cooperative domain minus the
  share in its least cooperative one, over the period.

A period is a quarter (``2019Q3``), a year (``2019``), a range of either (``2019Q3..2021Q2``,
``2016..2018``), a name from ``[encompassing.periods]``, or ``all`` (the study's whole time).

A constraint is ``<left> <op> <right>`` with ``op`` one of ``>``, ``<``, ``>=``, ``<=``, or
``~`` with ``within <margin>`` ("about equal": ``|left - right| <= margin``); each side is a
number or a sum of quantities with optional numeric factors (``share(a, 2024) - share(b, 2024)``,
``2 * trend(a)``). Everything is checked before any fit: names (with did-you-mean), periods inside
the study's time, and regions that are impossible or empty by the quantities' ranges (e.g.
``share(nato, after) > 1.2``, or ``share(x, p) > 0.6`` together with ``share(x, p) < 0.4``); a
region that is empty for a reason no range check sees is found when its prior mass is estimated
(``forecast.workflows.constraints``) and is an error there, never a zero.

Prior probabilities: leave ``prior_probability`` out everywhere for equal prior probabilities
over the constraint hypotheses and the complement (added as ``none_of_these`` when no entry says
``complement = true``); or give one for every entry, including a complement, summing to 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from forecast.errors import StudyError, allowed_list, did_you_mean
from forecast.spec.priors import Prior, shown

# Quantity name -> (arguments, (lowest, highest) value, what it is)
QUANTITIES: dict[str, tuple[tuple[str, ...], tuple[float, float], str]] = {
    "share": (
        ("group", "period", "domain?"),
        (0.0, 1.0),
        "probability that an interaction with the group is cooperative over a period",
    ),
    "change": (
        ("group", "from", "to", "domain?"),
        (-1.0, 1.0),
        "change of the cooperative share from one period to another",
    ),
    "trend": (("group",), (-1.0, 1.0), "change of the share over one year from the trend alone"),
    "domain_gap": (
        ("group", "period"),
        (0.0, 1.0),
        "share in the group's most cooperative domain minus its least cooperative one",
    ),
}
OPERATORS = (">=", "<=", ">", "<", "~")
ALL_PERIOD = "all"
COMPLEMENT_ID = "none_of_these"
# The encompassing model's id in a run (its posterior is stored like a hypothesis's); reserved.
ENCOMPASSING_ID = "encompassing"
PRIOR_SUM_TOLERANCE = 0.002
DEFAULT_PRIOR_DRAWS = 40_000


class _Encompassing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priors: dict[str, dict[str, object]]
    periods: dict[StrictStr, StrictStr] = {}
    prior_draws: int = DEFAULT_PRIOR_DRAWS


class _ConstraintHypothesis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: StrictStr
    label: StrictStr
    claim: StrictStr = ""
    prior_probability: float | None = None
    constraints: list[StrictStr] = []
    complement: StrictBool = False


@dataclass(frozen=True)
class Period:
    """Quarters ``start..end`` (absolute quarter indices, ``year * 4 + quarter - 1``)."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Quantity:
    kind: str
    group: str
    periods: tuple[Period, ...] = ()
    domain: str | None = None

    @property
    def text(self) -> str:
        args = [self.group, *(p.text for p in self.periods)] + ([self.domain] if self.domain else [])
        return f"{self.kind}({', '.join(args)})"

    @property
    def bounds(self) -> tuple[float, float]:
        return QUANTITIES[self.kind][1]


@dataclass(frozen=True)
class Term:
    """``coef * quantity``, or the constant ``coef`` when ``quantity`` is None."""

    coef: float
    quantity: Quantity | None = None


@dataclass(frozen=True)
class Constraint:
    """``sum(left) op sum(right)``; for ``~``, ``|left - right| <= margin``."""

    text: str
    left: tuple[Term, ...]
    op: str
    right: tuple[Term, ...]
    margin: float | None = None

    @property
    def difference(self) -> tuple[Term, ...]:
        """``left - right`` as terms."""
        return self.left + tuple(Term(-t.coef, t.quantity) for t in self.right)

    @property
    def quantities(self) -> tuple[Quantity, ...]:
        return tuple(dict.fromkeys(t.quantity for t in self.difference if t.quantity is not None))


@dataclass(frozen=True)
class ConstraintHypothesis:
    id: str
    label: str
    claim: str
    prior_probability: float
    constraints: tuple[Constraint, ...]
    complement: bool = False

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "label": self.label,
            "claim": self.claim,
            "prior_probability": self.prior_probability,
            "constraints": [c.text for c in self.constraints],
            "complement": self.complement,
        }


@dataclass(frozen=True)
class ConstraintStudy:
    """The study's encompassing prior and its constraint hypotheses (the complement included)."""

    priors: dict[tuple[str, str], Prior]
    hypotheses: tuple[ConstraintHypothesis, ...]
    periods: dict[str, Period] = field(default_factory=dict)
    prior_draws: int = DEFAULT_PRIOR_DRAWS

    @property
    def complement(self) -> ConstraintHypothesis:
        return next(h for h in self.hypotheses if h.complement)

    @property
    def constrained(self) -> tuple[ConstraintHypothesis, ...]:
        return tuple(h for h in self.hypotheses if not h.complement)


# --- parsing -----------------------------------------------------------------------------------

_QUARTER = re.compile(r"(\d{4})Q([1-4])")
_YEAR = re.compile(r"\d{4}")
_TOKEN = re.compile(
    r"\s*(?:(?P<period>\d{4}(?:Q[1-4])?\.\.\d{4}(?:Q[1-4])?|\d{4}Q[1-4])|(?P<num>\d+(?:\.\d*)?|\.\d+)(?P<pct>%)?"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>>=|<=|>|<|~|==|=|!=)|(?P<sym>[(),+\-*]))"
)


class _ParseError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise _ParseError(f"cannot read {shown(text[pos:].strip())}")
        pos = m.end()
        # A period literal is tried before a number, so '2019Q3' is one token; a bare '2019' is a number.
        kind = next(k for k in ("period", "num", "name", "op", "sym") if m.group(k) is not None)
        value = m.group(kind) + ((m.group("pct") or "") if kind == "num" else "")
        out.append((kind, value))
    return out


def _quarter(text: str, end: bool) -> int:
    m = _QUARTER.fullmatch(text)
    if m:
        return int(m.group(1)) * 4 + int(m.group(2)) - 1
    return int(text) * 4 + (3 if end else 0)


def _label(q: int) -> str:
    return f"{q // 4}Q{q % 4 + 1}"


class _Context:
    def __init__(
        self,
        groups: list[str],
        domains: list[str],
        start: int,
        end: int,
        periods: dict[str, Period],
    ):
        self.groups, self.domains, self.start, self.end, self.periods = groups, domains, start, end, periods

    def period(self, text: str) -> Period:
        if text == ALL_PERIOD:
            return Period(ALL_PERIOD, self.start, self.end)
        if text in self.periods:
            return self.periods[text]
        lo, _, hi = text.partition("..")
        hi = hi or lo
        if not all(_QUARTER.fullmatch(x) or _YEAR.fullmatch(x) for x in (lo, hi)):
            names = [*self.periods, ALL_PERIOD]
            raise _ParseError(
                f"{shown(text)} is not a period{did_you_mean(text, names)}: write a quarter (2019Q3), a year "
                f"(2019), a range (2019Q3..2021Q2, 2016..2018), 'all' or a name from [encompassing.periods] "
                f"({allowed_list(self.periods) or 'none defined'})"
            )
        a, b = _quarter(lo, False), _quarter(hi, True)
        if b < a:
            raise _ParseError(f"the period {shown(text)} ends before it starts")
        if a < self.start or b > self.end:
            raise _ParseError(
                f"the period {shown(text)} ({_label(a)}..{_label(b)}) is not inside the study's time "
                f"{_label(self.start)}..{_label(self.end)}"
            )
        return Period(text, a, b)


def _call(name: str, args: list[str], ctx: _Context) -> Quantity:
    if name not in QUANTITIES:
        raise _ParseError(
            f"unknown quantity {shown(name)}{did_you_mean(name, QUANTITIES)}; known: {allowed_list(QUANTITIES)}"
        )
    params = QUANTITIES[name][0]
    required = [p for p in params if not p.endswith("?")]
    if not len(required) <= len(args) <= len(params):
        raise _ParseError(f"{name} takes ({', '.join(params)}), got {len(args)} argument(s)")
    group = args[0]
    if group not in ctx.groups:
        raise _ParseError(
            f"{shown(group)} is not a group{did_you_mean(group, ctx.groups)}; known: {allowed_list(ctx.groups)}"
        )
    periods: list[Period] = []
    domain = None
    for p, a in zip(params[1:], args[1:], strict=False):
        if p == "domain?":
            if a not in ctx.domains:
                raise _ParseError(
                    f"{shown(a)} is not a domain{did_you_mean(a, ctx.domains)}; known: {allowed_list(ctx.domains)}"
                )
            domain = a
        else:
            periods.append(ctx.period(a))
    if name == "change" and periods[0] == periods[1]:
        raise _ParseError(f"change from {periods[0].text} to itself is always 0")
    return Quantity(name, group, tuple(periods), domain)


def _expression(toks: list[tuple[str, str]], i: int, ctx: _Context) -> tuple[tuple[Term, ...], int]:
    terms: list[Term] = []
    sign = 1.0
    if i < len(toks) and toks[i] == ("sym", "-"):
        sign, i = -1.0, i + 1
    while True:
        coef = sign
        if i < len(toks) and toks[i][0] == "num":
            coef *= _number(toks[i][1])
            i += 1
            if i < len(toks) and toks[i] == ("sym", "*"):
                i += 1
            else:
                terms.append(Term(coef))
                coef = None  # a constant term
        if coef is not None:
            if i >= len(toks) or toks[i][0] != "name":
                raise _ParseError("expected a quantity such as share(group, period) or a number")
            name = toks[i][1]
            if i + 1 >= len(toks) or toks[i + 1] != ("sym", "("):
                raise _ParseError(
                    f"{shown(name)} must be followed by its arguments in brackets{did_you_mean(name, QUANTITIES)}"
                )
            i += 2
            args: list[str] = []
            while i < len(toks) and toks[i] != ("sym", ")"):
                kind, value = toks[i]
                if kind == "num":
                    value = value.rstrip("%")  # a bare year, '2019'
                if kind not in ("name", "period", "num"):
                    raise _ParseError(f"unexpected {shown(value)} in the arguments of {name}")
                args.append(value)
                i += 1
                if i < len(toks) and toks[i] == ("sym", ","):
                    i += 1
            if i >= len(toks):
                raise _ParseError(f"the arguments of {name} are not closed with ')'")
            i += 1
            terms.append(Term(coef, _call(name, args, ctx)))
        if i < len(toks) and toks[i] in (("sym", "+"), ("sym", "-")):
            sign = 1.0 if toks[i][1] == "+" else -1.0
            i += 1
            continue
        return tuple(terms), i


def _number(text: str) -> float:
    return float(text[:-1]) / 100.0 if text.endswith("%") else float(text)


def parse_constraint(text: str, ctx: _Context) -> Constraint:
    toks = _tokens(text)
    left, i = _expression(toks, 0, ctx)
    if i >= len(toks) or toks[i][0] != "op":
        raise _ParseError(f"expected a comparison ({', '.join(OPERATORS)}) after the left side")
    op = toks[i][1]
    if op not in OPERATORS:
        raise _ParseError(
            f"{shown(op)} is not a comparison; use {', '.join(OPERATORS)} ('~' with 'within <margin>' for about equal)"
        )
    right, i = _expression(toks, i + 1, ctx)
    margin = None
    if i < len(toks) and toks[i] == ("name", "within"):
        if op != "~":
            raise _ParseError("'within' goes with '~' (about equal), not with " + shown(op))
        if i + 1 >= len(toks) or toks[i + 1][0] != "num":
            raise _ParseError("'within' needs a margin, e.g. 'within 0.05' or 'within 5%'")
        margin = _number(toks[i + 1][1])
        i += 2
        if not margin > 0:
            raise _ParseError("the margin of '~' must be > 0")
    elif op == "~":
        raise _ParseError("'~' (about equal) needs 'within <margin>', e.g. '~ 0 within 0.05'")
    if i != len(toks):
        raise _ParseError(f"unexpected {shown(toks[i][1])} after the constraint")
    if not any(t.quantity for t in left + right):
        raise _ParseError("compares numbers only; name at least one quantity")
    return Constraint(text.strip(), left, op, right, margin)


def _range(terms: tuple[Term, ...]) -> tuple[float, float]:
    """The range of a sum of terms from the quantities' ranges (interval arithmetic)."""
    lo = hi = 0.0
    for t in terms:
        a, b = (t.coef, t.coef) if t.quantity is None else tuple(t.coef * x for x in t.quantity.bounds)
        lo, hi = lo + min(a, b), hi + max(a, b)
    return lo, hi


def _range_problem(c: Constraint) -> str | None:
    """Why a constraint can never hold, or always holds, by its quantities' ranges; else None."""
    lo, hi = _range(c.difference)
    if c.op in (">", ">="):
        never, always = hi < 0 or (c.op == ">" and hi == 0), lo > 0 or (c.op == ">=" and lo == 0)
    elif c.op in ("<", "<="):
        never, always = lo > 0 or (c.op == "<" and lo == 0), hi < 0 or (c.op == "<=" and hi == 0)
    else:
        never = lo > c.margin or hi < -c.margin  # type: ignore[operator]
        always = -c.margin <= lo and hi <= c.margin  # type: ignore[operator]
    if never:
        return f"can never hold: left - right lies in [{lo:g}, {hi:g}]"
    if always:
        return f"always holds (left - right lies in [{lo:g}, {hi:g}]), so it constrains nothing"
    return None


def _single_bound(c: Constraint) -> tuple[Quantity, float, float] | None:
    """(quantity, lowest, highest) when the constraint bounds one quantity by a number."""
    qs = [t for t in c.difference if t.quantity is not None]
    if len(qs) != 1:
        return None
    k = qs[0].coef
    const = sum(t.coef for t in c.difference if t.quantity is None)
    # k * q + const  op  0
    if c.op == "~":
        a, b = (-c.margin - const) / k, (c.margin - const) / k  # type: ignore[operator]
        return qs[0].quantity, min(a, b), max(a, b)  # type: ignore[return-value]
    bound = -const / k
    lower = (c.op in (">", ">=")) == (k > 0)
    return (qs[0].quantity, bound, math.inf) if lower else (qs[0].quantity, -math.inf, bound)  # type: ignore[return-value]


def _empty_conjunction(cs: list[Constraint]) -> str | None:
    """Why constraints that bound the same quantity by numbers cannot hold together, or None."""
    box: dict[Quantity, tuple[float, float, list[str]]] = {}
    for c in cs:
        b = _single_bound(c)
        if b is None:
            continue
        q, lo, hi = b
        plo, phi, texts = box.get(q, (-math.inf, math.inf, []))
        box[q] = (max(plo, lo), min(phi, hi), [*texts, c.text])
    for q, (lo, hi, texts) in box.items():
        if lo > hi:
            return f"{' and '.join(shown(t) for t in texts)} cannot hold together: no value of {q.text} satisfies them"
    return None


def resolve_constraints(
    encompassing: _Encompassing | None,
    raw: list[_ConstraintHypothesis],
    *,
    groups: list[str],
    domains: list[str],
    start: int,
    end: int,
    resolve_priors: Callable[[str, dict[str, dict[str, object]]], dict[tuple[str, str], Prior]],
    id_ok: Callable[[str], bool],
    problems: list[str],
) -> ConstraintStudy | None:
    """The study's ``[encompassing]`` and ``[[constraint_hypotheses]]``, checked; None without them.

    ``resolve_priors(where, table)`` resolves a prior table exactly as a hypothesis's
    (``forecast.spec.study``); ``id_ok`` says whether an id follows the study's id rule.
    """
    if encompassing is None and not raw:
        return None
    if encompassing is None:
        problems.append(
            "constraint_hypotheses: need an [encompassing] table with the shared prior ([encompassing.priors])"
        )
        return None
    if not raw:
        problems.append("encompassing: the study states no [[constraint_hypotheses]] to compare on it")
    priors = resolve_priors("encompassing", encompassing.priors)
    if not 1_000 <= encompassing.prior_draws <= 10_000_000:
        problems.append(f"encompassing.prior_draws: expected 1000..10000000, got {encompassing.prior_draws}")
    ctx = _Context(groups, domains, start, end, {})
    periods: dict[str, Period] = {}
    for name, text in encompassing.periods.items():
        if not id_ok(name) or name == ALL_PERIOD:
            problems.append(f"encompassing.periods.{name}: a period name must be an id (and not 'all')")
            continue
        try:
            periods[name] = Period(name, *_span(ctx.period(text)))
        except _ParseError as e:
            problems.append(f"encompassing.periods.{name}: {e}")
    ctx.periods = periods

    hypotheses: list[ConstraintHypothesis] = []
    seen: set[str] = set()
    for i, h in enumerate(raw):
        where = f"constraint_hypotheses[{i}] ({shown(h.id)})"
        if not id_ok(h.id):
            problems.append(f"{where}.id: must be lower-case letters, digits and '_', starting with a letter")
        if h.id in seen:
            problems.append(f"{where}.id: used twice")
        seen.add(h.id)
        if h.prior_probability is not None and not 0 < h.prior_probability < 1:
            problems.append(f"{where}.prior_probability: must be in (0, 1), got {h.prior_probability}")
        if h.complement and h.constraints:
            problems.append(f"{where}: the complement is where no other hypothesis holds; it takes no constraints")
        if not h.complement and not h.constraints:
            problems.append(f"{where}.constraints: list at least one constraint (or set complement = true)")
        parsed: list[Constraint] = []
        for j, text in enumerate(h.constraints):
            try:
                c = parse_constraint(text, ctx)
            except _ParseError as e:
                problems.append(f"{where}.constraints[{j}] {shown(text)}: {e}")
                continue
            why = _range_problem(c)
            if why:
                problems.append(f"{where}.constraints[{j}] {shown(text)}: {why}")
                continue
            parsed.append(c)
        empty = _empty_conjunction(parsed)
        if empty:
            problems.append(f"{where}.constraints: {empty}; the hypothesis's region is empty")
        hypotheses.append(
            ConstraintHypothesis(
                h.id, h.label, h.claim.strip(), h.prior_probability or 0.0, tuple(parsed), h.complement
            )
        )
    complements = [h for h in hypotheses if h.complement]
    if len(complements) > 1:
        problems.append("constraint_hypotheses: more than one entry says complement = true")
    given = [h.prior_probability is not None for h in raw]
    if raw and all(given):
        if not complements:
            problems.append(
                "constraint_hypotheses: with prior probabilities given, add the complement as an entry with "
                "complement = true and its own prior_probability (the probabilities must cover every outcome)"
            )
        total = sum(h.prior_probability for h in hypotheses)
        if abs(total - 1) > PRIOR_SUM_TOLERANCE:
            problems.append(f"constraint_hypotheses: prior probabilities must sum to 1, they sum to {total:g}")
        elif total > 0:
            hypotheses = [_with_prior(h, h.prior_probability / total) for h in hypotheses]
    elif any(given):
        problems.append(
            "constraint_hypotheses: give prior_probability for every entry (the complement included) or for none "
            "(then all are equally probable a priori)"
        )
    else:
        if not complements:
            hypotheses.append(
                ConstraintHypothesis(
                    COMPLEMENT_ID, "None of these", "None of the constraint hypotheses holds.", 0, (), True
                )
            )
        hypotheses = [_with_prior(h, 1.0 / len(hypotheses)) for h in hypotheses]
    return ConstraintStudy(priors, tuple(hypotheses), periods, encompassing.prior_draws)


def reserved_id_problems(hypothesis_ids: Sequence[str]) -> list[str]:
    """Problems with prior-specified hypothesis ids that a run reserves (the encompassing model's fit
    is stored as ``posterior/<ENCOMPASSING_ID>.nc``, beside the hypotheses' posteriors)."""
    return [
        f"hypotheses[{i}].id: '{hid}' is reserved for the encompassing model's fit of the constraint hypotheses; "
        "choose another id"
        for i, hid in enumerate(hypothesis_ids)
        if hid == ENCOMPASSING_ID
    ]


def require_prior_hypotheses(study, command: str, why: str) -> None:
    """A StudyError (exit 2) when ``study`` (a ``forecast.spec.study.Study``) states no prior-specified
    hypotheses, for commands that need them: e.g. ``require_prior_hypotheses(study, "forecast predict",
    "its forecasts average the hypotheses' posteriors")``."""
    if study.hypotheses:
        return
    raise StudyError(
        f"{study.path}: `{command}` needs prior-specified [[hypotheses]] ({why}); this study states constraint "
        "hypotheses only: their comparison is in the run's constraints.json (`forecast update`, `forecast report`)"
    )


def _span(p: Period) -> tuple[int, int]:
    return p.start, p.end


def _with_prior(h: ConstraintHypothesis, p: float) -> ConstraintHypothesis:
    return ConstraintHypothesis(h.id, h.label, h.claim, p, h.constraints, h.complement)


__all__ = [
    "COMPLEMENT_ID",
    "ENCOMPASSING_ID",
    "QUANTITIES",
    "Constraint",
    "ConstraintHypothesis",
    "ConstraintStudy",
    "Period",
    "Quantity",
    "Term",
    "require_prior_hypotheses",
    "reserved_id_problems",
    "resolve_constraints",
]
