"""`forecast validate`: Check STUDY and its observations and report every problem, without fitting anything."""

from __future__ import annotations

import click

from forecast.cli.app import default_study, emit_json, guard, main
from forecast.cli.options import (
    json_option,
    study_argument,
)


@main.command()
@study_argument
@json_option("Print one JSON object on stdout.")
def validate(study, as_json):
    """Check STUDY and its observations and report every problem, without fitting anything.

    \b
    Example:
      forecast validate priors/turkey_nato.toml
    """
    from forecast.reports.text.validate import render_validate
    from forecast.workflows.validate import run_validate

    result = guard(lambda: run_validate(study or default_study()))
    if as_json:
        emit_json(result)
    else:
        click.echo(render_validate(result))
