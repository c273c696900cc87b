"""Terminal rendering of `forecast predict`: model-averaged shares with intervals, questions, milestones."""

from __future__ import annotations

import textwrap
from pathlib import Path

from forecast.spec.study import quarter_label
from forecast.workflows.predict import UNRELIABLE, PredictResult


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def render_warnings(result: PredictResult, width: int = 100) -> str:
    """The stale-data warnings, one wrapped paragraph each ("" when there are none)."""
    return "\n".join(
        textwrap.fill(w, width, initial_indent="WARNING: ", subsequent_indent="  ") for w in result.warnings
    )


def render_predict(result: PredictResult, *, warnings: bool = True) -> str:
    """The forecasts as text: BMA shares with 90% intervals, questions, the top milestones.

    With ``warnings`` (the default) the stale-data warnings open the text, before the table; the
    command line prints them on stderr instead and passes ``warnings=False``.
    """
    d = result.to_dict()
    lines = []
    if not result.converged:
        lines += ["!" * 80, "WARNING: " + UNRELIABLE + "; every figure below is UNRELIABLE.", "!" * 80, ""]
    if warnings and result.warnings:
        lines += [render_warnings(result), ""]
    probs = ", ".join(f"{h['label']} {h['posterior_probability']:.2f}" for h in d["hypotheses"])
    data = f"data to {result.data_cutoff}"
    if result.stale is not None:
        latest = result.stale.latest_observation.isoformat()
        data = f"latest observation {latest}" + (
            f", reports to {result.data_cutoff}" if latest != result.data_cutoff else ""
        )
    lines += [
        f"Study '{result.study}': forecasts from run {Path(result.run_dir).name} ({data}), "
        f"averaged over hypotheses ({probs})",
        "",
        "Expected share of cooperative interactions, with its 90% interval (expected events per quarter):",
    ]
    quarters = d["quarters"]
    head = f"{'group':<12} {'domain':<12} {'events':>6}  " + "  ".join(f"{q:^17}" for q in quarters)
    lines += [head, "-" * len(head)]
    by_cell: dict[tuple[str, str], dict[str, dict]] = {}
    for row in result.forecasts:
        by_cell.setdefault((row["group"], row["domain"]), {})[row["quarter"]] = row
    for (g, dom), rows in by_cell.items():
        first = next(iter(rows.values()))
        cells = []
        for q in quarters:
            r = rows[q]
            lo, hi = r["interval_90"]
            cells.append(f"{_pct(r['mean']):>4} ({_pct(lo)}-{_pct(hi)})".center(17))
        lines.append(f"{g[:12]:<12} {dom[:12]:<12} {first['expected_events']:>6.2f}  " + "  ".join(cells))
    if result.questions:
        lines += ["", "Questions (probability averaged over hypotheses; per hypothesis in brackets):"]
        for qf in result.questions:
            q = qf.question
            per = ", ".join(f"{h} {p:.2f}" for h, p in qf.by_hypothesis.items())
            void = f"; void (no events) with probability {qf.probability_void:.2f}" if qf.probability_void else ""
            lines.append(f"  {q.id}: {qf.probability:.2f} [{per}]{void}")
            lines.append(f"    {q.text} (resolves {q.resolves})")
    if result.leading:
        lines += [
            "",
            f"Milestones for {quarter_label(result.origin + 1)}: where one more quarter of observations is expected to "
            f"move the log Bayes factor '{result.leading[0]}' vs '{result.leading[1]}' most:",
            f"  {'group':<12} {'domain':<12} {'E|dlogBF|':>9} {'info (nats)':>11} {'per event':>9} "
            f"{'if coop':>8} {'if confl':>8}",
        ]
        for m in result.milestones[:10]:
            lines.append(
                f"  {m.group[:12]:<12} {m.domain[:12]:<12} {m.expected_abs_log_bf_change:>9.3f} "
                f"{m.expected_information_gain:>11.4f} {m.abs_log_bf_change_per_event:>9.3f} "
                f"{m.log_bf_if_cooperative:>+8.2f} {m.log_bf_if_conflictual:>+8.2f}"
            )
    if result.written:
        lines += ["", f"Forecasts written to {result.written}"]
    return "\n".join(lines)
