"""Terminal rendering of `forecast history`: the posterior probability of each hypothesis by quarter,
and what moved the log Bayes factor between the two leading hypotheses, interval by interval."""

from __future__ import annotations

import math
import textwrap

from forecast.workflows.history import Attribution, EventContribution, History, IntervalAttribution
from forecast.workflows.history.records import ConstraintHistory

SOURCE_NOTE = {"prior": "prior", "fit": "", "reused": "no new evidence", "run": "the run's own fit"}
CONSTRAINT_SOURCE_NOTE = {**SOURCE_NOTE, "run": "the run's encompassing fit"}
WIDTH = 120  # characters per line of an event
PER_INTERVAL = 3  # events named per interval (history.json keeps more)


def render_history(history: History) -> str:
    n_points = len(history.points) or (len(history.constraints.points) if history.constraints else 0)
    lines = [
        f"Study '{history.study}': support over time, {n_points} points, every {history.every} "
        f"quarter(s), {history.n_fitted} quarter(s) refitted ({history.settings.get('chains')} chains x "
        f"{history.settings.get('draws')} draws) in {history.seconds:.0f} s",
        "",
    ]
    if not history.converged:
        lines += ["WARNING: some points' fits FAILED their checks; they are flagged below.", ""]
    if history.hypotheses:
        lines += _hypotheses_lines(history)
    if history.constraints is not None:
        lines += ([""] if history.hypotheses else []) + render_constraints(history.constraints)
    if history.written:
        lines += ["", f"Support over time written to {history.written}"]
    return "\n".join(lines)


def _hypotheses_lines(history: History) -> list[str]:
    ids = [h["id"] for h in history.hypotheses]
    width = max(9, *(len(i) for i in ids))
    lines = []
    if history.constraints is not None:
        lines += ["Prior-specified hypotheses (each a set of priors, compared by bridge-sampled marginal likelihoods):"]
    head = f"{'quarter':<8} {'observations':>12}  " + "  ".join(f"{i[:width]:>{width}}" for i in ids) + "  note"
    lines += [head, "-" * len(head)]
    for p in history.points:
        note = SOURCE_NOTE.get(p.source, p.source)
        if not p.converged:
            note = (note + "; " if note else "") + "FAILED: " + ", ".join(p.problems)
        lines.append(
            f"{p.quarter:<8} {p.n_observations:>7} (+{p.new_observations:>2})  "
            + "  ".join(f"{p.probabilities[i]:>{width}.3f}" for i in ids)
            + (f"  {note}" if note else "")
        )
    if history.attribution is not None:
        labels = {h["id"]: h.get("label") or h["id"] for h in history.hypotheses}
        lines += ["", *render_attribution(history.attribution, labels)]
    return lines


def render_constraints(c: ConstraintHistory) -> list[str]:
    """The constraint hypotheses' probabilities by quarter: their own table, never merged with the
    prior-specified hypotheses'."""
    ids = [h["id"] for h in c.hypotheses]
    width = max(9, *(len(i) for i in ids))
    fits = f"{c.n_fitted} encompassing fit(s)" + (
        " and the run's own" if any(p.source == "run" for p in c.points) else ""
    )
    intro = (
        f"Constraint hypotheses (regions of ONE encompassing model; one encompassing fit per quarter, {fits}; "
        f"prior masses from {c.prior_draws} prior draws, estimated once in {c.prior_mass_seconds:.1f} s; "
        f"{c.seconds:.0f} s in all):"
    )
    lines = textwrap.wrap(intro, WIDTH)
    if not c.converged:
        lines.append("WARNING: some points' encompassing fits FAILED their checks; they are flagged below.")
    head = f"{'quarter':<8} {'observations':>12}  " + "  ".join(f"{i[:width]:>{width}}" for i in ids) + "  note"
    lines += [head, "-" * len(head)]
    for p in c.points:
        note = CONSTRAINT_SOURCE_NOTE.get(p.source, p.source)
        if not p.converged:
            note = (note + "; " if note else "") + "FAILED: " + "; ".join(p.problems)
        cells = [
            ("<" + f"{p.probabilities_upper[i]:.3f}" if p.bound.get(i) else f"{p.probabilities[i]:.3f}") for i in ids
        ]
        lines.append(
            f"{p.quarter:<8} {p.n_observations:>7} (+{p.new_observations:>2})  "
            + "  ".join(f"{x:>{width}}" for x in cells)
            + (f"  {note}" if note else "")
        )
    if c.points:
        last = c.points[-1]
        label = {h["id"]: h.get("label") or h["id"] for h in c.hypotheses}
        lines.append(
            f"Leading at the end: '{label.get(last.leader, last.leader)}' ({last.probabilities[last.leader]:.3f}); "
            "'<' marks a region that held no posterior draw (an upper bound)."
        )
    if c.attribution is not None:
        labels = {h["id"]: h.get("label") or h["id"] for h in c.hypotheses}
        lines += ["", *render_attribution(c.attribution, labels, constraints=True)]
    return lines


