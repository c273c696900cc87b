"""`forecast import`: Import CAMEO-coded events (GDELT, ICEWS, POLECAT-style exports) from SOURCE into STUDY."""

from __future__ import annotations

from pathlib import Path

import click

from forecast.cli.app import default_study, emit_json, guard, main
from forecast.cli.options import (
    json_option,
    runs_dir_option,
    study_argument,
)


@main.command("import")
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@study_argument
@click.option(
    "--mapping",
    "mapping_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The mapping file [default: cameo_mapping.toml next to the study's observation file].",
)
@click.option(
    "--into",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The observation file to append to [default: the study's].",
)
@click.option(
    "--format",
    "fmt",
    type=str,
    default="auto",
    show_default=True,
    help="auto, gdelt, icews, polecat or generic (columns named in the mapping file).",
)
@click.option(
    "--on-match",
    type=str,
    default=None,
    help="An event already in the file: skip, corroborate (add as a report of it) or keep [default: the mapping's].",
)
@click.option("--dry-run", is_flag=True, help="Map and validate, but write nothing (needs no write access).")
@runs_dir_option()
@json_option("Print one JSON object on stdout.")
def import_events(source, study, mapping_path, into, fmt, on_match, dry_run, runs_dir, as_json):
    """Import CAMEO-coded events (GDELT, ICEWS, POLECAT-style exports) from SOURCE into STUDY.

    Maps each row's actors to the study's counterparts, its quad class, event code or Goldstein
    score to a cooperative or conflictual outcome and an intensity, and its event code or text
    to a domain, through an editable mapping file. Reports every row it cannot map, and why;
    appends the rest only if the whole observation file still validates, never twice the same
    event. Writes an import report under the study's run store.

    \b
    Example:
      forecast import gdelt_export.csv priors/turkey_nato.toml --dry-run
    """
    from forecast.reports.text.import_ import render_import
    from forecast.workflows.import_events import run_import

    result = guard(
        lambda: run_import(
            source,
            study or default_study(),
            mapping_path=mapping_path,
            into=into,
            fmt=fmt,
            on_match=on_match,
            dry_run=dry_run,
            runs_root=runs_dir,
        )
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render_import(result))
