"""Option bundles shared by the commands (defaults from forecast/settings.py, never repeated)."""

from __future__ import annotations

from pathlib import Path

import click

from forecast.settings import DEFAULT_SEED, SEED_MAX, SamplerSettings

study_argument = click.argument("study", required=False, type=click.Path(dir_okay=False, path_type=Path))


def seed_option(help: str = "Random seed (same seed, same numbers)."):
    return click.option("--seed", type=click.IntRange(0, SEED_MAX), default=DEFAULT_SEED, show_default=True, help=help)


def draws_and_tune(command):
    """``--draws`` and ``--tune``, defaulting to the sampler's settings."""
    command = click.option(
        "--tune",
        type=click.IntRange(100),
        default=SamplerSettings.tune,
        show_default=True,
        help="Tuning draws per chain.",
    )(command)
    return click.option(
        "--draws",
        type=click.IntRange(100),
        default=SamplerSettings.draws,
        show_default=True,
        help="Posterior draws per chain.",
    )(command)


def runs_dir_option(help: str = "Where run directories are [default: reports/runs under the current directory]."):
    return click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=help)


def allow_unconverged_option(help: str = "Write results even if a fit fails its checks (flagged as unreliable)."):
    return click.option("--allow-unconverged", is_flag=True, help=help)


def json_option(help: str = "Print one JSON object on stdout instead of the tables."):
    return click.option("--json", "as_json", is_flag=True, help=help)


def quiet_option(help: str = "No progress messages on stderr."):
    return click.option("--quiet", "-q", is_flag=True, help=help)