def render_attribution(attribution: Attribution, labels: dict[str, str], constraints: bool = False) -> list[str]:
    """What moved it: the change of the log Bayes factor per interval and the events behind it."""
    first, second = attribution.hypotheses
    a, b = labels.get(first, first), labels.get(second, second)
    kind = "constraint hypotheses" if constraints else "hypotheses"
    intro = (
        f"What moved it: the log Bayes factor of '{a}' against '{b}', the two {kind} leading at the end, "
        f"is {_signed(attribution.log_bf)}{_pm(attribution.log_bf_se)} (> 0 favours '{a}'; +1 multiplies the odds "
        "by 2.7). Each change between evaluated quarters is the sum of its new events' contributions: an event's "
        "log predictive density under one hypothesis minus the other, given everything known before it."
    )
    if constraints:
        intro += (
            " For constraint hypotheses each one's draws are the encompassing fit's draws inside its region, and "
            "the changes are those of the Bayes factors estimated from the regions' masses."
        )
    lines = [*textwrap.wrap(intro, WIDTH), ""]
    for interval in attribution.intervals:
        lines += _interval_lines(interval)
    if attribution.top_events:
        split = sum(i.attributed and i.n_events > 0 for i in attribution.intervals)
        lines += ["", f"Events that moved it most over the whole window ({split} interval(s) split by event):"]
        for e in attribution.top_events:
            lines += [f"  {_event_text(e)}  [{e.interval}]", f"{'':>9}{_shorten(e.description, WIDTH - 9)}"]
    if attribution.n_unattributed:
        lines += [
            "",
            *textwrap.wrap(
                f"{attribution.n_unattributed} interval(s) could not be split by event; together they moved it by "
                f"{_signed(attribution.unattributed_change)}. A smaller --every gives shorter intervals, which can "
                "be.",
                WIDTH,
            ),
        ]
    return lines


def _interval_lines(interval: IntervalAttribution) -> list[str]:
    head = (
        f"{interval.label}: {_signed(interval.change)}{_pm(interval.change_se)} from {interval.n_events} new event(s)"
    )
    if not interval.n_events:
        return [head + " (no new evidence the likelihood counts)"]
    if not interval.attributed:
        return [head + "; not split by event: " + (interval.note or "")]
    lines = [head + "; moved most by:"]
    for e in interval.top_events[:PER_INTERVAL]:
        text = "  " + _event_text(e) + ": "
        lines.append(text + _shorten(e.description, WIDTH - len(text)))
    rest = interval.top_events[PER_INTERVAL:]
    others = interval.other_events + sum(e.count for e in rest)
    if others:
        total = (interval.other_contribution or 0.0) + sum(e.contribution for e in rest)
        lines.append(f"  {_signed(total)}  {others} other event(s) together")
    if interval.note:
        lines.append(f"  Note: {interval.note}")
    return lines


def _event_text(event: EventContribution) -> str:
    return f"{_signed(event.contribution)}  {event.event_date}  {event.id}  {event.counterpart} / {event.domain}, {event.outcome}"


def _shorten(text: str, width: int) -> str:
    width = max(width, 20)
    return text if len(text) <= width else text[: width - 1] + "…"


def _signed(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:+.2f}"


def _pm(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else f" ± {x:.2f}"
