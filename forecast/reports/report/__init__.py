"""`forecast report`: an ArviZ report of posterior support, from a stored run, as HTML, Markdown and JSON.

``records`` holds the typed ``Report`` and its sections, ``read`` takes what it needs from a
``StoredRun``, ``statistics`` the pure computations on stored draws, ``assemble`` (with
``analyses`` for the sensitivity and prior predictive sections) builds the record, ``render``
writes it out. The report renders what the run holds and never fits: support over time comes
from ``history.json`` (``forecast history``), sensitivity from ``sensitivity.json``, the prior
predictive check from ``prior_predictive.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from forecast.reports.report.assemble import build_report
from forecast.reports.report.read import find_run, load_run
from forecast.reports.report.records import FORMATS, Report, ReportResult
from forecast.reports.report.render import (
    formats_for,
    output_paths,
    render_html,
    render_json,
    render_markdown,
    write_files,
)
from forecast.runs.layout import HISTORY
from forecast.runs.store import sweep_temporaries
from forecast.runs.stored import StoredRun


def write_report(
    run: StoredRun,
    *,
    formats: tuple[str, ...] = FORMATS,
    output: Path | None = None,
    history_computed: bool = False,
    progress: Callable[[str], None] | None = None,
    workers: int | None = None,
    renderer=None,
) -> ReportResult:
    """Build the report of ``run`` and write each format atomically (beside the run, or to ``output``).

    Leftovers of writers of this run that were killed (e.g. a report's ``.report.html.tmp-<pid>``)
    are removed first, once their process is gone (``runs.store.sweep_temporaries``).
    ``workers``/``renderer``: how the figures are rendered (see ``build_report``).
    """
    t0 = time.perf_counter()
    formats = formats_for(tuple(formats), output)
    targets = output_paths(run.path, formats, output)
    removed = sweep_temporaries(run.path)
    if removed and progress:
        progress(f"report: removed {len(removed)} leftover file(s) of interrupted writers")
    report = build_report(run, progress=progress, workers=workers, renderer=renderer)
    outputs = write_files(report, targets)
    if progress:
        progress(f"report written: {', '.join(outputs.values())}")
    history = str(run.path / HISTORY) if report.history.available else None
    return ReportResult(report, outputs, history_computed, history, time.perf_counter() - t0)


__all__ = [
    "FORMATS",
    "Report",
    "ReportResult",
    "build_report",
    "find_run",
    "load_run",
    "render_html",
    "render_json",
    "render_markdown",
    "write_report",
]
