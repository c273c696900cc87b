"""`forecast evidence`: Diagnosticity and critical items of STUDY's evidence: what if an observation is wrong?"""

from __future__ import annotations

from pathlib import Path

import click

from forecast.cli.app import default_study, emit_json, guard, main, progress
from forecast.cli.options import (
    allow_unconverged_option,
    json_option,
    quiet_option,
    runs_dir_option,
    study_argument,
)


@main.command()
@study_argument
@runs_dir_option()
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="A run directory to read [default: the study's latest run]; it must match the current study and observations.",
)
@click.option(
    "--shift",
    type=float,
    default=0.1,
    show_default=True,
    help="An item is critical if removing or reversing it moves a posterior probability by at least this much "
    "(or changes the leading hypothesis).",
)
@click.option(
    "--reliability-below",
    type=float,
    default=None,
    help="Evidence quality: also weigh the evidence without every observation of reliability weight below this.",
)
@click.option(
    "--refit/--no-refit",
    default=True,
    show_default=True,
    help="Refit where Pareto k says importance sampling is unreliable.",
)
@click.option("--max-refits", type=click.IntRange(0), default=10, show_default=True, help="At most this many refits.")
@click.option("--top", type=click.IntRange(1), default=15, show_default=True, help="Rows of the printed ranking.")
@allow_unconverged_option("Keep refits that fail their convergence checks (flagged).")
@json_option("Print one JSON object on stdout instead of the tables.")
@quiet_option("No progress messages on stderr.")
def evidence(
    study, runs_dir, run_dir, shift, reliability_below, refit, max_refits, top, allow_unconverged, as_json, quiet
):
    """Diagnosticity and critical items of STUDY's evidence: what if an observation is wrong?

    Reads the latest run of `forecast update` (refused, exit 2, if the study's model or the
    observations have changed since; comments and labels may change). For every observation: how strongly it favours
    one hypothesis over another (differences of its leave-one-out log predictive densities),
    and the posterior probabilities if it were removed or its outcome reversed (Pareto-smoothed
    importance sampling from the posterior draws; a refit where Pareto k is too high). Lists the
    critical items, the conclusion without low-reliability observations, and the reports that
    corroborate an event already counted. Writes evidence.json into the run.

    Constraint hypotheses ([[constraint_hypotheses]]): the same what-ifs, and every observation
    of one group of counterparts or one domain left out at once, for their probabilities, by
    reweighting the run's encompassing fit (their prior masses do not change); Pareto k above
    the threshold is refitted within --max-refits (after the prior-specified refits) or flagged.
    Shown in a section of their own, apart from the prior-specified diagnosticity.

    \b
    Example:
      forecast evidence priors/turkey_nato.toml --reliability-below 0.5 --json > evidence.json
    """
    from forecast.reports.text.evidence import render_evidence
    from forecast.workflows.evidence import run_evidence

    result = guard(
        lambda: run_evidence(
            study or default_study(),
            runs_root=runs_dir,
            run_dir=run_dir,
            shift=shift,
            reliability_below=reliability_below,
            refit=refit,
            max_refits=max_refits,
            allow_unconverged=allow_unconverged,
            progress=progress(quiet),
        )
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render_evidence(result, top=top))
