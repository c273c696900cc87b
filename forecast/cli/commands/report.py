"""`forecast report`: Write a report of posterior support for RUN: one self-contained HTML page, Markdown, JSON."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from forecast.cli.app import default_study, emit_json, guard, main, progress
from forecast.cli.options import (
    json_option,
    quiet_option,
    runs_dir_option,
)

REPORT_SUFFIXES = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json"}


@main.command()
@click.argument("run", required=False, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "formats",
    type=click.Choice(["html", "md", "json"]),
    multiple=True,
    help="Format(s) to write; repeat for several [default: all three, or the one --output's suffix names].",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=True, path_type=Path),
    default=None,
    help="Write the (one) report here instead of <run>/report.<ext>.",
)
@runs_dir_option("Where run directories are [default: the study's runs, else reports/runs].")
@click.option(
    "--history",
    is_flag=True,
    help="First compute support over time for the run (a refit per quarter; minutes) and store history.json.",
)
@click.option(
    "--history-every",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="With --history: evaluate every N-th quarter (and the last); cost falls about N-fold.",
)
@json_option("Print one JSON object on stdout (paths, support, flags).")
@quiet_option("No progress messages on stderr.")
def report(run, formats, output, runs_dir, history, history_every, as_json, quiet):
    """Write a report of posterior support for RUN: one self-contained HTML page, Markdown, JSON.

    RUN is a run directory (reports/runs/<study>/<time>) or a study file (its latest run); by
    default the latest run of priors/turkey_nato.toml. The report holds the support table with
    its conclusion, support over time (if the run has history.json, or with --history), each
    hypothesis's prior beside its posterior (ArviZ forest plots), posterior predictive checks and
    LOO calibration, the observations ranked by how much they moved the support, and the
    diagnostics and manifest. Files go to <run>/report.html, report.md and report.json, written
    atomically. A run that failed its convergence checks still gets its report, marked
    UNRELIABLE, and the command then exits 3.

    \b
    Example:
      forecast report                                   # latest run of the default study
      forecast report --format html --output brief.html
      forecast report priors/turkey_nato.toml --history --history-every 4 --json
    """
    from forecast.reports.report import FORMATS, run_report

    if not formats:
        suffix = REPORT_SUFFIXES.get(output.suffix.lower()) if output is not None and not output.is_dir() else None
        formats = (suffix,) if suffix else FORMATS
    if output is not None and len(formats) != 1:
        raise click.UsageError("--output names one file: choose one --format (html, md or json)")
    result = guard(
        lambda: run_report(
            run,
            study_path=None if run is not None else default_study(),
            runs_root=runs_dir,
            formats=tuple(formats),
            output=output,
            history=history,
            history_every=history_every,
            progress=progress(quiet),
        )
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        if not result.converged:
            click.echo("WARNING: " + result.report.warning)
        click.echo(result.report.headline.conclusion)
        for path in result.outputs.values():
            click.echo(f"report written to {path}")
    if not result.converged:
        click.echo("forecast: the run failed its convergence checks; its report says so (exit 3)", err=True)
        sys.exit(3)
