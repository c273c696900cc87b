"""Command line: parse arguments, call one library function, print, map errors to exit codes.

Exit codes: 0 success; 2 bad input or usage; 3 convergence gate failed; 1 anything else.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import click

from forecast.errors import ForecastError
from forecast.settings import SamplerSettings

DEFAULT_STUDY = "turkey_nato.toml"


def default_study() -> Path:
    """``priors/turkey_nato.toml`` in the current directory, else the one shipped with the repo."""
    here = Path.cwd() / "priors" / DEFAULT_STUDY
    if here.is_file():
        return here
    return Path(__file__).resolve().parents[1] / "priors" / DEFAULT_STUDY


def _progress(quiet: bool):
    if quiet:
        return None
    return lambda msg: click.echo(msg, err=True)


def _run(fn):
    """Call ``fn`` and turn toolkit errors into a message and an exit code, never a traceback."""
    try:
        return fn()
    except ForecastError as e:
        click.echo(f"forecast: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("forecast: interrupted; earlier results are untouched", err=True)
        sys.exit(130)
    except Exception as e:  # an unexpected failure is a bug: say so plainly, keep the trace on request
        if os.environ.get("FORECAST_DEBUG"):
            raise
        click.echo(
            f"forecast: internal error: {type(e).__name__}: {e}\n(set FORECAST_DEBUG=1 to see the traceback)", err=True
        )
        sys.exit(1)


def draws_and_tune(command):
    """``--draws`` and ``--tune``, defaulting to the sampler's settings (forecast/settings.py)."""
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


def _emit_json(obj: dict) -> None:
    # Strict JSON for machines: a figure that is unknown (NaN) or unbounded is null, not NaN/Infinity.
    click.echo(json.dumps(_finite_or_null(obj), indent=2, default=str, allow_nan=False))


def _finite_or_null(obj):
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_null(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # a NumPy scalar
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


study_argument = click.argument("study", required=False, type=click.Path(dir_okay=False, path_type=Path))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="forecast")
def main() -> None:
    """Weigh competing hypotheses about a geopolitical question with Bayesian evidence.

    \b
    Example:
      forecast validate                 # check the default study and its observations
      forecast update                   # fit every hypothesis, print posterior support
      forecast init my_study            # scaffold priors/my_study.toml and data/my_study.csv
    """


@main.command()
@study_argument
@click.option("--seed", type=int, default=20190712, show_default=True, help="Random seed (same seed, same numbers).")
@draws_and_tune
@click.option(
    "--chains", type=click.IntRange(2), default=4, show_default=True, help="Independent chains (R-hat needs >= 2)."
)
@click.option("--cores", type=click.IntRange(1), default=2, show_default=True, help="Chains sampled in parallel.")
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where run directories go [default: reports/runs under the current directory].",
)
@click.option(
    "--allow-unconverged",
    is_flag=True,
    help="Write results even if a fit fails its convergence checks (flagged as unreliable).",
)
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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the table.")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages on stderr.")
def update(
    study, seed, draws, tune, chains, cores, runs_dir, allow_unconverged, history, history_every, as_json, quiet
):
    """Fit every hypothesis of STUDY and report how strongly the evidence supports each.

    STUDY is a study file (TOML); by default priors/turkey_nato.toml. Prints, per hypothesis,
    the prior probability, the log marginal likelihood and posterior probability with their
    Monte Carlo errors, PSIS-LOO predictive accuracy, and convergence diagnostics; writes a
    run directory under reports/runs/<study>/.

    \b
    Example:
      forecast update priors/turkey_nato.toml --seed 1 --json > support.json
    """
    from forecast.inference import SamplerSettings
    from forecast.update import run_update

    settings = SamplerSettings(draws=draws, tune=tune, chains=chains, cores=cores, seed=seed)
    result = _run(
        lambda: run_update(
            study or default_study(),
            settings,
            runs_root=runs_dir,
            allow_unconverged=allow_unconverged,
            progress=_progress(quiet),
            history=history,
            history_every=history_every,
        )
    )
    if as_json:
        _emit_json(result.to_dict())
    else:
        click.echo(render_update(result))


