"""`forecast update`: Fit every hypothesis of STUDY and report how strongly the evidence supports each."""

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
@seed_option("Random seed (same seed, same numbers).")
@draws_and_tune
@click.option(
    "--chains", type=click.IntRange(2), default=4, show_default=True, help="Independent chains (R-hat needs >= 2)."
)
@click.option("--cores", type=click.IntRange(1), default=2, show_default=True, help="Chains sampled in parallel.")
@runs_dir_option("Where run directories go [default: reports/runs under the current directory].")
@allow_unconverged_option("Write results even if a fit fails its convergence checks (flagged as unreliable).")
@click.option(
    "--history",
    is_flag=True,
    help="Also compute support over time (a refit per quarter of evidence; minutes) into history.json.",
)
@click.option(
    "--history-every",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="With --history: evaluate every N-th quarter (and the last); cost falls about N-fold.",
)
@click.option(
    "--variants/--no-variants",
    default=True,
    show_default=True,
    help="Also fit the evidence variants (all rows / the actor's own and joint acts / its own acts only) "
    "when the observations record who acted, and show them side by side (one extra fit per hypothesis each).",
)
@click.option(
    "--robustness/--no-robustness",
    default=True,
    show_default=True,
    help="Also evaluate the study's declared class of reasonable priors ([robustness]; default: every prior "
    "shifted ±0.5 prior SD and made 1.5x wider and narrower, one at a time and jointly, plus the evidence "
    "variants) by reweighting these fits, refitting only where that is unreliable; the headline then says "
    "how robust the conclusion is.",
)
@json_option("Print one JSON object on stdout instead of the table.")
@quiet_option("No progress messages on stderr.")
def update(
    study,
    seed,
    draws,
    tune,
    chains,
    cores,
    runs_dir,
    allow_unconverged,
    history,
    history_every,
    variants,
    robustness,
    as_json,
    quiet,
):
    """Fit every hypothesis of STUDY and report how strongly the evidence supports each.

    STUDY is a study file (TOML); by default priors/turkey_nato.toml. Prints, per hypothesis,
    the prior probability, the log marginal likelihood and posterior probability with their
    Monte Carlo errors, PSIS-LOO predictive accuracy, and convergence diagnostics; a headline
    that says how strong the evidence is (likelihood words of ICD 203, Jeffreys' scale), how
    robust it is over the study's declared class of reasonable priors, and with what confidence;
    writes a run directory under reports/runs/<study>/.

    A study with [[constraint_hypotheses]] (the default study has both kinds) also gets their
    comparison on one fit of the encompassing model, shown as its own table after the
    prior-specified one, with one sentence saying whether the two comparisons favour the same
    hypothesis and how robust each lead is; stored as constraints.json (--json: "constraints").

    A study with [model] overdispersion = "cell" (each cell carries at most about concentration + 1
    events' worth of evidence) gets one line under the table with the concentration's posterior
    per hypothesis; --json always has "model" ({"overdispersion": "none"} for a plain study).

    \b
    Example:
      forecast update priors/turkey_nato.toml --seed 1 --json > support.json
    """
    from forecast.reports.text.update import render_update
    from forecast.settings import SamplerSettings
    from forecast.workflows.update import run_update

    settings = SamplerSettings(draws=draws, tune=tune, chains=chains, cores=cores, seed=seed)
    result = guard(
        lambda: run_update(
            study or default_study(),
            settings,
            runs_root=runs_dir,
            allow_unconverged=allow_unconverged,
            progress=progress(quiet),
            history=history,
            history_every=history_every,
            variants=variants,
            robustness=robustness,
        )
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render_update(result))
