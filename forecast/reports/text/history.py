"""Terminal rendering of `forecast history`: the posterior probability of each hypothesis by quarter."""

from __future__ import annotations

from forecast.workflows.history import History

SOURCE_NOTE = {"prior": "prior", "fit": "", "reused": "no new evidence", "run": "the run's own fit"}


def render_history(history: History) -> str:
    ids = [h["id"] for h in history.hypotheses]
    width = max(9, *(len(i) for i in ids))
    lines = [
        f"Study '{history.study}': support over time, {len(history.points)} points, every {history.every} "
        f"quarter(s), {history.n_fitted} quarter(s) refitted ({history.settings.get('chains')} chains x "
        f"{history.settings.get('draws')} draws) in {history.seconds:.0f} s",
        "",
    ]
    if not history.converged:
        lines += ["WARNING: some points' fits FAILED their checks; they are flagged below.", ""]
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
    if history.written:
        lines += ["", f"Support over time written to {history.written}"]
    return "\n".join(lines)