def render_update(result) -> str:
    lines = [f"Study '{result.study}': {result.n_observations} observations, latest {result.latest_observation}", ""]
    if not result.converged:
        lines += [
            "!" * 80,
            "WARNING: at least one fit FAILED its checks (convergence, marginal-likelihood error);",
            "every figure below is UNRELIABLE.",
            "!" * 80,
            "",
        ]
    head = f"{'hypothesis':<26} {'prior P':>7}  {'log ML ± MCSE':>16}  {'posterior P ± MCSE':>18}  {'elpd_loo ± SE':>15}  {'Δelpd ± SE':>13}  {'LOO wt':>6}  fit"
    lines += ["Support (Bayes factors)                     |  Predictive accuracy (PSIS-LOO)", head, "-" * len(head)]
    for h in result.hypotheses:
        d = h.diagnostics
        fit = "ok" if d.converged else "FAILED"
        fit += f" (R-hat {d.rhat_max:.3f}, ESS {min(d.ess_bulk_min, d.ess_tail_min):.0f}, div {d.divergences}"
        fit += "; ML error too large)" if any(p.startswith("marginal likelihood") for p in d.problems) else ")"
        lines.append(
            f"{h.label[:26]:<26} {h.prior_probability:>7.3f}  {h.log_marginal_likelihood:>8.2f} ± {h.log_marginal_likelihood_se:<5.2f}  "
            f"{h.posterior_probability:>9.3f} ± {h.posterior_probability_se:<6.3f}  {h.elpd_loo:>7.1f} ± {h.elpd_loo_se:<5.1f}  "
            f"{h.elpd_diff:>5.1f} ± {h.elpd_diff_se:<5.1f}  {h.loo_weight:>6.2f}  {fit}"
        )
    lines += ["", result.conclusion, "", result.loo_note]
    history = getattr(result, "history", None)
    if history:
        flag = "" if history["converged"] else "; some points FAILED their convergence checks (flagged)"
        lines += ["", f"Support over time: {history['n_points']} points, every {history['every']} quarter(s){flag}"]
    if result.run_dir:
        lines += ["", f"Run written to {result.run_dir}"]
    return "\n".join(lines)


@main.command()
@study_argument
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def validate(study, as_json):
    """Check STUDY and its observations and report every problem, without fitting anything.

    \b
    Example:
      forecast validate priors/turkey_nato.toml
    """
    from forecast.observations import load_observations
    from forecast.study import load_study

    def check():
        from forecast.questions import load_questions

        s = load_study(study or default_study())
        load_questions(s)
        return s, load_observations(s)

    s, obs = _run(check)
    t = obs.table
    summary = {
        "study": s.name,
        "study_path": str(s.path),
        "observations_path": str(obs.path),
        "valid": True,
        "n_observations": obs.n,
        "latest_observation": obs.latest_date,
        "hypotheses": [h.id for h in s.hypotheses],
        "by_group": {g.id: int((t["group"] == g.id).sum()) for g in s.groups},
        "by_domain": {d.id: int((t["domain"] == d.id).sum()) for d in s.domains},
        "cooperative_share": float(t["cooperative"].mean()) if obs.n else None,
    }
    if as_json:
        _emit_json(summary)
        return
    click.echo(f"{s.path.name}: valid; {len(s.hypotheses)} hypotheses ({', '.join(summary['hypotheses'])})")
    click.echo(
        f"{obs.path.name}: valid; {obs.n} observations"
        + (f", latest {obs.latest_date}" if obs.n else " (add coded events before `forecast update`)")
    )
    if obs.n:
        click.echo("  by group:  " + ", ".join(f"{k} {v}" for k, v in summary["by_group"].items()))
        click.echo("  by domain: " + ", ".join(f"{k} {v}" for k, v in summary["by_domain"].items()))


