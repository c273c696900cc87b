"""`forecast backtest`: Rolling-origin evaluation of STUDY's forecasts, and leave-future-out comparison."""

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
@click.option("--origins", default=None, help="Origin quarters, 'FIRST:LAST' (e.g. 2022Q4:2025Q3).")
@click.option(
    "--n-origins", type=click.IntRange(1), default=12, show_default=True, help="Without --origins: the last N origins."
)
@click.option("--horizon", type=int, default=4, show_default=True, help="Quarters ahead forecast from each origin.")
@click.option(
    "--lfo",
    type=click.Choice(["exact", "approx"]),
    default="exact",
    show_default=True,
    help="Refit at every origin, or carry fits forward by PSIS and refit when Pareto k > 0.7.",
)
@seed_option("Random seed (same seed, same numbers).")
@draws_and_tune
@click.option("--chains", type=click.IntRange(2), default=4, show_default=True, help="Independent chains.")
@click.option("--cores", type=click.IntRange(1), default=2, show_default=True, help="Chains sampled in parallel.")
@click.option(
    "--workers",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Local worker processes sharing the exact refits, one origin each (0: in this process).",
)
@click.option("--scheduler", default=None, help="Dask scheduler address (tcp://host:8786) for the exact refits.")
@runs_dir_option()
@allow_unconverged_option("Keep going when a fit fails its checks (flagged).")
@json_option("Print one JSON object on stdout instead of the tables.")
@quiet_option("No progress messages on stderr.")
def backtest(
    study,
    origins,
    n_origins,
    horizon,
    lfo,
    seed,
    draws,
    tune,
    chains,
    cores,
    workers,
    scheduler,
    runs_dir,
    allow_unconverged,
    as_json,
    quiet,
):
    """Rolling-origin evaluation of STUDY's forecasts, and leave-future-out comparison.

    At every origin quarter, fits each hypothesis on what was known then (report dates up to
    the origin's end), forecasts the next quarters and scores the forecasts against what
    happened (log and Brier scores, skill against the base rate and the last quarter's share,
    coverage of the 50%/90% intervals, calibration), re-asks the study's questions, and gives
    each hypothesis's leave-future-out elpd beside its PSIS-LOO elpd. Writes backtest.json and
    backtest_reliability.png into the latest run. Origins run one after another on one
    compiled model; --workers N or --scheduler share the exact refits out, an origin per task.

    \b
    Example:
      forecast backtest priors/turkey_nato.toml --n-origins 12 --horizon 4 --json > backtest.json
    """
    from forecast.reports.plots.backtest import reliability
    from forecast.reports.text.backtest import render_backtest
    from forecast.settings import SamplerSettings
    from forecast.workflows.backtest import run_backtest

    settings = SamplerSettings(draws=draws, tune=tune, chains=chains, cores=cores, seed=seed)
    result = guard(
        lambda: run_backtest(
            study or default_study(),
            settings,
            origins=origins,
            n_origins=n_origins,
            horizon=horizon,
            lfo=lfo,
            runs_root=runs_dir,
            allow_unconverged=allow_unconverged,
            progress=progress(quiet),
            scheduler=scheduler,
            workers=workers,
            plot=reliability,
        )
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render_backtest(result))
