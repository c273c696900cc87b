"""`forecast calibrate`: Simulation-based calibration of STUDY's hypothesis test (Schad et al. 2023)."""

from __future__ import annotations

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


@main.command()
@study_argument
@click.option("--datasets", type=click.IntRange(2), default=100, show_default=True, help="Simulated data sets to fit.")
@click.option(
    "--n",
    type=click.IntRange(1),
    default=None,
    help="Events per data set, spread over counterparts, domains and quarters [default: the study's own design].",
)
@click.option("--reliability", default="A1", show_default=True, help="With --n: the grade of every simulated event.")
@seed_option("Random seed (same seed, same data sets).")
@draws_and_tune
@click.option("--chains", type=click.IntRange(2), default=4, show_default=True, help="Independent chains.")
@click.option("--workers", type=click.IntRange(0), default=None, help="Local worker processes [default: one per core].")
@click.option("--scheduler", default=None, help="A Dask scheduler address (tcp://host:8786) to run the fits on.")
@click.option(
    "--comparison",
    type=click.Choice(["prior", "constraints", "both"]),
    default=None,
    help="Which comparison to calibrate: the prior-specified hypotheses, the constraint hypotheses (one "
    "encompassing fit per data set), or both, each on its own data sets [default: every one the study has].",
)
@click.option(
    "--prior-draws",
    type=click.IntRange(1000),
    default=None,
    help="Encompassing prior draws for the constraint regions' prior masses [default: the study's].",
)
@click.option("--bins", type=click.IntRange(2, 20), default=5, show_default=True, help="Bins of the calibration table.")
@runs_dir_option()
@allow_unconverged_option("Keep data sets whose fits fail their checks (flagged).")
@json_option("Print one JSON object on stdout instead of the tables.")
@quiet_option("No progress on stderr (by default a line per finished data set, with the time left).")
def calibrate(
    study,
    datasets,
    n,
    reliability,
    seed,
    draws,
    tune,
    chains,
    workers,
    scheduler,
    comparison,
    prior_draws,
    bins,
    runs_dir,
    allow_unconverged,
    as_json,
    quiet,
):
    """Simulation-based calibration of STUDY's hypothesis test (Schad et al. 2023).

    Repeatedly draws a hypothesis from the prior probabilities and data of the study's size
    from it, runs the full update, and checks that the posterior probabilities are
    calibrated: their average equals the prior probability, and among data sets where the
    tool says P(H) = p, H is true about a fraction p of the time. Also reports how often the
    tool would pick the true hypothesis at this data size. Below 20 data sets it shows the checks
    but gives no verdict; every verdict states the power of the check (the smallest
    miscalibration, in probability points, it would detect). Runs the data sets in parallel
    (local processes or a Dask cluster); writes calibration.json into the latest run when it
    matches the current inputs (otherwise outside any run, and says so).

    A study with constraint hypotheses has them calibrated too (--comparison): the truth is a
    constraint hypothesis (or the complement) with parameters from the encompassing prior
    restricted to its region, and each data set needs ONE encompassing fit; reported in its own
    section (calibration.json's "constraints").

    \b
    Example:
      forecast calibrate priors/turkey_nato.toml --datasets 200 --workers 2 --json > calibration.json
    """
    from forecast.reports.text.calibrate import render_calibration
    from forecast.settings import SamplerSettings
    from forecast.workflows.calibrate import run_calibration

    settings = SamplerSettings(draws=draws, tune=tune, chains=chains, seed=seed)
    result = guard(
        lambda: run_calibration(
            study or default_study(),
            settings,
            n_datasets=datasets,
            n=n,
            reliability=reliability,
            workers=workers,
            scheduler=scheduler,
            n_bins=bins,
            comparison=comparison,
            prior_draws=prior_draws,
            runs_root=runs_dir,
            allow_unconverged=allow_unconverged,
            progress=progress(quiet),
        )
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render_calibration(result))