@main.command()
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Project directory to create priors/ and data/ in.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def init(name, directory, as_json):
    """Scaffold a new study NAME: priors/NAME.toml (commented) and data/NAME.csv (header only).

    The files validate as written; edit the groups, domains and hypotheses, then add events.

    \b
    Example:
      forecast init gulf_hedging && forecast validate priors/gulf_hedging.toml
    """
    from forecast.scaffold import init_study

    study, data = _run(lambda: init_study(name, directory))
    if as_json:
        _emit_json({"study": str(study), "observations": str(data)})
    else:
        click.echo(
            f"created {study}\ncreated {data}\nnext: edit the study, add events, then `forecast validate {study}`"
        )


_runs_dir_option = click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where run directories are [default: reports/runs under the current directory].",
)


@main.command()
@study_argument
@click.option("--horizon", type=int, default=4, show_default=True, help="Quarters ahead to forecast.")
@click.option(
    "--origin", default=None, help="Forecast the quarters after this one [default: the last quarter with observations]."
)
@click.option("--seed", type=int, default=20190712, show_default=True, help="Seed for the random-walk extension.")
@_runs_dir_option
@click.option("--allow-unconverged", is_flag=True, help="Forecast from a run whose fits failed their checks (flagged).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the tables.")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages on stderr.")
def predict(study, horizon, origin, seed, runs_dir, allow_unconverged, as_json, quiet):
    """Forecast the next quarters from the latest run of STUDY, and answer its questions.

    For every counterpart group and domain: the expected share of cooperative interactions
    with its 50% and 90% intervals, under each hypothesis and averaged over them by their
    posterior probabilities; a probability for every [[questions]] entry of the study; and
    the milestones, the cells whose next quarter would move the evidence most. Reads the
    posterior draws of the latest `forecast update` (no refitting) and writes forecasts.json
    into that run.

    \b
    Example:
      forecast predict priors/turkey_nato.toml --horizon 4 --json > forecasts.json
    """
    from forecast.predict import render_predict, run_predict

    result = _run(
        lambda: run_predict(
            study or default_study(),
            horizon=horizon,
            origin=origin,
            runs_root=runs_dir,
            allow_unconverged=allow_unconverged,
            seed=seed,
            progress=_progress(quiet),
        )
    )
    if as_json:
        _emit_json(result.to_dict())
    else:
        click.echo(render_predict(result))


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
@click.option("--seed", type=int, default=20190712, show_default=True, help="Random seed (same seed, same numbers).")
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
@_runs_dir_option
@click.option("--allow-unconverged", is_flag=True, help="Keep going when a fit fails its checks (flagged).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the tables.")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages on stderr.")
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
    from forecast.backtest import render_backtest, run_backtest
    from forecast.inference import SamplerSettings

    settings = SamplerSettings(draws=draws, tune=tune, chains=chains, cores=cores, seed=seed)
    result = _run(
        lambda: run_backtest(
            study or default_study(),
            settings,
            origins=origins,
            n_origins=n_origins,
            horizon=horizon,
            lfo=lfo,
            runs_root=runs_dir,
            allow_unconverged=allow_unconverged,
            progress=_progress(quiet),
            scheduler=scheduler,
            workers=workers,
        )
    )
    if as_json:
        _emit_json(result.to_dict())
    else:
        click.echo(render_backtest(result))


