"""`forecast sensitivity`: Would the conclusion about STUDY change under other reasonable priors?"""

from __future__ import annotations

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


@main.command()
@study_argument
@click.option(
    "--grid",
    "grid_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML file of grid settings: shifts, scales, by, joint, hypotheses, parameters, refit, pareto_k_threshold.",
)
@click.option(
    "--shift", "shifts", type=float, multiple=True, help="Location shift in prior SDs, repeatable [default: 0.5]."
)
@click.option("--scale", "scales", type=float, multiple=True, help="Width factor > 1, repeatable [default: 1.5].")
@click.option("--by", default=None, help="'parameter' (all groups at once, default) or 'slot' (each group alone).")
@click.option("--no-joint", is_flag=True, help="Do not perturb all priors of a hypothesis jointly.")
@click.option("--hypothesis", "hypotheses", multiple=True, help="Perturb only this hypothesis (repeatable).")
@click.option("--parameter", "parameters", multiple=True, help="Perturb only this hyperparameter (repeatable).")
@click.option("--refit", default=None, help="'auto' (where Pareto k is too high, default), 'all' or 'none'.")
@click.option("--scheduler", default=None, help="Dask scheduler address (tcp://host:8786) for the refits.")
@click.option(
    "--workers",
    type=click.IntRange(0),
    default=None,
    help="Local worker processes for the refits [default: as many as fit side by side with 2 cores each, so in "
    "this process on a 2-core machine; 0: in this process].",
)
@seed_option("Seed of `forecast update` if it must run.")
@runs_dir_option()
@allow_unconverged_option("Write results even if a fit fails its checks (flagged).")
@json_option("Print one JSON object on stdout instead of the report.")
@quiet_option("No progress messages or progress bar on stderr.")
def sensitivity(
    study,
    grid_file,
    shifts,
    scales,
    by,
    no_joint,
    hypotheses,
    parameters,
    refit,
    scheduler,
    workers,
    seed,
    runs_dir,
    allow_unconverged,
    as_json,
    quiet,
):
    """Would the conclusion about STUDY change under other reasonable priors?

    Works on the study's latest run if it matches the current study and observations (runs
    `forecast update` first otherwise, and says why). Power-scaling diagnostics per hypothesis
    and hyperparameter; a grid of prior variants (each prior shifted, widened and narrowed, one
    at a time and jointly), each hypothesis's posterior probability in every variant by
    Pareto-smoothed importance reweighting, refitting only where Pareto k says reweighting is
    unreliable; the range of each probability, a tornado plot and a verdict on whether the
    leading hypothesis stays ahead; and the prior probability at which the conclusion flips.
    Refits run on local worker processes, or on a Dask cluster with --scheduler. Writes
    sensitivity.json and two plots into the run.

    \b
    Example:
      forecast sensitivity priors/turkey_nato.toml --shift 0.5 --shift 1 --json > sensitivity.json
      forecast sensitivity --scheduler tcp://10.0.0.5:8786
    """
    # Imported here, not at the top: they load the sampler, which `forecast --help` does not need.
    from forecast.reports.plots.run_pngs import sensitivity_pngs
    from forecast.reports.text.sensitivity import render_sensitivity
    from forecast.settings import SamplerSettings
    from forecast.workflows.sensitivity import grid_spec_from, run_sensitivity

    def go():
        spec = grid_spec_from(
            grid_file,
            shifts=list(shifts) or None,
            scales=list(scales) or None,
            by=by,
            joint=False if no_joint else None,
            hypotheses=list(hypotheses) or None,
            parameters=list(parameters) or None,
            refit=refit,
        )
        return run_sensitivity(
            study or default_study(),
            spec,
            runs_root=runs_dir,
            scheduler=scheduler,
            workers=workers,
            allow_unconverged=allow_unconverged,
            progress=progress(quiet),
            update_settings=SamplerSettings(seed=seed),
            plots=sensitivity_pngs,
        )

    result = guard(go)
    if as_json:
        emit_json(result)
    else:
        click.echo(render_sensitivity(result))
