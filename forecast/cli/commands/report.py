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

ALIAS_NOTE = (
    "forecast: `report --history` is an alias of `forecast history` (kept for one release): it runs "
    "`forecast history` on the run first, then writes the report; the report itself never refits"
)


@main.command()
@click.argument("run", required=False, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "formats",
    type=click.Choice(["html", "md", "json", "pdf"]),
    multiple=True,
    help="Format(s) to write; repeat for several [default: html, md and json, or the one --output's suffix names]. "
    "pdf prints the HTML with headless Chromium (exit 2 when it is not installed).",
)
@click.option(
    "--embed-images",
    is_flag=True,
    help="Markdown: embed the figures as base64 data URIs instead of writing them as PNG files in <stem>_files/.",
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
    help="Alias: run `forecast history` on the run first (a refit per quarter; minutes), then report.",
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
def report(run, formats, embed_images, output, runs_dir, history, history_every, as_json, quiet):
    """Write the brief of RUN: a one-page summary, then every analysis the run holds (HTML, Markdown, JSON, PDF).

    RUN is a run directory (reports/runs/<study>/<time>) or a study file (its latest run); by
    default the latest run of priors/turkey_nato.toml. The report renders what the run holds and
    never refits. It opens with a one-page summary: the question, the answer in words with its
    likelihood and confidence, the robustness range, what moved it (history.json), what to watch
    next (milestones) and the registered questions with their probabilities (forecasts.json);
    then a table of contents, what the run does not hold yet with the command that adds it, and
    the sections: support, the constraint hypotheses (1b, when the study states them: kept apart
    from the prior-specified comparison; the summary shows both and says when they disagree),
    cooperation now and its change over the window, support over time,
    the 15 most diagnostic observations, robustness, prior sensitivity, forecasts, backtest
    skill, calibration, model fit, what the priors imply, diagnostics; technical appendices
    (log-odds plots, every observation). Files go to <run>/report.html (self-contained, print
    styles: the summary on one page), report.md (its figures as PNG files in report_files/,
    or embedded with --embed-images) and report.json, written atomically; --format pdf adds
    report.pdf printed by headless Chromium. No absolute local paths appear in any of them.
    A run that failed its convergence checks still gets its report, marked UNRELIABLE, and the
    command then exits 3.

    \b
    Example:
      forecast report                                   # latest run of the default study
      forecast report --format html --output brief.html
      forecast report priors/turkey_nato.toml --json
      forecast report --format pdf --output brief.pdf
    """
    from forecast.reports.report import find_run, formats_for, output_paths, write_report

    formats = guard(lambda: formats_for(tuple(formats), output))
    if output is not None and len(formats) != 1:
        raise click.UsageError("--output names one file: choose one --format (html, md, json or pdf)")
    if "pdf" in formats:
        from forecast.reports.report import require_chromium

        guard(require_chromium)  # exit 2 before any work
    say = progress(quiet)
    stored = guard(lambda: find_run(run, study_path=None if run is not None else default_study(), runs_root=runs_dir))
    guard(lambda: output_paths(stored.path, formats, output))  # a bad --output fails before any work
    if history:
        click.echo(ALIAS_NOTE, err=True)
        guard(lambda: _history(stored, history_every, say))
    result = guard(
        lambda: write_report(
            stored,
            formats=formats,
            output=output,
            history_computed=history,
            progress=say,
            embed_images=embed_images,
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


def _history(stored, every: int, say) -> None:
    """`forecast history` on this run (its own inputs and sampler settings), storing history.json in it."""
    from forecast.workflows.history import run_history

    # A run that failed its checks still gets its history (points flagged) and its report (exit 3),
    # as `report --history` always did.
    run_history(run_dir=stored.path, every=every, allow_unconverged=True, progress=say)