@main.command()
@study_argument
@_runs_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def score(study, runs_dir, as_json):
    """Score STUDY's forecast questions whose resolution date has passed.

    Each question is judged with the last forecast `forecast predict` stored for it before it
    resolved, against the observations now in the data file: Brier and log score per
    question, and their running averages. Writes scores.json into the latest run.

    \b
    Example:
      forecast score priors/turkey_nato.toml --json
    """
    from forecast.predict import render_score, run_score

    result = _run(lambda: run_score(study or default_study(), runs_root=runs_dir))
    if as_json:
        _emit_json(result.to_dict())
    else:
        click.echo(render_score(result))


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
@click.option("--seed", type=int, default=20190712, show_default=True, help="Random seed (same seed, same numbers).")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.15,
    show_default=True,
    help="Warn when two hypotheses' prior predictives differ by less than this (Hellinger) in every summary.",
)
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where run directories are [default: reports/runs under the current directory].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the tables.")
def priors(study, n_draws, seed, threshold, runs_dir, as_json):
    """Show each hypothesis's priors in STUDY and what they imply before any data is seen.

    Per hypothesis: every prior as stated (an analyst's statement such as "90% sure 60-90% of
    interactions are cooperative") and as fitted on the model's scale, and the prior
    predictive cooperative shares per counterpart group and domain with 50% and 90%
    intervals. Warns when two hypotheses imply nearly the same data (then no data can separate
    them). Writes prior_predictive.json and prior_predictive.png into the study's latest run
    if that run was made from this study file.

    \b
    Example:
      forecast priors priors/turkey_nato.toml --json > priors.json
    """
    from forecast.prior_predictive import render_priors, run_priors

    result = _run(
        lambda: run_priors(study or default_study(), runs_root=runs_dir, n=n_draws, seed=seed, threshold=threshold)
    )
    if as_json:
        _emit_json(result)
    else:
        click.echo(render_priors(result))


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
@click.option("--seed", type=int, default=20190712, show_default=True, help="Seed of `forecast update` if it must run.")
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where run directories are [default: reports/runs under the current directory].",
)
@click.option("--allow-unconverged", is_flag=True, help="Write results even if a fit fails its checks (flagged).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the report.")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages or progress bar on stderr.")
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

    Works on the study's latest run (runs `forecast update` first if there is none for the
    current files). Power-scaling diagnostics per hypothesis and hyperparameter; a grid of
    prior variants (each prior shifted, widened and narrowed, one at a time and jointly), each
    hypothesis's posterior probability in every variant by Pareto-smoothed importance
    reweighting, refitting only where Pareto k says reweighting is unreliable; the range of
    each probability, a tornado plot and a verdict on whether the leading hypothesis stays
    ahead; and the prior probability at which the conclusion flips. Refits run on local
    worker processes, or on a Dask cluster with --scheduler. Writes sensitivity.json and two
    plots into the run.

    \b
    Example:
      forecast sensitivity priors/turkey_nato.toml --shift 0.5 --shift 1 --json > sensitivity.json
      forecast sensitivity --scheduler tcp://10.0.0.5:8786
    """
    from forecast.inference import SamplerSettings
    from forecast.sensitivity import grid_spec_from, render_sensitivity, run_sensitivity

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
            progress=_progress(quiet),
            update_settings=SamplerSettings(seed=seed),
        )

    result = _run(go)
    if as_json:
        _emit_json(result)
    else:
        click.echo(render_sensitivity(result))


@main.command()
@study_argument
@_runs_dir_option
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="A run directory to read [default: the study's latest run].",
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
@click.option("--allow-unconverged", is_flag=True, help="Keep refits that fail their convergence checks (flagged).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the tables.")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages on stderr.")
def evidence(
    study, runs_dir, run_dir, shift, reliability_below, refit, max_refits, top, allow_unconverged, as_json, quiet
):
    """Diagnosticity and critical items of STUDY's evidence: what if an observation is wrong?

    Reads the latest run of `forecast update`. For every observation: how strongly it favours
    one hypothesis over another (differences of its leave-one-out log predictive densities),
    and the posterior probabilities if it were removed or its outcome reversed (Pareto-smoothed
    importance sampling from the posterior draws; a refit where Pareto k is too high). Lists the
    critical items, the conclusion without low-reliability observations, and the reports that
    corroborate an event already counted. Writes evidence.json into the run.

    \b
    Example:
      forecast evidence priors/turkey_nato.toml --reliability-below 0.5 --json > evidence.json
    """
    from forecast.evidence import render, run_evidence

    result = _run(
        lambda: run_evidence(
            study or default_study(),
            runs_root=runs_dir,
            run_dir=run_dir,
            shift=shift,
            reliability_below=reliability_below,
            refit=refit,
            max_refits=max_refits,
            allow_unconverged=allow_unconverged,
            progress=_progress(quiet),
        )
    )
    if as_json:
        _emit_json(result.to_dict())
    else:
        click.echo(render(result, top=top))


REPORT_SUFFIXES = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json"}


@main.command()
@click.argument("run", required=False, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "formats",
    type=click.Choice(["html", "md", "json"]),
    multiple=True,
    help="Format(s) to write; repeat for several [default: all three, or the one --output's suffix names].",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=True, path_type=Path),
    default=None,
    help="Write the (one) report here instead of <run>/report.<ext>.",
)
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where run directories are [default: the study's runs, else reports/runs].",
)
@click.option(
    "--history",
    is_flag=True,
    help="First compute support over time for the run (a refit per quarter; minutes) and store history.json.",
)
@click.option(
    "--history-every",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="With --history: evaluate every N-th quarter (and the last); cost falls about N-fold.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout (paths, support, flags).")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages on stderr.")
def report(run, formats, output, runs_dir, history, history_every, as_json, quiet):
    """Write a report of posterior support for RUN: one self-contained HTML page, Markdown, JSON.

    RUN is a run directory (reports/runs/<study>/<time>) or a study file (its latest run); by
    default the latest run of priors/turkey_nato.toml. The report holds the support table with
    its conclusion, support over time (if the run has history.json, or with --history), each
    hypothesis's prior beside its posterior (ArviZ forest plots), posterior predictive checks and
    LOO calibration, the observations ranked by how much they moved the support, and the
    diagnostics and manifest. Files go to <run>/report.html, report.md and report.json, written
    atomically. A run that failed its convergence checks still gets its report, marked
    UNRELIABLE, and the command then exits 3.

    \b
    Example:
      forecast report                                   # latest run of the default study
      forecast report --format html --output brief.html
      forecast report priors/turkey_nato.toml --history --history-every 4 --json
    """
    from forecast.report import FORMATS, run_report

    if not formats:
        suffix = REPORT_SUFFIXES.get(output.suffix.lower()) if output is not None and not output.is_dir() else None
        formats = (suffix,) if suffix else FORMATS
    if output is not None and len(formats) != 1:
        raise click.UsageError("--output names one file: choose one --format (html, md or json)")
    result = _run(
        lambda: run_report(
            run,
            study_path=None if run is not None else default_study(),
            runs_root=runs_dir,
            formats=tuple(formats),
            output=output,
            history=history,
            history_every=history_every,
            progress=_progress(quiet),
        )
    )
    if as_json:
        _emit_json(result.to_dict())
    else:
        if not result.converged:
            click.echo("WARNING: " + result.report.warning)
        click.echo(result.report.headline.conclusion)
        for path in result.outputs.values():
            click.echo(f"report written to {path}")
    if not result.converged:
        click.echo("forecast: the run failed its convergence checks; its report says so (exit 3)", err=True)
        sys.exit(3)


@main.command("import")
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@study_argument
@click.option(
    "--mapping",
    "mapping_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The mapping file [default: cameo_mapping.toml next to the study's observation file].",
)
@click.option(
    "--into",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The observation file to append to [default: the study's].",
)
@click.option(
    "--format",
    "fmt",
    type=str,
    default="auto",
    show_default=True,
    help="auto, gdelt, icews, polecat or generic (columns named in the mapping file).",
)
@click.option(
    "--on-match",
    type=str,
    default=None,
    help="An event already in the file: skip, corroborate (add as a report of it) or keep [default: the mapping's].",
)
@click.option("--dry-run", is_flag=True, help="Map and validate, but write nothing.")
@_runs_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def import_events(source, study, mapping_path, into, fmt, on_match, dry_run, runs_dir, as_json):
    """Import CAMEO-coded events (GDELT, ICEWS, POLECAT-style exports) from SOURCE into STUDY.

    Maps each row's actors to the study's counterparts, its quad class, event code or Goldstein
    score to a cooperative or conflictual outcome and an intensity, and its event code or text
    to a domain, through an editable mapping file. Reports every row it cannot map, and why;
    appends the rest only if the whole observation file still validates, never twice the same
    event. Writes an import report under the study's run store.

    \b
    Example:
      forecast import gdelt_export.csv priors/turkey_nato.toml --dry-run
    """
    from forecast.importer import render, run_import

    result = _run(
        lambda: run_import(
            source,
            study or default_study(),
            mapping_path=mapping_path,
            into=into,
            fmt=fmt,
            on_match=on_match,
            dry_run=dry_run,
            runs_root=runs_dir,
        )
    )
    if as_json:
        _emit_json(result.to_dict())
    else:
        click.echo(render(result))


@main.command()
@study_argument
@click.option("--hypothesis", "-H", "hypothesis", required=True, help="The hypothesis to simulate from (its id).")
@click.option(
    "--from",
    "source",
    type=click.Choice(["prior", "posterior"]),
    default="prior",
    show_default=True,
    help="Draw the parameters from the hypothesis's prior, or from its posterior in the latest run.",
)
@click.option(
    "--n",
    type=click.IntRange(1),
    default=None,
    help="Simulate N events spread over counterparts, domains and quarters [default: the study's own design].",
)
@click.option("--reliability", default="A1", show_default=True, help="With --n: the grade of every simulated event.")
@click.option("--seed", type=int, default=20190712, show_default=True, help="Random seed (same seed, same data).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the synthetic data [default: simulations/ in the latest run, or in the run store].",
)
@_runs_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
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
    from forecast.simulate import render, run_simulate

    result = _run(
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
        _emit_json(result.to_dict())
    else:
        click.echo(render(result))


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
@click.option("--seed", type=int, default=20190712, show_default=True, help="Random seed (same seed, same data sets).")
@draws_and_tune
@click.option("--chains", type=click.IntRange(2), default=4, show_default=True, help="Independent chains.")
@click.option("--workers", type=click.IntRange(0), default=None, help="Local worker processes [default: one per core].")
@click.option("--scheduler", default=None, help="A Dask scheduler address (tcp://host:8786) to run the fits on.")
@click.option("--bins", type=click.IntRange(2, 20), default=5, show_default=True, help="Bins of the calibration table.")
@_runs_dir_option
@click.option("--allow-unconverged", is_flag=True, help="Keep data sets whose fits fail their checks (flagged).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the tables.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
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
    tool would pick the true hypothesis at this data size. Runs the data sets in parallel
    (local processes or a Dask cluster); writes calibration.json into the latest run.

    \b
    Example:
      forecast calibrate priors/turkey_nato.toml --datasets 200 --workers 2 --json > calibration.json
    """
    from forecast.calibrate import render, run_calibration
    from forecast.inference import SamplerSettings

    settings = SamplerSettings(draws=draws, tune=tune, chains=chains, seed=seed)
    result = _run(
        lambda: run_calibration(
            study or default_study(),
            settings,
            n_datasets=datasets,
            n=n,
            reliability=reliability,
            workers=workers,
            scheduler=scheduler,
            n_bins=bins,
            runs_root=runs_dir,
            allow_unconverged=allow_unconverged,
            progress=_progress(quiet),
            bar=not quiet,
        )
    )
    if as_json:
        _emit_json(result.to_dict())
    else:
        click.echo(render(result))


if __name__ == "__main__":
    main()
