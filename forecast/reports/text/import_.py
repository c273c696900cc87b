"""Terminal rendering of `forecast import`."""

from __future__ import annotations

from pathlib import Path

MAX_LINES = 30
SHOWN = ("id", "event_date", "counterpart", "domain", "outcome", "initiator", "intensity", "reliability", "origin_id")


def _shown_rows(rows, n: int) -> list[str]:
    lines = [f"first {min(n, len(rows))} of {len(rows)} mapped rows:"]
    widths = {c: max([len(c), *(len(str(r.get(c, ""))) for r in rows[:n])]) for c in SHOWN}
    lines.append("  " + "  ".join(c.ljust(widths[c]) for c in SHOWN))
    for r in rows[:n]:
        lines.append("  " + "  ".join(str(r.get(c, "")).ljust(widths[c]) for c in SHOWN).rstrip())
        lines.append(f"    {r.get('description', '')}")
    return lines


def render_import(result, max_lines: int = MAX_LINES, show: int = 0) -> str:
    """What was mapped, written and skipped: the skipped rows counted by reason, those that involve
    the study's actor listed (the first ``max_lines``), the first ``show`` mapped rows."""
    d = result.to_dict()
    n_reports = d["n_corroborating"]
    lines = [
        f"{Path(d['source_file']).name} ({d['format']}): {d['n_rows']:,} rows; {d['n_imported']:,} mapped into "
        f"{Path(d['into']).name}"
        + (f" ({d['n_events']:,} events; {n_reports:,} rows as corroborating reports)" if n_reports else ""),
    ]
    cols = d.get("columns") or {}
    if cols.get("source_actor"):
        lines.append(
            f"actors read from {' then '.join(cols['source_actor'])} / {' then '.join(cols.get('target_actor', []))} "
            f"(actor_columns = '{d['actor_columns']}')"
        )
    if d["dry_run"]:
        lines.append("dry run: nothing written")
    elif d["written"]:
        lines.append(f"appended {d['n_imported']:,} observations to {d['into']}")
    if d["removed_leftovers"]:
        n = len(d["removed_leftovers"])
        lines.append(
            f"removed {n} leftover{'s' if n > 1 else ''} of an interrupted import: {', '.join(d['removed_leftovers'])}"
        )
    if show and result.imported:
        lines += _shown_rows(list(result.imported), show)
    if d["n_skipped"]:
        lines.append(f"{d['n_skipped']:,} rows not imported, by reason:")
        lines += [f"  {reason}: {n:,}" for reason, n in d["reasons"].items()]
        if d["n_prefiltered"]:
            lines.append(
                f"  ({d['n_prefiltered']:,} of the no_actor rows name no code or name of the actor: not parsed)"
            )
        involving = result.involving_actor
        if involving:
            lines.append(f"{len(involving):,} of them involve the study's actor:")
            for s in involving[:max_lines]:
                lines.append(f"  line {s.line}: {s.reason}: {s.detail}")
            if len(involving) > max_lines:
                lines.append(f"  ... and {len(involving) - max_lines:,} more (all in --json and the report)")
    if d["report"]:
        lines.append(f"report: {d['report']}")
    if d.get("rows_report"):
        lines.append(f"every row: {d['rows_report']}")
    return "\n".join(lines)
