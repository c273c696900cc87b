"""`forecast brief`: the whole analysis of STUDY in one run: update, history, evidence, predict, report."""

from __future__ import annotations

import sys

import click

from forecast.cli.app import default_study, emit_json, guard, main, progress
from forecast.cli.options import (
    allow_unconverged_option,
    draws_and_tune,
    json_option,
    quiet_option,
    runs_dir_option,
    seed_option,
    study_argument,
)
from forecast.settings import SamplerSettings


@main.command()
@study_argument
@seed_option()
@draws_and_tune
@click.option("--chains", type=click.IntRange(2), default=4, show_default=True, help="Independent chains.")
@runs_dir_option("Where run directories go [default: the study's runs, else reports/runs].")
@click.option(
    "--skip",
    "skip",
    multiple=True,
    metavar="STEPS",
    help="Steps to leave out, comma-separated: update, history, evidence, predict, report (with update skipped, "
    "the study's latest run is used; it must match the current inputs).",
)
@click.option(
    "--history-every",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Support over time every N quarters (and the last); 4 = yearly.",
)
@click.option(
    "--robustness/--no-robustness",
    default=True,
    show_default=True,
    help="Robustness over the declared class of reasonable priors in the update step.",
)
@click.option(
    "--format",
    "formats",
    type=click.Choice(["html", "md", "json", "pdf"]),
    multiple=True,
    help="Report format(s) [default: html, md and json in the run].",
)
@allow_unconverged_option()
@json_option("Print one JSON object on stdout: what was written, each step's time, the headline.")
@quiet_option("No progress messages on stderr.")
def brief(
    study,
    seed,
    draws,
    tune,
    chains,
    runs_dir,
    skip,
    history_every,
    robustness,
    formats,
    allow_unconverged,
    as_json,
    quiet,
):
    """Run the whole analysis of STUDY in one command, on one set of fits, into one run.

    STUDY is a study file (TOML); by default priors/turkey_nato.toml. In order, on the same run:
    `forecast update` (with robustness over the declared class of reasonable priors),
    `forecast history` (support over time and what moved it, yearly by default), `forecast
    evidence` (critical items), `forecast predict` (forecasts, questions, milestones) and
    `forecast report` (the brief: a one-page summary, then the sections; HTML, Markdown with its
    figures beside it, JSON). Nothing the run holds is refitted. Progress on stderr says each
    step's estimated time and the time left. A later step that fails is reported and the others
    still run (the report lists what is missing); the exit code is then that step's (3: a fit
    failed its checks).

    \b
    Example:
      forecast brief                                  # the default study, everything
      forecast brief priors/my_study.toml --skip evidence,predict
      forecast brief --skip update --format pdf       # report the latest run as PDF too
    """
    from forecast.reports.report import formats_for, require_chromium, write_report
    from forecast.workflows.brief import parse_skip, run_brief

    steps = guard(lambda: parse_skip(list(skip)))
    chosen = guard(lambda: formats_for(tuple(formats), None))
    if "pdf" in chosen and "report" not in steps:
        guard(require_chromium)  # exit 2 now, not after the fits
    say = progress(quiet)
    headline: dict[str, str] = {}  # the report's headline: with constraint hypotheses, both comparisons

    def report(run) -> list[str]:
        result = write_report(run, formats=chosen, progress=say)
        headline["text"] = result.report.headline.conclusion
        return list(result.outputs.values())

    settings = SamplerSettings(draws=draws, tune=tune, chains=chains, seed=seed)
    result = guard(
        lambda: run_brief(
            study or default_study(),
            settings=settings,
            runs_root=runs_dir,
            skip=steps,
            history_every=history_every,
            allow_unconverged=allow_unconverged,
            robustness=robustness,
            report=report,
            progress=say,
        )
    )
    text = headline.get("text") or result.conclusion
    if as_json:
        emit_json({**result.to_dict(), "headline": text})
    else:
        click.echo(text)
        for s in result.steps:
            status = {"done": f"done in {s.seconds:.1f} s", "skipped": "skipped"}.get(s.status, f"FAILED: {s.note}")
            click.echo(f"  {s.name:<9} {status}")
            for path in s.written:
                click.echo(f"            {path}")
        click.echo(f"brief finished in {result.seconds:.1f} s; run {result.run_dir}")
    if result.failed:
        sys.exit(result.failed[0].exit_code or 1)
    if not result.converged:
        click.echo("forecast: the run failed its convergence checks; its report says so (exit 3)", err=True)
        sys.exit(3)
