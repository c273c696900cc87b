"""Terminal rendering of `forecast priors`: each hypothesis's priors, what they imply, and which pairs look alike."""

from __future__ import annotations

from collections.abc import Mapping

from forecast.runs.layout import PRIOR_PREDICTIVE


def render_priors(result) -> str:
    """The plain-text output; ``result`` is a PriorsResult or its stored JSON (``prior_predictive.json``)."""
    r: Mapping = result.to_dict() if hasattr(result, "to_dict") else result
    lines = [
        f"Priors of '{r['study']}' and what they imply before any data (reference quarter {r['reference_quarter']})"
    ]
    for h in r["hypotheses"]:
        lines += ["", f"{h['label']} ({h['id']}, prior probability {h['prior_probability']:.3f})"]
        for p in h["priors"]:
            line = f"  {p['parameter'] + '.' + p['group']:<22} {p['prior']}"
            if p["statement"]:
                line += f"\n  {'':<22} stated: {p['statement']['text']}"
            lines.append(line)
        lines.append(f"  {'prior predictive share':<34} {'median':>6}  {'50% interval':>13}  {'90% interval':>13}")
        # The priors treat a group's domains alike, so one row stands for all of them here
        # (the JSON output lists every domain).
        shown = set()
        for x in h["predictive"]["domain_shares"]:
            if x["group"] not in shown:
                shown.add(x["group"])
                lines.append(_row(f"{x['group']} / each domain, {x['quarter']}", x))
        for x in h["predictive"]["typical_share"]:
            lines.append(_row(f"{x['group']} / typical domain, {x['quarter']}", x))
        for x in h["predictive"]["change_over_window"]:
            lines.append(_row(f"{x['group']} / change over window", x, signed=True))
    lines.append("")
    for p in r["distinguishability"]:
        lines.append(
            f"{p['a']} vs {p['b']}: most different in {p['most_different']} (Hellinger {p['max_hellinger']:.2f})"
        )
    for w in r["warnings"]:
        lines.append("WARNING: " + w)
    if r["written"]:
        lines.append(f"\nWritten to {r['run_dir']} ({', '.join([PRIOR_PREDICTIVE, *r['files'].values()])})")
    elif r.get("note"):
        lines.append("\n" + r["note"])
    return "\n".join(lines)


def _row(name: str, r: Mapping, signed: bool = False) -> str:
    f = "{:+.2f}" if signed else "{:.2f}"
    a = f"[{f.format(r['q25'])}, {f.format(r['q75'])}]"
    b = f"[{f.format(r['q05'])}, {f.format(r['q95'])}]"
    return f"  {name[:34]:<34} {f.format(r['median']):>6}  {a:>13}  {b:>13}"


__all__ = ["render_priors"]
