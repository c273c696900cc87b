"""Terminal rendering of `forecast ingest` (its JSON record in, text out)."""

from __future__ import annotations


def render_ingest(d: dict) -> str:
    """One line per file of the folder, then whether the study was updated and where its report is."""
    by = d["by_status"]
    lines = [
        f"{d['study']}: {d['n_files']} file(s) in {d['folder']}: "
        + (", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(by.items())) or "none")
        + f"; {d['n_imported']:,} observation(s) added"
    ]
    for f in d["files"]:
        if f["status"] in ("imported", "finished"):
            lines.append(
                f"  {f['file']}: {f['status']}: {f['n_rows']:,} rows, {f['n_imported']:,} observations "
                f"({f['n_events']:,} events)"
            )
        else:
            lines.append(
                f"  {f['file']}: {f['status'].replace('_', ' ')}" + (f": {f['detail']}" if f["detail"] else "")
            )
    if d["updated"]:
        lines.append(f"updated ({d['update_reason']}): {d['run_dir']}")
        for fmt, path in (d.get("report") or {}).items():
            lines.append(f"  report ({fmt}): {path}")
    else:
        lines.append(f"not updated: {d['update_reason']}")
    lines.append(f"ledger: {d['ledger']}")
    return "\n".join(lines)
