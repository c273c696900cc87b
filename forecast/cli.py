"""Command line: parse arguments, call one library function, print, map errors to exit codes.

Exit codes: 0 success; 2 bad input or usage; 3 convergence gate failed; 1 anything else.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from forecast.errors import ForecastError

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


def _emit_json(obj: dict) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


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
@click.option("--draws", type=click.IntRange(100), default=1000, show_default=True, help="Posterior draws per chain.")
@click.option("--tune", type=click.IntRange(100), default=1000, show_default=True, help="Tuning draws per chain.")
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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the table.")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages on stderr.")
def update(study, seed, draws, tune, chains, cores, runs_dir, allow_unconverged, as_json, quiet):
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
            "WARNING: " + "at least one fit FAILED its convergence checks; every figure below is UNRELIABLE.",
            "!" * 80,
            "",
        ]
    head = f"{'hypothesis':<26} {'prior P':>7}  {'log ML ± MCSE':>16}  {'posterior P ± MCSE':>18}  {'elpd_loo ± SE':>15}  {'Δelpd ± SE':>13}  {'LOO wt':>6}  fit"
    lines += ["Support (Bayes factors)                     |  Predictive accuracy (PSIS-LOO)", head, "-" * len(head)]
    for h in result.hypotheses:
        d = h.diagnostics
        fit = "ok" if d.converged else "FAILED"
        fit += f" (R-hat {d.rhat_max:.3f}, ESS {min(d.ess_bulk_min, d.ess_tail_min):.0f}, div {d.divergences})"
        lines.append(
            f"{h.label[:26]:<26} {h.prior_probability:>7.3f}  {h.log_marginal_likelihood:>8.2f} ± {h.log_marginal_likelihood_se:<5.2f}  "
            f"{h.posterior_probability:>9.3f} ± {h.posterior_probability_se:<6.3f}  {h.elpd_loo:>7.1f} ± {h.elpd_loo_se:<5.1f}  "
            f"{h.elpd_diff:>5.1f} ± {h.elpd_diff_se:<5.1f}  {h.loo_weight:>6.2f}  {fit}"
        )
    lines += ["", result.conclusion, "", result.loo_note]
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
        s = load_study(study or default_study())
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


if __name__ == "__main__":
    main()
