"""`forecast priors`: Show each hypothesis's priors in STUDY and what they imply before any data is seen."""

from __future__ import annotations

import click

from forecast.cli.app import default_study, emit_json, guard, main
from forecast.cli.options import (
    json_option,
    runs_dir_option,
    seed_option,
    study_argument,
)


@main.command()
@study_argument
@click.option(
    "--draws",
    "n_draws",
    type=click.IntRange(1000),
    default=20000,
    show_default=True,
    help="Prior draws per hypothesis.",
)
@seed_option("Random seed (same seed, same numbers).")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.15,
    show_default=True,
    help="Warn when two hypotheses' prior predictives differ by less than this (Hellinger) in every summary.",
)
@runs_dir_option()
@json_option("Print one JSON object on stdout instead of the tables.")
def priors(study, n_draws, seed, threshold, runs_dir, as_json):
    """Show each hypothesis's priors in STUDY and what they imply before any data is seen.

    Per hypothesis: every prior as stated (an analyst's statement such as "90% sure 60-90% of
    interactions are cooperative") and as fitted on the model's scale, and the prior
    predictive cooperative shares per counterpart group and domain with 50% and 90%
    intervals. Warns when two hypotheses imply nearly the same data (then no data can separate
    them). Writes prior_predictive.json and prior_predictive.png into the study's latest run
    if that run matches the current study and observations; otherwise says why nothing was written.

    \b
    Example:
      forecast priors priors/turkey_nato.toml --json > priors.json
    """
    from forecast.reports.plots.run_pngs import priors_pngs
    from forecast.reports.text.priors import render_priors
    from forecast.workflows.priors import run_priors

    result = guard(
        lambda: run_priors(
            study or default_study(), runs_root=runs_dir, n=n_draws, seed=seed, threshold=threshold, plots=priors_pngs
        )
    )
    if as_json:
        emit_json(result)
    else:
        click.echo(render_priors(result))
