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
@click.option(
    "--encoding",
    default="utf-8",
    show_default=True,
    help="The event file's text encoding (e.g. latin-1, cp1252); .gz and .zip files are read directly.",
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Import only events dated on or after this day (YYYY-MM-DD).",
)
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Import only events dated on or before this day (YYYY-MM-DD).",
)
@click.option(
    "--show",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Show the first N mapped rows (with --dry-run: see what an import would add).",
)
@runs_dir_option()
@json_option("Print one JSON object on stdout.")
def import_events(
    source, study, mapping_path, into, fmt, on_match, dry_run, encoding, since, until, show, runs_dir, as_json
):
    """Import CAMEO-coded events (GDELT, ICEWS, POLECAT-style exports) from SOURCE into STUDY.

    Maps each row's actors (CAMEO code prefixes such as TURGOV, or names and aliases) to the
    study's counterparts, its quad class, PLOVER event type or CAMEO code to a cooperative or
    conflictual outcome (neutral statements are skipped), and its keywords (whole words of the
    text and the URL's path), POLECAT context or mode, or CAMEO code to a domain, through an
    editable mapping file. Repeated reports of one event become one event (its best-attested
    report, graded by its independent sources) with the others as corroborating reports.
    Appends only if the whole observation file still validates, never twice the same event.

    Reads .csv/.tsv, and .gz or .zip files directly (GDELT's downloads); a pre-filter skips
    the lines that name no code or name of the actor without parsing them. The terminal shows
    the skipped rows by reason and lists those that involve the actor; the full per-row report
    is written, gzip-compressed, under the study's run store.

    \b
    Examples:
      forecast import 20240105.export.CSV.zip priors/turkey_nato.toml --dry-run --show 10
      forecast import icews.tab priors/turkey_nato.toml --encoding latin-1 --since 2024-01-01
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
            encoding=encoding,
            since=since.date() if since else None,
            until=until.date() if until else None,
        )
    )
    if as_json:
        out = result.to_dict()
        if show:
            out["shown"] = list(result.imported[:show])
        emit_json(out)
    else:
        click.echo(render_import(result, show=show))
