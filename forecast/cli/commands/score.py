"""`forecast score`: Score STUDY's forecast questions whose resolution date has passed."""

from __future__ import annotations

import click

from forecast.cli.app import default_study, emit_json, guard, main
from forecast.cli.options import (
    json_option,
    runs_dir_option,
    study_argument,
)


@main.command()
@study_argument
@runs_dir_option()
@json_option("Print one JSON object on stdout.")
def score(study, runs_dir, as_json):
    """Score STUDY's forecast questions whose resolution date has passed.

    Each question is judged with the last forecast `forecast predict` stored for it before it
    resolved, against the observations now in the data file: Brier and log score per
    question, and their running averages. Writes scores.json into the latest run, which must
    match the current study and observations (after adding the events that resolve a question,
    run `forecast update` first).

    \b
    Example:
      forecast score priors/turkey_nato.toml --json
    """
    from forecast.reports.text.score import render_score
    from forecast.workflows.score import run_score

    result = guard(lambda: run_score(study or default_study(), runs_root=runs_dir))
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render_score(result))
