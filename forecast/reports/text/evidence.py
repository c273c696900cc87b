"""Terminal rendering of `forecast evidence`: most diagnostic items, critical items, quality, corroboration."""

from __future__ import annotations

from pathlib import Path

from forecast.workflows.evidence import EvidenceResult, ScenarioOutcome
from forecast.workflows.evidence.constraints import ConstraintEvidence


def render_evidence(result: EvidenceResult, top: int = 15) -> str:
    lines = [
        f"Study '{result.study}': {result.n_observations} observations ({result.n_counted} counted), "
        f"run {Path(result.run_dir).name}",
    ]
    if result.hypotheses:
        lines += _prior_specified(result, top)
    if result.constraints is not None:
        lines += ["", *render_constraint_evidence(result.constraints, top)]
    c = result.corroboration
    if c.events:
        lines += [
            "",
            f"Corroboration: {c.n_reports_not_counted} report(s) corroborate an event already counted ({c.rule}):",
        ]
        lines += [f"  {e.event}: reports {', '.join(e.reports)}; counted: {e.counted}" for e in c.events]
    if result.n_unreliable:
        lines += [
            "",
            f"{result.n_unreliable} estimate(s) have Pareto k > {result.pareto_k_threshold:.2f} and were not refitted "
            "(raise --max-refits); treat them with caution.",
        ]
    for w in result.warnings:
        lines += ["", "WARNING: " + w]
    if result.written:
        lines += ["", f"Written to {result.written}"]
    return "\n".join(lines)


def _prior_specified(result: EvidenceResult, top: int) -> list[str]:
    hyps = result.hypotheses
    lines = [
        ("Prior-specified hypotheses: p" if result.constraints is not None else "P")
        + "osterior probability now: "
        + ", ".join(f"{h} {result.posterior_probability[h]:.3f}" for h in hyps),
        "",
        f"Most diagnostic observations (LOO log predictive density differences; top {top}):",
    ]
    head = (
        f"{'rank':>4}  {'id':<16} {'date':<10}  {'outcome':<11} {'wt':>4}  {'diag':>6}  {'favours':<14} "
        f"{'P if removed':<24} {'P if reversed':<24}"
    )
    lines += [head, "-" * len(head)]

    def probs(sc: ScenarioOutcome) -> str:
        return " ".join(f"{sc.posterior_probability[h]:.2f}" for h in hyps) + (" *" if sc.approximate else "")

    for x in result.observations[:top]:
        fav = x.favours or ("(not counted)" if not x.counted else "-")
        lines.append(
            f"{x.rank:>4}  {x.id[:16]:<16} {x.event_date:<10}  {x.outcome:<11} {x.weight:>4.2f}  "
            f"{x.diagnosticity:>6.2f}  {fav[:14]:<14} {probs(x.if_removed):<24} {probs(x.if_reversed):<24}"
        )
    lines += ["", f"(probabilities in the order {', '.join(hyps)}; * = refitted or unreliable, see --json)", ""]
    if result.critical:
        lines.append(
            f"Critical items (the leading hypothesis changes, or a probability moves by >= {result.shift_threshold:g}, "
            "if the item is removed or reversed):"
        )
        for i in result.critical:
            x = result.observation(i)
            what = "; ".join(
                f"{name}: leading '{sc.leading}', max shift {sc.max_shift:.2f}"
                for name, sc in (("removed", x.if_removed), ("reversed", x.if_reversed))
            )
            lines.append(f"  {i}: {x.description[:60]} — {what}")
    else:
        lines.append(
            "No single item is critical: removing or reversing any one moves no probability by >= "
            f"{result.shift_threshold:g}."
        )
    q = result.quality
    if q and not q.n_dropped:
        lines += ["", f"Evidence quality: no observation has a reliability weight below {q.reliability_below:g}."]
    elif q:
        lines += [
            "",
            f"Evidence quality: without the {q.n_dropped} observation(s) of reliability weight below "
            f"{q.reliability_below:g}: "
            + ", ".join(f"{h} {q.outcome.posterior_probability[h]:.3f}" for h in hyps)
            + (
                f" — the leading hypothesis becomes '{q.outcome.leading}'"
                if q.changes_leading
                else " — same leading hypothesis"
            ),
        ]
    return lines


def render_constraint_evidence(c: ConstraintEvidence, top: int = 15) -> list[str]:
    """The constraint hypotheses' evidence: their probabilities without each item, apart from the
    prior-specified diagnosticity."""
    ids = c.hypotheses
    lines = [
        "Constraint hypotheses (regions of one encompassing model; the run's encompassing fit reweighted, no refit "
        "unless Pareto k is too high):",
        "Probability now: "
        + ", ".join(f"{h} {c.posterior_probability[h]:.3f}" for h in ids)
        + f"; leading '{c.leading}'",
        "",
        f"Observations that move them most if removed or reversed (top {top}):",
    ]
    head = f"{'id':<16} {'max shift':>9}  {'P if removed':<28} {'P if reversed':<28} description"
    lines += [head, "-" * len(head)]

    def probs(o) -> str:
        if o is None:
            return ""
        return " ".join(f"{o.probabilities[h]:.2f}" for h in ids) + (" *" if o.approximate else "")

    for x in c.observations[:top]:
        lines.append(
            f"{x.id[:16]:<16} {x.max_shift:>9.3f}  {probs(x.if_removed):<28} {probs(x.if_reversed):<28} {x.label[:40]}"
        )
    if c.groups:
        lines += ["", "Evidence groups left out at once:"]
        for x in c.groups:
            k = x.if_removed.pareto_k
            lines.append(
                f"  {x.id[:24]:<24} {x.max_shift:>6.3f}  {probs(x.if_removed):<28}"
                + (f" (Pareto k {k:.2f})" if k is not None else "")
                + ("  UNRELIABLE" if x.unreliable else "")
            )
    if c.quality is not None:
        x = c.quality
        lines += ["", f"Evidence quality ({x.label}): {probs(x.if_removed)}, leading '{x.if_removed.leading}'"]
    lines.append(
        f"(probabilities in the order {', '.join(ids)}; * = refitted or unreliable; Pareto k above "
        f"{c.pareto_k_threshold:.2f} is unreliable)"
    )
    if c.critical:
        more = f" and {len(c.critical) - top} more (see --json)" if len(c.critical) > top else ""
        lines.append(
            f"Critical for the constraint comparison ({len(c.critical)}: the leading hypothesis changes, or a "
            "probability moves by >= the --shift, if removed or reversed), the most consequential first: "
            + ", ".join(c.critical[:top])
            + more
        )
    if c.n_unreliable:
        lines.append(
            f"{c.n_unreliable} constraint estimate(s) have Pareto k > {c.pareto_k_threshold:.2f} and were not "
            f"refitted ({c.n_refits} refit(s) made; raise --max-refits); treat them with caution."
        )
    return lines
