"""`forecast report`: an ArviZ report of posterior support, from a stored run, as HTML, Markdown and JSON.

``records`` holds the typed ``Report`` and its sections, ``read`` takes what it needs from a
``StoredRun``, ``statistics`` the pure computations on stored draws, ``assemble`` (with
``analyses`` for history, sensitivity and the prior predictive check, and ``sections`` for the
one-page summary, cooperation now, robustness, forecasts, backtest and calibration) builds the
record, ``render`` writes it out. The report renders what the run holds and never fits: support
over time and what moved it come from ``history.json`` (``forecast history``), robustness and the
answer's words from ``summary.json`` (``forecast update``), forecasts, questions and milestones
from ``forecasts.json``, critical items from ``evidence.json``, backtest skill from
``backtest.json``, calibration from ``calibration.json``, sensitivity from ``sensitivity.json``,
the prior predictive check from ``prior_predictive.json``, the constraint hypotheses from
``constraints.json`` (``constraints``: kept apart from the prior-specified comparison, both in
the summary, a headline worded by the weaker of the two that says when they disagree); what is
missing is listed with the command that adds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from forecast.reports.report.assemble import build_report
from forecast.reports.report.read import find_run, load_run
from forecast.reports.report.records import FORMATS, Report, ReportResult
from forecast.reports.report.render import (
    chromium,
    formats_for,
    output_paths,
    render_html,
    render_json,
    render_markdown,
    require_chromium,
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
    embed_images: bool = False,
) -> ReportResult:
    """Build the report of ``run`` and write each format atomically (beside the run, or to ``output``).

    Leftovers of writers of this run that were killed (e.g. a report's ``.report.html.tmp-<pid>``)
    are removed first, once their process is gone (``runs.store.sweep_temporaries``).
    ``workers``/``renderer``: how the figures are rendered (see ``build_report``);
    ``embed_images``: Markdown embeds its figures as data URIs instead of writing PNG files beside it.
    """
    t0 = time.perf_counter()
    formats = formats_for(tuple(formats), output)
    targets = output_paths(run.path, formats, output)
    removed = sweep_temporaries(run.path)
    if removed and progress:
        progress(f"report: removed {len(removed)} leftover file(s) of interrupted writers")
    report = build_report(run, progress=progress, workers=workers, renderer=renderer)
    if "pdf" in formats:
        require_chromium()  # before any work
    outputs = write_files(report, targets, embed_images=embed_images)
    if progress:
        progress(f"report written: {', '.join(outputs.values())}")
    history = str(run.path / HISTORY) if report.history.available else None
    return ReportResult(report, outputs, history_computed, history, time.perf_counter() - t0)


__all__ = [
    "FORMATS",
    "chromium",
    "require_chromium",
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
