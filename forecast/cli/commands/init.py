"""`forecast init`: Scaffold a new study NAME: priors/NAME.toml (commented) and data/NAME.csv (header only)."""

from __future__ import annotations

from pathlib import Path

import click

from forecast.cli.app import emit_json, guard, main
from forecast.cli.options import (
    json_option,
)


@main.command()
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Project directory to create priors/ and data/ in.",
)
@json_option("Print one JSON object on stdout.")
def init(name, directory, as_json):
    """Scaffold a new study NAME: priors/NAME.toml (commented) and data/NAME.csv (header only).

    The files validate as written; edit the groups, domains and hypotheses, then add events.
    Each event says who acted in its `initiator` column (actor, counterpart or joint); the
    study's `[evidence] initiators` chooses whose acts count (all three by default).

    \b
    Example:
      forecast init gulf_hedging && forecast validate priors/gulf_hedging.toml
    """
    from forecast.workflows.init import init_study

    study, data = guard(lambda: init_study(name, directory))
    if as_json:
        emit_json({"study": str(study), "observations": str(data)})
    else:
        click.echo(
            f"created {study}\ncreated {data}\nnext: edit the study, add events, then `forecast validate {study}`"
        )
