"""Terminal rendering of `forecast evidence`: most diagnostic items, critical items, quality, corroboration."""

from __future__ import annotations

from pathlib import Path

from forecast.workflows.evidence import EvidenceResult, ScenarioOutcome


def render_evidence(result: EvidenceResult, top: int = 15) -> str:
    hyps = result.hypotheses
    lines = [
        f"Study '{result.study}': {result.n_observations} observations ({result.n_counted} counted), "
        f"run {Path(result.run_dir).name}",
        "Posterior probability now: " + ", ".join(f"{h} {result.posterior_probability[h]:.3f}" for h in hyps),
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
