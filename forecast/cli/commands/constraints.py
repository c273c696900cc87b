"""`forecast constraints`: constraint hypotheses of STUDY compared on one encompassing fit."""

from __future__ import annotations

import click

from forecast.cli.app import default_study, emit_json, guard, main, progress
from forecast.cli.options import (
    allow_unconverged_option,
    draws_and_tune,
    json_option,
    quiet_option,
    seed_option,
    study_argument,
)


@main.command()
@study_argument
@seed_option("Random seed (same seed, same numbers).")
@draws_and_tune
@click.option(
    "--chains", type=click.IntRange(2), default=4, show_default=True, help="Independent chains (R-hat needs >= 2)."
)
@click.option("--cores", type=click.IntRange(1), default=2, show_default=True, help="Chains sampled in parallel.")
@click.option(
    "--prior-draws",
    type=click.IntRange(1000),
    default=None,
    help="Monte Carlo draws of the encompassing prior [default: the study's encompassing.prior_draws, 40000].",
)
@allow_unconverged_option("Report results even if the fit fails its convergence checks (flagged as unreliable).")
@json_option("Print one JSON object on stdout instead of the table.")
@quiet_option("No progress messages on stderr.")
def constraints(study, seed, draws, tune, chains, cores, prior_draws, allow_unconverged, as_json, quiet):
    """Compare STUDY's constraint hypotheses ([[constraint_hypotheses]]) on one encompassing fit.

    Each hypothesis is a set of constraints on quantities such as share(nato, 2019Q3..2026Q3),
    change(russia, before, after), trend(nato) or domain_gap(russia, after); its prior is the
    study's one [encompassing] prior restricted to those constraints. The encompassing model is
    fitted once; each hypothesis's Bayes factor against it is its region's posterior mass over its
    prior mass (Monte Carlo errors shown); posterior probabilities include the complement ("none
    of these"). Also shown: how the probabilities move when the encompassing prior is made 1.5x
    wider or narrower (reweighted, no refit). Nothing is written: `forecast update` runs the same
    comparison (same seed, same numbers) beside the prior-specified one and stores it in the run.

    STUDY is a study file (TOML); by default priors/turkey_nato.toml, which states both kinds.

    \b
    Example:
      forecast constraints priors/turkey_nato.toml
    """
    from forecast.reports.text.constraints import render_constraints
    from forecast.settings import SamplerSettings
    from forecast.workflows.constraints import run_constraints

    settings = SamplerSettings(draws=draws, tune=tune, chains=chains, cores=cores, seed=seed)
    result = guard(
        lambda: run_constraints(
            study or default_study(),
            settings,
            prior_draws=prior_draws,
            allow_unconverged=allow_unconverged,
            progress=progress(quiet),
        )
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render_constraints(result))
