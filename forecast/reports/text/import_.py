"""Terminal rendering of `forecast import`."""

from __future__ import annotations

from pathlib import Path

MAX_LINES = 30


def render_import(result, max_lines: int = MAX_LINES) -> str:
    """What was mapped, written and skipped (the first ``max_lines`` skipped rows, with their reasons)."""
    d = result.to_dict()
    lines = [
        f"{Path(d['source_file']).name} ({d['format']}): {d['n_rows']} rows; {d['n_imported']} mapped into "
        f"{Path(d['into']).name}"
        + (f" ({d['n_corroborating']} as corroborating reports)" if d["n_corroborating"] else ""),
    ]
    if d["dry_run"]:
        lines.append("dry run: nothing written")
    elif d["written"]:
        lines.append(f"appended {d['n_imported']} observations to {d['into']}")
    if d["removed_leftovers"]:
        n = len(d["removed_leftovers"])
        lines.append(
            f"removed {n} leftover{'s' if n > 1 else ''} of an interrupted import: {', '.join(d['removed_leftovers'])}"
        )
    if d["n_skipped"]:
        lines.append(f"{d['n_skipped']} rows not imported:")
        lines += [f"  {reason}: {n}" for reason, n in d["reasons"].items()]
        for s in result.skipped[:max_lines]:
            lines.append(f"  line {s.line}: {s.reason}: {s.detail}")
        if len(result.skipped) > max_lines:
            lines.append(f"  ... and {len(result.skipped) - max_lines} more (all listed in --json and the report)")
    if d["report"]:
        lines.append(f"report: {d['report']}")
    return "\n".join(lines)
