"""`forecast ingest`: import every new event dump in a folder, then update and report when due."""

from __future__ import annotations

import sys
from pathlib import Path

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


@main.command("ingest")
@study_argument
@click.option(
    "--from",
    "from_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder the dumps arrive in (.csv/.tsv/.tab/.txt, and .gz/.zip of them).",
)
@click.option(
    "--mapping",
    "mapping_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The mapping file [default: cameo_mapping.toml next to the study's observation file].",
)
@click.option("--format", "fmt", default="auto", show_default=True, help="auto, gdelt, icews, polecat or generic.")
@click.option("--encoding", default="utf-8", show_default=True, help="The dumps' text encoding.")
@click.option(
    "--update/--no-update",
    "update",
    default=None,
    help="Update (and report) now / never [default: when a quarter has closed since the latest run].",
)
@seed_option()
@allow_unconverged_option()
@runs_dir_option()
@json_option("Print one JSON object on stdout (for cron and systemd logs).")
@quiet_option()
def ingest(study, from_dir, mapping_path, fmt, encoding, update, seed, allow_unconverged, runs_dir, as_json, quiet):
    """Import every new event dump in a folder into STUDY; update and report when a quarter has closed.

    For a scheduler: each file is imported once (a ledger of imported files by content hash in
    the study's run folder, imports/ingested.json), a file still being written (no line break at
    its end) or damaged is left for the next run, a file whose import was interrupted is finished
    (its rows are never added twice), and a lock keeps two ingests of a study from interleaving.
    Then, when a quarter has closed since the study's latest run (or with --update), runs
    `forecast update` and writes its report (HTML, Markdown, JSON) beside the run.

    \b
    Exit codes: 0 done (also: nothing new); 2 bad input (study, mapping, folder) or an
    unwritable run store; 3 the update failed its convergence checks (the imports are kept);
    4 at least one file could not be imported (the others were; it is retried next time);
    75 another ingest of the study is running (nothing done: try later); 130 interrupted.

    \b
    Examples:
      forecast ingest priors/turkey_nato.toml --from /srv/gdelt/incoming --json
      forecast ingest priors/turkey_nato.toml --from dumps/ --update
    """
    from forecast.reports.text.ingest import render_ingest
    from forecast.settings import SamplerSettings
    from forecast.workflows.ingest import run_ingest

    say = progress(quiet or as_json)
    result = guard(
        lambda: run_ingest(
            study or default_study(),
            from_dir,
            mapping_path=mapping_path,
            fmt=fmt,
            encoding=encoding,
            runs_root=runs_dir,
            update=update,
            settings=SamplerSettings(seed=seed),
            allow_unconverged=allow_unconverged,
            progress=say,
        )
    )
    report = None
    if result.updated and result.run_dir:
        from forecast.reports.report import write_report
        from forecast.runs.stored import StoredRun

        say("writing the report")
        report = guard(lambda: write_report(StoredRun.open(Path(result.run_dir)), progress=say))
    out = result.to_dict()
    if report is not None:
        out["report"] = {fmt_: str(path) for fmt_, path in report.outputs.items()}
        out["converged"] = report.converged
    if as_json:
        emit_json(out)
    else:
        click.echo(render_ingest(out))
    if report is not None and not report.converged:
        sys.exit(3)
    if result.exit_code:
        sys.exit(result.exit_code)
