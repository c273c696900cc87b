"""`forecast simulate`: Simulate SYNTHETIC observations: what the data would look like if a hypothesis were true."""

from __future__ import annotations

from pathlib import Path

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
    "--hypothesis",
    "-H",
    "hypothesis",
    required=True,
    help="The hypothesis to simulate from (its id; see `forecast validate`).",
)
@click.option(
    "--from",
    "source",
    type=click.Choice(["prior", "posterior"]),
    default="prior",
    show_default=True,
    help="Draw the parameters from the hypothesis's prior, or from its posterior in the latest run (which must "
    "match the current study and observations).",
)
@click.option(
    "--n",
    type=click.IntRange(1),
    default=None,
    help="Simulate N events spread over counterparts, domains and quarters [default: the study's own design].",
)
@click.option("--reliability", default="A1", show_default=True, help="With --n: the grade of every simulated event.")
@seed_option("Random seed (same seed, same data).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the synthetic data [default: simulations/ in the latest run, or in the run store].",
)
@runs_dir_option()
@json_option("Print one JSON object on stdout.")
def simulate(study, hypothesis, source, n, reliability, seed, out, runs_dir, as_json):
    """Simulate SYNTHETIC observations: what the data would look like if a hypothesis were true.

    Draws the model's parameters once from the hypothesis's prior (or posterior), then an
    outcome for every event of the design (by default the study's own counterparts, domains,
    dates and grades). Writes observations.csv (every row labelled synthetic), a renamed copy
    of the study that reads them, and simulation.json with the parameter values drawn, to a
    directory of their own (never the study's data directory).

    \b
    Example:
      forecast simulate priors/turkey_nato.toml -H realignment --n 2000 --out /tmp/sim
      forecast update /tmp/sim/study.toml
    """
    from forecast.reports.text.simulate import render_simulate
    from forecast.workflows.simulate import run_simulate

    result = guard(
        lambda: run_simulate(
            study or default_study(),
            hypothesis,
            source=source,
            n=n,
            seed=seed,
            out=out,
            runs_root=runs_dir,
            reliability=reliability,
        )
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render_simulate(result))
