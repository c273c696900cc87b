"""The command group and what every command shares: error mapping, JSON output, progress.

Exit codes:

- 0 success;
- 2 bad input or usage, before any work (a study or observation file, an option's value), a
  stored file that is missing, damaged or truncated (named), or a directory that cannot be
  written ("cannot write ... to <directory>": full disk, read-only file system, no permission;
  earlier runs and LATEST stay as they were, the partial files are removed);
- 3 the convergence gate failed (nothing written);
- 4 `forecast ingest`: a dump could not be imported (it is retried at the next ingest);
- 75 `forecast ingest`: another ingest holds the lock (EX_TEMPFAIL: nothing done, try later);
- 130 interrupted (Ctrl-C at any moment: nothing written, no pointer moved);
- 1 anything else (a bug: say so, keep the traceback for FORECAST_DEBUG=1).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from forecast.errors import ForecastError

DEFAULT_STUDY = "turkey_nato.toml"


def default_study() -> Path:
    """``priors/turkey_nato.toml`` in the current directory, else the one shipped with the repo."""
    here = Path.cwd() / "priors" / DEFAULT_STUDY
    if here.is_file():
        return here
    return Path(__file__).resolve().parents[2] / "priors" / DEFAULT_STUDY


def progress(quiet: bool):
    """Progress messages on stderr, or None with --quiet."""
    if quiet:
        return None
    return lambda msg: click.echo(msg, err=True)


def interrupted() -> NoReturn:
    """Ctrl-C: say so and exit 130 (the writers have removed their partial files by now)."""
    click.echo("forecast: interrupted; nothing was written and earlier results are untouched", err=True)
    sys.exit(130)


def guard(fn):
    """Call ``fn`` and turn toolkit errors into a message and an exit code, never a traceback."""
    try:
        return fn()
    except ForecastError as e:
        click.echo(f"forecast: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        interrupted()
    except OSError as e:
        # A write the run store did not make (so not yet a RunStoreError) on a full, read-only or
        # forbidden file system: the environment's fault, not a bug (exit 2, the file named).
        from forecast.runs.store import WHY_NOT_WRITABLE

        if e.errno not in WHY_NOT_WRITABLE or os.environ.get("FORECAST_DEBUG"):
            _internal_error(e)
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"forecast: error: {where}{WHY_NOT_WRITABLE[e.errno]}", err=True)
        sys.exit(2)
    except Exception as e:  # the CLI boundary: an unexpected failure is a bug; say so plainly
        _internal_error(e)


def _internal_error(e: Exception) -> NoReturn:
    if os.environ.get("FORECAST_DEBUG"):
        raise e
    click.echo(
        f"forecast: internal error: {type(e).__name__}: {e}\n(set FORECAST_DEBUG=1 to see the traceback)", err=True
    )
    sys.exit(1)


def emit_json(obj: object) -> None:
    """One JSON object on stdout: strict JSON (an unknown or unbounded figure is null)."""
    # Imported here: forecast.runs pulls in the spec layer, which `forecast --help` does not need.
    from forecast.runs.store import jsonable

    click.echo(json.dumps(jsonable(obj), indent=2, allow_nan=False))


class ForecastGroup(click.Group):
    """The command group: Ctrl-C anywhere in a command (outside ``guard`` too) exits 130, not
    click's "Aborted!" with exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            interrupted()


@click.group(cls=ForecastGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="forecast")
def main() -> None:
    """Weigh competing hypotheses about a geopolitical question with Bayesian evidence.

    \b
    Example:
      forecast validate                 # check the default study and its observations
      forecast update                   # fit every hypothesis, print posterior support
      forecast init my_study            # scaffold priors/my_study.toml and data/my_study.csv
    """
