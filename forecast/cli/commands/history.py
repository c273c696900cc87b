"""`forecast history`: Support over time for a run of STUDY: each hypothesis's probability after each quarter."""

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
from forecast.settings import SEED_MAX

# The sampler options default to the run's own settings (not to SamplerSettings' defaults, as the
# shared bundles do): then the last quarter is the run's stored result instead of a refit.
RUNS_OWN = "[default: the run's own]"


@main.command()
@study_argument
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="A run directory to add history.json to [default: the study's latest run]; it must match the current "
    "study and observations.",
)
@click.option(
    "--every",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Evaluate every N-th quarter (and the last); cost falls about N-fold.",
)
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=None, help=f"Random seed {RUNS_OWN}.")
@click.option("--draws", type=click.IntRange(100), default=None, help=f"Posterior draws per chain {RUNS_OWN}.")
@click.option("--tune", type=click.IntRange(100), default=None, help=f"Tuning draws per chain {RUNS_OWN}.")
@click.option("--chains", type=click.IntRange(2), default=None, help=f"Independent chains {RUNS_OWN}.")
@click.option("--cores", type=click.IntRange(1), default=None, help=f"Chains sampled in parallel {RUNS_OWN}.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw support over time, what moved it and the key events as a PNG at this path.",
)
@runs_dir_option()
@allow_unconverged_option("Compute it for a run whose fits failed their checks (flagged).")
@json_option("Print one JSON object on stdout instead of the table.")
@quiet_option()
def history(
    study, run_dir, every, seed, draws, tune, chains, cores, plot_path, runs_dir, allow_unconverged, as_json, quiet
):
    """Support over time for a run of STUDY: each hypothesis's probability after each quarter.

    For every quarter (every N-th with --every, and always the last), refits each hypothesis on
    the observations known by the quarter's end (their report dates) on the run's compiled
    model, estimates its marginal likelihood by bridge sampling, and gives the posterior
    probabilities then; the last quarter is the run's own result. Minutes: one fit per
    hypothesis and quarter. Works on the study's latest run (or --run), which must match the
    current study and observations (--run without STUDY: the run's own copies of them), and
    stores history.json in it for `forecast report`.

    What moved it: each change of the log Bayes factor between the two hypotheses leading at
    the end is split over the events that became known in that interval (each event's
    sequential log predictive density under one hypothesis minus the other, by importance
    sampling of the earlier quarter's fit; no extra fits), and the events that moved it most
    are named, per interval and over the whole window.

    \b
    Example:
      forecast history priors/turkey_nato.toml --every 4 --json > history.json
      forecast history --every 4 --plot support.png

    Constraint hypotheses ([[constraint_hypotheses]]): their probabilities at each quarter come
    from one encompassing fit per quarter (the regions' prior masses once), shown in a table of
    their own and, with --plot, a figure of their own (support_constraints.png beside
    support.png; at --plot's path for a study with constraint hypotheses only).
    """
    from forecast.reports.text.history import render_history
    from forecast.workflows.history import run_history

    if plot_path is not None and not plot_path.parent.is_dir():
        raise click.BadParameter(f"{plot_path.parent} is not a directory", param_hint="--plot")

    given = {"seed": seed, "draws": draws, "tune": tune, "chains": chains, "cores": cores}
    result = guard(
        lambda: run_history(
            study or (None if run_dir else default_study()),
            run_dir=run_dir,
            runs_root=runs_dir,
            every=every,
            overrides={k: v for k, v in given.items() if v is not None},
            allow_unconverged=allow_unconverged,
            progress=progress(quiet),
        )
    )
    if plot_path is not None:
        guard(lambda: _write_plot(plot_path, result))
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render_history(result))


def _write_plot(path: Path, result) -> Path:
    """The figure at ``path``; with both prior-specified and constraint hypotheses, the constraint
    hypotheses' figure beside it as ``<stem>_constraints<suffix>`` (never one panel for both)."""
    from forecast.reports.plots.history import constraint_history_png, history_png
    from forecast.runs.store import atomic_write_bytes

    data = result.to_dict()
    if data["hypotheses"] and data.get("constraints"):
        atomic_write_bytes(path.with_name(f"{path.stem}_constraints{path.suffix}"), constraint_history_png(data))
    return atomic_write_bytes(path, history_png(data))
