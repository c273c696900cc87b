"""`forecast predict`: Forecast the next quarters from the latest run of STUDY, and answer its questions."""

from __future__ import annotations

import click

from forecast.cli.app import default_study, emit_json, guard, main, progress
from forecast.cli.options import (
    allow_unconverged_option,
    json_option,
    quiet_option,
    runs_dir_option,
    seed_option,
    study_argument,
)


@main.command()
@study_argument
@click.option("--horizon", type=int, default=4, show_default=True, help="Quarters ahead to forecast.")
@click.option(
    "--origin", default=None, help="Forecast the quarters after this one [default: the last quarter with observations]."
)
@seed_option("Seed for the random-walk extension.")
@runs_dir_option()
@allow_unconverged_option("Forecast from a run whose fits failed their checks (flagged).")
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    metavar="YYYY-MM-DD",
    help="Judge which quarters and questions are already over as of this date [default: the system date].",
)
@json_option("Print one JSON object on stdout instead of the tables.")
@quiet_option("No progress messages on stderr.")
def predict(study, horizon, origin, seed, runs_dir, allow_unconverged, today, as_json, quiet):
    """Forecast the next quarters from the latest run of STUDY, and answer its questions.

    For every counterpart group and domain: the expected share of cooperative interactions
    with its 50% and 90% intervals, under each hypothesis and averaged over them by their
    posterior probabilities; a probability for every [[questions]] entry of the study; and
    the milestones, the cells whose next quarter would move the evidence most. Reads the
    posterior draws of the latest `forecast update` (no refitting) and writes forecasts.json
    into that run.

    Stale data are said plainly: when forecast quarters or questions' quarters are already
    over (today, or --today), a warning names them and the date of the latest observation,
    on stderr before the table (in --json: the `warnings` list).

    \b
    Example:
      forecast predict priors/turkey_nato.toml --horizon 4 --json > forecasts.json
    """
    from forecast.reports.text.predict import render_predict, render_warnings
    from forecast.workflows.predict import run_predict

    result = guard(
        lambda: run_predict(
            study or default_study(),
            horizon=horizon,
            origin=origin,
            runs_root=runs_dir,
            allow_unconverged=allow_unconverged,
            seed=seed,
            today=today.date() if today else None,
            progress=progress(quiet),
        )
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        if result.warnings:
            click.echo(render_warnings(result) + "\n", err=True)
        click.echo(render_predict(result, warnings=False))
