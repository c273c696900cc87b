"""`forecast report`: an ArviZ report of posterior support, from a stored run, as HTML, Markdown and JSON.

Two halves. ``build_report`` reads a run directory (summary, manifest, posterior draws, the
copies of the study and observations, the optional ``history.json``) and assembles a typed
``Report``: plain numbers and tables, plus figures rendered to PNG by forecast.reports.figures. The
renderers turn that record into one self-contained HTML page (jinja2 template, images
embedded), the same content as Markdown, or JSON. Nothing here fits a model, except the
optional support-over-time computation (forecast.workflows.history), which the caller asks for.

Sections, in order: 1 headline (support table, conclusion, convergence warning), 2 support over
time, 3 what each hypothesis learned (prior beside posterior), 4 does the model fit (posterior
predictive checks, LOO calibration), 5 evidence (most diagnostic observations first),
6 diagnostics (sampler, convergence, Pareto k, manifest).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.data.cells import CellData, cell_data
from forecast.data.observations import Observations, load_observations
from forecast.errors import InputError, RunStoreError
from forecast.model.build import DOMAIN_EFFECT, RW_STEPS, cell_logit_draws, draws_as_arrays, latent_logit
from forecast.reports import figures as F
from forecast.reports.figures import FigureJobs, FigureRenderer, palette
from forecast.runs.store import MANIFEST, POINTWISE, POSTERIOR_DIR, SUMMARY, atomic_write_text, latest_run, load_summary
from forecast.settings import DEFAULT_SEED, derive_rng
from forecast.spec.study import Study, load_study, quarter_label
from forecast.stats.loo import PARETO_K_GOOD, jeffreys_label, pattern_loglik, psis_loo_cells
from forecast.workflows.history import HISTORY, History, load_history

REPORT_SCHEMA = 1
FORMATS = ("html", "md", "json")
SUFFIX = {"html": ".html", "md": ".md", "json": ".json"}
REPORT_NAME = "report"
REPLICATE_DRAWS = 1000  # posterior predictive replications per hypothesis
CALIBRATION_DRAWS = 400  # LOO predictive replications for the calibration plot
CALIBRATION_MAX_EVENTS = 5000  # larger studies: a seeded random subset of events
EVIDENCE_BARS = 15
EVIDENCE_MAX_ROWS = 1000  # larger studies: the most diagnostic observations only
REPORT_SEED = DEFAULT_SEED  # the report's own draws (prior predictive, PPC) use the default seed
UNRELIABLE = "UNRELIABLE: at least one fit failed its checks (convergence, marginal-likelihood error)"

PARAMETER_LABELS = {
    "tilt": "tilt",
    "spread": "spread",
    "trend": "trend",
    "volatility": "volatility",
}
PARAMETER_UNITS = {
    "tilt": "log-odds of cooperation at the reference quarter",
    "spread": "SD of the domain effects (log-odds)",
    "trend": "change in log-odds per year",
    "volatility": "SD of the quarter-to-quarter steps (log-odds)",
}

Progress = Callable[[str], None]


# --- the record --------------------------------------------------------------------------


@dataclass(frozen=True)
class SupportRow:
    id: str
    label: str
    colour: str
    rank: int
    prior_probability: float
    posterior_probability: float
    posterior_probability_se: float
    log_marginal_likelihood: float
    log_marginal_likelihood_se: float
    bayes_factor: float | None  # this hypothesis against `bayes_factor_against`
    log_bayes_factor: float | None
    log_bayes_factor_se: float | None
    bayes_factor_against: str | None  # id of the runner-up (for the leader) or of the leader (for the others)
    bayes_factor_text: str
    jeffreys: str  # verbal strength on Jeffreys' scale, e.g. "strong evidence for", "moderate evidence against"
    elpd_loo: float
    elpd_loo_se: float
    elpd_diff: float
    elpd_diff_se: float
    loo_weight: float
    converged: bool
    problems: list[str]


@dataclass(frozen=True)
class Headline:
    question: str
    study: str
    latest_observation: str | None
    n_observations: int
    rows: list[SupportRow]  # ranked by posterior probability
    leader: str
    runner_up: str | None
    conclusion: str
    loo_note: str
    converged: bool
    warning: str | None
    failed: list[str]  # labels of hypotheses whose fits failed the gate


@dataclass(frozen=True)
class HistoryRow:
    quarter: str
    as_of: str
    n_observations: int
    new_observations: int
    source: str
    probabilities: dict[str, float]
    probabilities_se: dict[str, float]
    converged: bool
    failed: list[str]


@dataclass(frozen=True)
class HistorySection:
    available: bool
    note: str
    every: int | None = None
    settings: dict | None = None
    converged: bool = True
    rows: list[HistoryRow] = field(default_factory=list)
    figure: str | None = None


@dataclass(frozen=True)
class IntervalRow:
    parameter: str
    group: str
    prior_median: float
    prior_low: float
    prior_high: float
    posterior_median: float
    posterior_low: float
    posterior_high: float


@dataclass(frozen=True)
class Learned:
    id: str
    label: str
    colour: str
    claim: str
    converged: bool
    problems: list[str]
    hyperparameters: list[IntervalRow]
    propensities: list[IntervalRow]  # P(cooperative) per (group, domain) at the reference quarter
    figures: list[str]


@dataclass(frozen=True)
class PpcRow:
    group: str
    domain: str
    n_events: int
    observed_share: float
    replicated: dict[str, dict[str, float]]  # hypothesis id -> median, low, high (94%), p_value


@dataclass(frozen=True)
class FitSection:
    rows: list[PpcRow]
    figure: str
    calibration_figures: list[str]
    calibration_note: str
    flagged: list[str]  # labels of hypotheses whose fits failed (their checks are unreliable)
    surprising: int  # (group, domain) cells with a two-sided posterior predictive p-value < 0.05


@dataclass(frozen=True)
class EvidenceRow:
    id: str
    event_date: str
    report_date: str
    counterpart: str
    domain: str
    outcome: str
    reliability: str
    weight: float
    description: str
    source: str
    elpd_difference: float  # elpd_i(leader) - elpd_i(runner-up): > 0 favours the leader
    favours: str  # label of the hypothesis it favours
    pareto_k: float  # the larger of the two hypotheses' Pareto k for this observation


@dataclass(frozen=True)
class EvidenceSection:
    available: bool
    note: str
    leader: str | None
    runner_up: str | None
    total: float | None
    rows: list[EvidenceRow]
    figure: str | None
    unreliable: bool


@dataclass(frozen=True)
class DiagnosticsRow:
    id: str
    label: str
    colour: str
    converged: bool
    rhat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    divergences: int
    treedepth_saturated: float
    max_tree_depth: int | None
    ebfmi_min: float
    pareto_k_max: float
    n_bad_pareto_k: int
    attempts: int
    draws: int
    tune: int
    chains: int
    target_accept: float
    seconds: float
    problems: list[str]


@dataclass(frozen=True)
class DiagnosticsSection:
    rows: list[DiagnosticsRow]
    settings: dict
    thresholds: dict
    pareto_k_threshold: float
    manifest: dict | None
    data_hash_matches: bool | None
    notes: list[str]


@dataclass
class Report:
    study: str
    run_dir: str
    run_id: str
    generated: str
    forecast_version: str
    converged: bool
    warning: str | None
    headline: Headline
    history: HistorySection
    learned: list[Learned]
    fit: FitSection
    evidence: EvidenceSection
    diagnostics: DiagnosticsSection
    colours: dict[str, str]
    labels: dict[str, str]
    figures: dict = field(default_factory=dict)  # name -> forecast.reports.figures.Figure
    timings: dict = field(default_factory=dict)  # seconds per stage of build_report
    seconds: float = 0.0

    def figure(self, name: str):
        return self.figures[name]

    def to_dict(self, with_images: bool = True) -> dict:
        d = {
            "schema_version": REPORT_SCHEMA,
            "kind": "forecast-report",
            "study": self.study,
            "run_dir": self.run_dir,
            "run_id": self.run_id,
            "generated": self.generated,
            "forecast_version": self.forecast_version,
            "converged": self.converged,
        }
        if self.warning:
            d["warning"] = self.warning
        d.update(
            {
                "colours": self.colours,
                "headline": asdict(self.headline),
                "history": asdict(self.history),
                "learned": [asdict(x) for x in self.learned],
                "fit": asdict(self.fit),
                "evidence": asdict(self.evidence),
                "diagnostics": asdict(self.diagnostics),
                "figures": {k: f.to_dict(with_images) for k, f in self.figures.items()},
            }
        )
        return d


# --- reading a run -----------------------------------------------------------------------


@dataclass
class RunData:
    run_dir: Path
    summary: dict
    manifest: dict | None
    study: Study
    obs: Observations
    cells: CellData
    posteriors: dict  # hypothesis id -> xarray Dataset (posterior)
    sample_stats: dict  # hypothesis id -> xarray Dataset
    pointwise: pd.DataFrame | None
    history: History | None
    notes: list[str]


def resolve_run(run: Path | None, *, study_path: Path | None = None, runs_root: Path | None = None) -> Path:
    """A run directory from RUN (a run directory, a study's run folder, or a study file) or the default."""
    from forecast.runs.store import LATEST, default_root

    if run is not None:
        run = Path(run)
        if run.is_dir():
            if (run / SUMMARY).is_file():
                return run
            if (run / LATEST).is_file():
                return latest_run(run.parent, run.name)
            raise RunStoreError(f"{run}: not a run directory (no {SUMMARY}) nor a study's run folder (no {LATEST})")
        if run.suffix == ".toml" and run.is_file():
            study_path = run
        elif not run.exists():
            raise RunStoreError(f"{run}: no such run directory or study file")
        else:
            raise RunStoreError(f"{run}: expected a run directory (with {SUMMARY}) or a study file (.toml)")
    if study_path is None:
        raise InputError("name a run directory or a study file")
    study = load_study(study_path)
    return latest_run(runs_root or study.runs_path or default_root(), study.name)


def load_run(run_dir: Path) -> RunData:
    """Everything the report needs from a run directory; a clear RunStoreError if something is missing."""
    import xarray as xr

    run_dir = Path(run_dir)
    summary = load_summary(run_dir)  # checks the schema version
    notes: list[str] = []
    older = "it was written by an older version of forecast or is incomplete; re-run `forecast update`"
    for name in ("study.toml", "observations.csv"):
        if not (run_dir / name).is_file():
            raise RunStoreError(f"{run_dir}: the run has no copy of its inputs ({name} is missing), so {older}")
    manifest = None
    if (run_dir / MANIFEST).is_file():
        try:
            manifest = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            notes.append(f"{MANIFEST} is unreadable ({e}); the manifest is not shown")
    else:
        notes.append(f"the run has no {MANIFEST}; data hashes and package versions are not shown")
    try:
        study = load_study(run_dir / "study.toml")
        obs = load_observations(study, run_dir / "observations.csv")
    except InputError as e:
        raise RunStoreError(f"{run_dir}: the stored inputs no longer validate ({e}); {older}") from None
    ids = [h["id"] for h in summary.get("hypotheses", [])]
    if ids != [h.id for h in study.hypotheses]:
        raise RunStoreError(
            f"{run_dir}: {SUMMARY} lists hypotheses {ids} but the stored study has "
            f"{[h.id for h in study.hypotheses]}; {older}"
        )
    posteriors, stats = {}, {}
    for hid in ids:
        path = run_dir / POSTERIOR_DIR / f"{hid}.nc"
        if not path.is_file():
            raise RunStoreError(f"{run_dir}: no posterior draws for '{hid}' ({path.relative_to(run_dir)}); {older}")
        with xr.open_dataset(path, group="posterior", engine="h5netcdf") as ds:
            posteriors[hid] = ds.load()
        try:
            with xr.open_dataset(path, group="sample_stats", engine="h5netcdf") as ds:
                stats[hid] = ds[[v for v in ("depth", "maxdepth_reached") if v in ds]].load()
        except (OSError, KeyError):
            stats[hid] = None
    pointwise = None
    if (run_dir / POINTWISE).is_file():
        pointwise = pd.read_csv(run_dir / POINTWISE, dtype={"id": str})
        wanted = [f"{kind}__{hid}" for hid in ids for kind in ("elpd_loo", "pareto_k")]
        if "id" not in pointwise or any(c not in pointwise for c in wanted):
            notes.append(f"{POINTWISE} lacks some hypotheses' columns; pointwise LOO was recomputed")
            pointwise = None
        elif list(pointwise["id"]) != list(obs.table["id"]):
            notes.append(f"{POINTWISE} does not match the stored observations; pointwise LOO was recomputed")
            pointwise = None
    else:
        notes.append(
            f"the run has no {POINTWISE} (written by an older version); pointwise LOO was recomputed from the draws"
        )
    return RunData(
        run_dir=run_dir,
        summary=summary,
        manifest=manifest,
        study=study,
        obs=obs,
        cells=cell_data(obs.table, study),
        posteriors=posteriors,
        sample_stats=stats,
        pointwise=pointwise,
        history=load_history(run_dir),
        notes=notes,
    )


# --- assembling --------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def prior_draws(study: Study, hypothesis, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """``n`` draws from a hypothesis's priors in the layout of ``draws_as_arrays`` (flattened samples)."""
    out: dict[str, np.ndarray] = {}
    for param in study.parameters:
        cols = []
        for g in study.groups:
            prior = hypothesis.priors[(param, g.id)]
            cols.append(_draw_prior(prior.dist, prior.kwargs, rng, n))
        out[param] = np.stack(cols, axis=-1)
    n_g, n_d = len(study.groups), len(study.domains)
    out[DOMAIN_EFFECT] = rng.standard_normal((n, n_g, n_d))
    if "random_walk" in study.time.components and study.time.n_quarters > 1:
        out[RW_STEPS] = rng.standard_normal((n, n_g, study.time.n_quarters - 1))
    return out


def _draw_prior(dist: str, k: dict[str, float], rng: np.random.Generator, n: int) -> np.ndarray:
    match dist:
        case "Normal":
            return rng.normal(k["mu"], k["sigma"], n)
        case "StudentT":
            return k["mu"] + k["sigma"] * rng.standard_t(k["nu"], n)
        case "HalfNormal":
            return np.abs(rng.normal(0.0, k["sigma"], n))
        case "HalfStudentT":
            return np.abs(k["sigma"] * rng.standard_t(k["nu"], n))
        case "LogNormal":
            return rng.lognormal(k["mu"], k["sigma"], n)
        case "Gamma":
            return rng.gamma(k["alpha"], 1.0 / k["beta"], n)
        case "Exponential":
            return rng.exponential(1.0 / k["lam"], n)
    raise ValueError(f"no sampler for prior family {dist}")


def _as_samples(a: np.ndarray, shape: tuple[int, int]):
    """(samples, ...) -> (chain, draw, ...) for ArviZ."""
    return a.reshape(*shape, *a.shape[1:])


def _interval(a: np.ndarray) -> tuple[float, float, float]:
    lo, med, hi = np.percentile(a, [3, 50, 97])
    return float(med), float(lo), float(hi)


def _hyper_dataset(study: Study, arrays: dict[str, np.ndarray], shape):
    import xarray as xr

    groups = [g.label for g in study.groups]
    data = {
        PARAMETER_LABELS[p]: xr.DataArray(
            _as_samples(arrays[p], shape),
            dims=("chain", "draw", "counterpart group"),
            coords={"counterpart group": groups},
        )
        for p in study.parameters
    }
    return xr.Dataset(data)


def _propensity(study: Study, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """P(cooperative) per (sample, group, domain) at the reference quarter.

    There the trend term is zero and the random walk is anchored at zero, so only tilt, spread
    and the domain effects enter: the model's own formula on a one-quarter grid.
    """
    eta = latent_logit(np, arrays, np.zeros(1), 0, ())
    return _sigmoid(eta[..., 0])


def _propensity_dataset(study: Study, prop: np.ndarray, shape):
    import xarray as xr

    domains = [d.label for d in study.domains]
    return xr.Dataset(
        {
            g.label: xr.DataArray(
                _as_samples(prop[:, i, :], shape), dims=("chain", "draw", "domain"), coords={"domain": domains}
            )
            for i, g in enumerate(study.groups)
        }
    )


def _support_rows(run: RunData, colours: dict[str, str]) -> list[SupportRow]:
    hyps = run.summary["hypotheses"]
    ranked = sorted(hyps, key=lambda h: h["posterior_probability"], reverse=True)
    leader = ranked[0]
    runner = ranked[1] if len(ranked) > 1 else None
    rows = []
    for rank, h in enumerate(ranked, start=1):
        ref = runner if h is leader else leader
        if ref is None:
            bf = log_bf = log_bf_se = None
            text, strength = "—", "only one hypothesis"
        else:
            log_bf = h["log_marginal_likelihood"] - ref["log_marginal_likelihood"]
            log_bf_se = float(np.hypot(h["log_marginal_likelihood_se"], ref["log_marginal_likelihood_se"]))
            bf = float(np.exp(log_bf))
            shown = f"{bf:.3g}" if bf >= 1 else f"1/{1 / bf:.3g}"
            text = f"{shown} vs {ref['label']}"
            label = jeffreys_label(max(bf, 1 / bf))
            strength = label if label == "no support" else f"{label} evidence {'for' if bf >= 1 else 'against'}"
        d = h["diagnostics"]
        rows.append(
            SupportRow(
                id=h["id"],
                label=h["label"],
                colour=colours[h["id"]],
                rank=rank,
                prior_probability=h["prior_probability"],
                posterior_probability=h["posterior_probability"],
                posterior_probability_se=h["posterior_probability_se"],
                log_marginal_likelihood=h["log_marginal_likelihood"],
                log_marginal_likelihood_se=h["log_marginal_likelihood_se"],
                bayes_factor=bf,
                log_bayes_factor=log_bf,
                log_bayes_factor_se=log_bf_se,
                bayes_factor_against=ref["id"] if ref else None,
                bayes_factor_text=text,
                jeffreys=strength,
                elpd_loo=h["elpd_loo"],
                elpd_loo_se=h["elpd_loo_se"],
                elpd_diff=h["elpd_diff"],
                elpd_diff_se=h["elpd_diff_se"],
                loo_weight=h.get("loo_weight", float("nan")),
                converged=bool(d.get("converged", False)),
                problems=list(d.get("problems", [])),
            )
        )
    return rows


def _headline(run: RunData, colours: dict[str, str]) -> Headline:
    s = run.summary
    rows = _support_rows(run, colours)
    failed = [r.label for r in rows if not r.converged]
    converged = bool(s.get("converged", not failed)) and not failed
    warning = None
    if not converged:
        warning = (
            f"{UNRELIABLE}: "
            + "; ".join(
                f"{r.label} ({', '.join(p for p in r.problems if not p.startswith('warning')) or 'see diagnostics'})"
                for r in rows
                if not r.converged
            )
            + ". Every figure in this report is unreliable until the run is refitted with more --tune/--draws."
        )
    return Headline(
        question=s.get("question", run.study.question),
        study=s.get("study", run.study.name),
        latest_observation=s.get("latest_observation", run.obs.latest_date),
        n_observations=int(s.get("n_observations", run.obs.n)),
        rows=rows,
        leader=rows[0].id,
        runner_up=rows[1].id if len(rows) > 1 else None,
        conclusion=s.get("conclusion", ""),
        loo_note=s.get("loo_note", ""),
        converged=converged,
        warning=warning,
        failed=failed,
    )


def _history_section(run: RunData, labels, colours, figures) -> HistorySection:
    from forecast.workflows.history import quarter_end

    h = run.history
    if h is None:
        return HistorySection(
            available=False,
            note=(
                "Support over time was not computed for this run. Compute it with `forecast report --history` "
                "(or `forecast update --history`): one refit of every hypothesis per quarter of evidence, several "
                "minutes on the default study; `--history-every 4` evaluates once a year at about a quarter of the cost."
            ),
        )
    ids = [x["id"] for x in h.hypotheses]
    if ids != list(labels):
        return HistorySection(
            available=False,
            note=f"{HISTORY} lists other hypotheses ({ids}); recompute it with `forecast report --history`.",
        )
    rows = [
        HistoryRow(
            quarter=p.quarter,
            as_of=p.as_of,
            n_observations=p.n_observations,
            new_observations=p.new_observations,
            source=p.source,
            probabilities=p.probabilities,
            probabilities_se=p.probabilities_se,
            converged=p.converged,
            failed=[labels[k] for k in p.problems],
        )
        for p in h.points
    ]
    probs = {hid: np.array([r.probabilities[hid] for r in rows]) for hid in ids}
    errs = {hid: np.array([r.probabilities_se[hid] for r in rows]) for hid in ids}
    flagged = np.array([not r.converged for r in rows])
    ref = run.study.time.reference
    bad = int(flagged.sum())
    name = figures.add(
        "support-over-time",
        "Support over time",
        "Posterior probability of each hypothesis given the evidence known by the end of each quarter "
        f"(a refit per {'quarter' if h.every == 1 else f'{h.every} quarters'}; {h.settings['chains']} chains x "
        f"{h.settings['draws']} draws); bands: ±2 Monte Carlo standard errors."
        + (f" Circled points ({bad}) come from fits that failed their convergence checks." if bad else ""),
        "Line chart of each hypothesis's posterior probability by quarter",
        F.support_history,
        [r.quarter for r in rows],
        [r.as_of for r in rows],
        probs,
        errs,
        flagged,
        labels,
        colours,
        reference=(f"reference quarter {quarter_label(ref)}", quarter_end(ref).isoformat()),
    )
    last_is_run = rows[-1].source == "run"
    note = (
        f"{len(rows) - 1} quarter(s), every {h.every} quarter(s): {h.n_fitted} refitted"
        + (", the last one (all evidence) is the run itself" if last_is_run else "")
        + "; quarters without new evidence reuse the previous result; the first point is the prior."
    )
    return HistorySection(True, note, h.every, h.settings, h.converged, rows, name)


def _learned(run: RunData, rows: dict[str, SupportRow], colours, figures, arrays: dict) -> list[Learned]:
    study = run.study
    out = []
    ref = quarter_label(study.time.reference)
    for i, h in enumerate(study.hypotheses):
        # As many prior draws as posterior draws, in the same (chain, draw) layout, so that ArviZ
        # can put the two side by side.
        shape = run.posteriors[h.id]["tilt__" + study.groups[0].id].shape[:2]
        rng = derive_rng(REPORT_SEED, i, 7)
        pri = prior_draws(study, h, rng, int(np.prod(shape)))
        post = arrays[h.id]
        hyper = []
        for p in study.parameters:
            for j, g in enumerate(study.groups):
                hyper.append(
                    IntervalRow(
                        f"{PARAMETER_LABELS[p]} ({PARAMETER_UNITS[p]})",
                        g.label,
                        *_interval(pri[p][:, j]),
                        *_interval(post[p][:, j]),
                    )
                )
        prop_prior, prop_post = _propensity(study, pri), _propensity(study, post)
        props = [
            IntervalRow(
                "P(cooperative)",
                f"{g.label} / {d.label}",
                *_interval(prop_prior[:, a, b]),
                *_interval(prop_post[:, a, b]),
            )
            for a, g in enumerate(study.groups)
            for b, d in enumerate(study.domains)
        ]
        names = [f"learned-{h.id}-hyperparameters", f"learned-{h.id}-propensities"]
        figures.add(
            names[0],
            f"{h.label}: hyperparameters",
            f"Hyperparameters under '{h.label}': prior (grey) beside posterior, medians with 50% and 94% intervals. "
            + "; ".join(f"{PARAMETER_LABELS[p]}: {PARAMETER_UNITS[p]}" for p in study.parameters)
            + ".",
            f"Forest plot of prior and posterior hyperparameters for {h.label}",
            F.forest,
            _hyper_dataset(study, pri, shape),
            _hyper_dataset(study, post, shape),
            colours[h.id],
            f"{h.label}: hyperparameters",
            "value (log-odds scale)",
        )
        figures.add(
            names[1],
            f"{h.label}: propensity to cooperate",
            f"Probability that an interaction with each counterpart group is cooperative, per issue domain, at the "
            f"reference quarter {ref}, under '{h.label}': prior (grey) beside posterior.",
            f"Forest plot of prior and posterior cooperation probabilities by group and domain for {h.label}",
            F.forest,
            _propensity_dataset(study, prop_prior, shape),
            _propensity_dataset(study, prop_post, shape),
            colours[h.id],
            f"{h.label}: probability of cooperation at {ref}",
            f"probability that an interaction is cooperative ({ref})",
            variable_label="counterpart group",
            xlim=(0, 1),
        )
        r = rows[h.id]
        out.append(Learned(h.id, h.label, colours[h.id], h.claim, r.converged, r.problems, hyper, props, names))
    return out


def _fit_section(run: RunData, etas: dict[str, np.ndarray], labels, colours, rows, figures) -> FitSection:
    study, cells = run.study, run.cells
    n_g, n_d = len(study.groups), len(study.domains)
    table = run.obs.table
    gidx = table["group"].map({g.id: i for i, g in enumerate(study.groups)}).to_numpy()
    didx = table["domain"].map({d.id: i for i, d in enumerate(study.domains)}).to_numpy()
    coop = table["cooperative"].to_numpy(dtype=bool)
    n_gd = np.zeros((n_g, n_d))
    k_gd = np.zeros((n_g, n_d))
    np.add.at(n_gd, (gidx, didx), 1)
    np.add.at(k_gd, (gidx, didx), coop)
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.where(n_gd > 0, k_gd / np.maximum(n_gd, 1), np.nan)
    cell_gd = cells.group * n_d + cells.domain
    rng = derive_rng(REPORT_SEED, 11)
    replicated, pvals = {}, {}
    for hid, eta in etas.items():
        take = rng.choice(eta.shape[0], size=min(REPLICATE_DRAWS, eta.shape[0]), replace=False)
        counts = rng.binomial(cells.n_events, _sigmoid(eta[take]))  # (draws, cells)
        per_gd = np.zeros((len(take), n_g * n_d))
        np.add.at(per_gd.T, cell_gd, counts.T)
        per_gd = per_gd.reshape(-1, n_g, n_d)
        with np.errstate(invalid="ignore", divide="ignore"):
            replicated[hid] = np.where(n_gd > 0, per_gd / np.maximum(n_gd, 1), np.nan)
        upper = (per_gd >= k_gd).mean(axis=0)
        lower = (per_gd <= k_gd).mean(axis=0)
        pvals[hid] = np.minimum(1.0, 2 * np.minimum(upper, lower))
    ppc_rows = []
    surprising = set()
    for a, g in enumerate(study.groups):
        for b, d in enumerate(study.domains):
            if n_gd[a, b] == 0:
                continue
            rep = {}
            for hid in etas:
                med, lo, hi = _interval(replicated[hid][:, a, b])
                rep[hid] = {"median": med, "low": lo, "high": hi, "p_value": float(pvals[hid][a, b])}
                if pvals[hid][a, b] < 0.05:
                    surprising.add((a, b))
            ppc_rows.append(PpcRow(g.label, d.label, int(n_gd[a, b]), float(observed[a, b]), rep))
    name = "ppc-shares"
    figures.add(
        name,
        "Observed and replicated cooperative share",
        "Posterior predictive check: for each counterpart group and issue domain, the observed share of cooperative "
        "events (black diamond) and the share in data replicated under each hypothesis (median, 50% and 94% intervals; "
        f"{REPLICATE_DRAWS} replications of every event from its cell's fitted probability).",
        "Interval chart of replicated versus observed cooperative share per group and domain",
        F.ppc_shares,
        [g.label for g in study.groups],
        [d.label for d in study.domains],
        observed,
        n_gd,
        replicated,
        labels,
        colours,
    )

    # LOO calibration: the LOO predictive probability of each event (PSIS weights per pattern),
    # then ArviZ's PAV-adjusted calibration plot; the binary-outcome counterpart of a LOO-PIT.
    # Computed with the figure (in a rendering worker), it costs the assembly nothing.
    y = coop.astype(np.int8)
    events = np.arange(len(y))
    note = ""
    if len(y) > CALIBRATION_MAX_EVENTS:
        events = np.sort(rng.choice(len(y), CALIBRATION_MAX_EVENTS, replace=False))
        note = f" Computed on a random subset of {CALIBRATION_MAX_EVENTS} of the {len(y)} events."
    cal_names = []
    for k, (hid, eta) in enumerate(etas.items()):
        cname = figures.add(
            f"loo-calibration-{hid}",
            f"{labels[hid]}: LOO calibration",
            f"PAV-adjusted calibration of the leave-one-out predictive probabilities under '{labels[hid]}' "
            "(ArviZ plot_ppc_pava): the diagonal is perfect calibration; the band is a 94% consistency interval."
            + note,
            f"Calibration curve of LOO predicted probability against observed rate for {labels[hid]}",
            _calibration_figure,
            eta,
            cells,
            events,
            y[events],
            colours[hid],
            labels[hid],
            REPORT_SEED + k,
        )
        cal_names.append(cname)
    flagged = [labels[h] for h in etas if not rows[h].converged]
    return FitSection(
        ppc_rows,
        name,
        cal_names,
        "For 0/1 outcomes a LOO-PIT is degenerate (every PIT value is one of two steps), so calibration is checked "
        "with the PAV-adjusted reliability diagram of the LOO predictive probabilities (Säilynoja et al.; "
        "Dimitriadis et al. 2021)." + note,
        flagged,
        len(surprising),
    )


def loo_predictive_probability(eta: np.ndarray, cells: CellData) -> np.ndarray:
    """P(cooperative) of each pattern's event predicted without it: PSIS-weighted over the draws."""
    from forecast.stats.psis import psislw

    loglik = pattern_loglik(eta, cells)  # (samples, patterns), reliability-weighted as in the fit
    # psislw takes the log-likelihood and smooths weights 1 / p(y_i | theta) (leave-one-out).
    log_w, _ = psislw(loglik.T, r_eff=1.0)
    w = np.exp(log_w - log_w.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    return (w * _sigmoid(eta[:, cells.pattern_cell]).T).sum(axis=-1)


def _calibration_figure(eta, cells: CellData, events, observed, colour: str, title: str, seed: int) -> bytes:
    """LOO predictive replications (Bernoulli draws at each event's LOO probability), then the ArviZ plot."""
    p_event = loo_predictive_probability(eta, cells)[cells.event_pattern][events]
    rng = np.random.default_rng(seed)
    y_rep = (rng.random((CALIBRATION_DRAWS, len(events))) < p_event).astype(np.int8)
    return F.loo_calibration(y_rep, observed, colour, title)


def _pointwise(run: RunData, etas: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per observation: elpd_loo__<h> and pareto_k__<h>, from the run or recomputed from the draws."""
    if run.pointwise is not None:
        return run.pointwise
    cells = run.cells
    table = pd.DataFrame({"id": run.obs.table["id"].to_numpy()})
    for hid, eta in etas.items():
        chains = run.posteriors[hid].sizes["chain"]
        lo = psis_loo_cells(eta, cells, chains)
        table[f"elpd_loo__{hid}"] = lo.pointwise[cells.event_pattern]
        table[f"pareto_k__{hid}"] = lo.pareto_k[cells.event_pattern]
    return table


def _evidence(run: RunData, head: Headline, pointwise: pd.DataFrame, labels, colours, rows, figures) -> EvidenceSection:
    if head.runner_up is None:
        return EvidenceSection(
            False,
            "Only one hypothesis: there is no support to move between two.",
            head.leader,
            None,
            None,
            [],
            None,
            False,
        )
    a, b = head.leader, head.runner_up
    diff = pointwise[f"elpd_loo__{a}"].to_numpy() - pointwise[f"elpd_loo__{b}"].to_numpy()
    k = np.maximum(pointwise[f"pareto_k__{a}"].to_numpy(), pointwise[f"pareto_k__{b}"].to_numpy())
    t = run.obs.table
    order = np.argsort(-np.abs(diff), kind="stable")[:EVIDENCE_MAX_ROWS]
    ev = [
        EvidenceRow(
            id=str(t["id"].iat[i]),
            event_date=t["event_date"].iat[i].date().isoformat(),
            report_date=t["report_date"].iat[i].date().isoformat(),
            counterpart=str(t["counterpart"].iat[i]),
            domain=str(t["domain"].iat[i]),
            outcome="cooperative" if t["cooperative"].iat[i] else "conflictual",
            reliability=str(t["reliability"].iat[i]),
            weight=float(t["weight"].iat[i]),
            description=str(t["description"].iat[i]),
            source=str(t["source"].iat[i]),
            elpd_difference=float(diff[i]),
            favours=labels[a] if diff[i] > 0 else labels[b],
            pareto_k=float(k[i]),
        )
        for i in order
    ]
    top = ev[:EVIDENCE_BARS]
    name = "evidence-most-diagnostic"
    figures.add(
        name,
        "The most diagnostic observations",
        f"The {len(top)} observations whose pointwise LOO elpd differs most between '{labels[a]}' and '{labels[b]}', "
        "coloured by the hypothesis each favours.",
        "Bar chart of the most diagnostic observations",
        F.evidence_bars,
        [f"{r.id} {r.event_date}" for r in top],
        np.array([r.elpd_difference for r in top]),
        a,
        b,
        labels,
        colours,
    )
    note = (
        f"Each observation's pointwise PSIS-LOO elpd under '{labels[a]}' minus under '{labels[b]}' (nats; > 0 favours "
        f"'{labels[a]}'). Summed over all observations it is the LOO elpd difference between the two, a measure of "
        "predictive accuracy that tracks, but is not, the Bayes factor."
    )
    if len(diff) > EVIDENCE_MAX_ROWS:
        note += f" The table lists the {EVIDENCE_MAX_ROWS} most diagnostic of the {len(diff)} observations."
    unreliable = not (rows[a].converged and rows[b].converged)
    return EvidenceSection(True, note, a, b, float(diff.sum()), ev, name, unreliable)


def _diagnostics(run: RunData, rows: dict[str, SupportRow], pointwise: pd.DataFrame, colours) -> DiagnosticsSection:
    from forecast.fit.sampler import EBFMI_MIN, ESS_MIN, RHAT_MAX, TREEDEPTH_SATURATION_MAX

    out = []
    n_samples = None
    for h in run.summary["hypotheses"]:
        d = h["diagnostics"]
        sampler = h.get("sampler", run.summary.get("settings", {}))
        stats = run.sample_stats.get(h["id"])
        depth = int(stats["depth"].max()) if stats is not None and "depth" in stats else None
        n_samples = int(run.posteriors[h["id"]].sizes["chain"] * run.posteriors[h["id"]].sizes["draw"])
        threshold = min(1 - 1 / np.log10(n_samples), PARETO_K_GOOD)
        ks = pointwise[f"pareto_k__{h['id']}"].to_numpy()
        out.append(
            DiagnosticsRow(
                id=h["id"],
                label=h["label"],
                colour=colours[h["id"]],
                converged=bool(d.get("converged", False)),
                rhat_max=d["rhat_max"],
                ess_bulk_min=d["ess_bulk_min"],
                ess_tail_min=d["ess_tail_min"],
                divergences=int(d["divergences"]),
                treedepth_saturated=float(d.get("treedepth_saturated", float("nan"))),
                max_tree_depth=depth,
                ebfmi_min=float(d.get("ebfmi_min", float("nan"))),
                pareto_k_max=float(np.nanmax(ks)),
                n_bad_pareto_k=int((ks > threshold).sum()),
                attempts=int(h.get("attempts", 1)),
                draws=int(sampler.get("draws", 0)),
                tune=int(sampler.get("tune", 0)),
                chains=int(sampler.get("chains", 0)),
                target_accept=float(sampler.get("target_accept", float("nan"))),
                seconds=float(h.get("seconds", float("nan"))),
                problems=list(d.get("problems", [])),
            )
        )
    matches = None
    if run.manifest is not None:
        matches = run.manifest.get("observations", {}).get("sha256") == run.obs.sha256
    threshold = min(1 - 1 / np.log10(n_samples), PARETO_K_GOOD) if n_samples else PARETO_K_GOOD
    return DiagnosticsSection(
        rows=out,
        settings=run.summary.get("settings", {}),
        thresholds={
            "rhat_max": RHAT_MAX,
            "ess_min": ESS_MIN,
            "divergences": 0,
            "ebfmi_min": EBFMI_MIN,
            "treedepth_saturation_max": TREEDEPTH_SATURATION_MAX,
        },
        pareto_k_threshold=float(threshold),
        manifest=run.manifest,
        data_hash_matches=matches,
        notes=list(run.notes),
    )


def build_report(run_dir: Path, *, progress: Progress | None = None, workers: int | None = None) -> Report:
    """Assemble the report of a run (see the module docstring); no fitting.

    ``workers``: processes that render the figures (default: forecast.reports.figures.default_workers()).
    """
    with FigureRenderer(workers) as renderer:  # its workers warm up while the report is assembled
        return _build(Path(run_dir), renderer, progress)


def _build(run_dir: Path, renderer: FigureRenderer, progress: Progress | None) -> Report:
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def stage(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - clock[0], 3)
        clock[0] = now

    say(f"report: reading {run_dir}")
    run = load_run(Path(run_dir))
    study = run.study
    ids = [h.id for h in study.hypotheses]
    colours = palette(ids)
    labels = {h.id: h.label for h in study.hypotheses}
    head = _headline(run, colours)
    rows = {r.id: r for r in head.rows}
    arrays = {hid: draws_as_arrays(run.posteriors[hid], study) for hid in ids}
    etas = {hid: cell_logit_draws(arrays[hid], study, run.cells) for hid in ids}
    stage("read_s")
    jobs = FigureJobs()
    say("report: assembling the sections")
    history = _history_section(run, labels, colours, jobs)
    learned = _learned(run, rows, colours, jobs, arrays)
    fit = _fit_section(run, etas, labels, colours, rows, jobs)
    pointwise = _pointwise(run, etas)
    evidence = _evidence(run, head, pointwise, labels, colours, rows, jobs)
    diagnostics = _diagnostics(run, rows, pointwise, colours)
    stage("assemble_s")
    say(f"report: rendering {len(jobs)} figures (ArviZ forest and calibration plots, matplotlib)")
    figures = renderer.render(jobs)
    stage("figures_s")
    converged = head.converged
    report = Report(
        study=study.name,
        run_dir=str(run.run_dir),
        run_id=run.run_dir.name,
        generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        forecast_version=_version(),
        converged=converged,
        warning=head.warning,
        headline=head,
        history=history,
        learned=learned,
        fit=fit,
        evidence=evidence,
        diagnostics=diagnostics,
        colours=colours,
        labels=labels,
        figures=figures,
        timings=timings,
    )
    report.seconds = time.perf_counter() - t0
    return report


def _version() -> str:
    try:
        return metadata.version("forecast")
    except metadata.PackageNotFoundError:
        return "unknown"


# --- rendering ---------------------------------------------------------------------------


def _env(autoescape: bool):
    import jinja2

    templates = Path(__file__).resolve().parent / "templates"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["p"] = lambda x: "—" if x is None or not np.isfinite(x) else f"{x:.3f}"
    env.filters["f1"] = lambda x: "—" if x is None or not np.isfinite(x) else f"{x:.1f}"
    env.filters["f2"] = lambda x: "—" if x is None or not np.isfinite(x) else f"{x:.2f}"
    env.filters["f3"] = lambda x: "—" if x is None or not np.isfinite(x) else f"{x:.3f}"
    env.filters["int0"] = lambda x: "—" if x is None or not np.isfinite(x) else f"{x:.0f}"
    env.filters["pct"] = lambda x: "—" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"
    env.filters["signed"] = lambda x: f"{x:+.2f}"
    env.filters["md"] = _md_cell
    return env


def _md_cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _context(report: Report) -> dict:
    return {"r": report, "fig": report.figures, "hids": list(report.labels)}


def render_html(report: Report) -> str:
    return _env(True).get_template("report.html.j2").render(**_context(report))


def render_markdown(report: Report) -> str:
    return _env(False).get_template("report.md.j2").render(**_context(report))


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, default=_json_default) + "\n"


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"cannot store {type(o).__name__} in JSON")


RENDERERS = {"html": render_html, "md": render_markdown, "json": render_json}


# --- the command -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportResult:
    report: Report
    outputs: dict[str, str]
    history_computed: bool
    seconds: float

    @property
    def converged(self) -> bool:
        return self.report.converged

    def to_dict(self) -> dict:
        r = self.report
        h = r.headline
        d = {
            "run_dir": r.run_dir,
            "study": r.study,
            "question": h.question,
            "latest_observation": h.latest_observation,
            "converged": r.converged,
        }
        if r.warning:
            d["warning"] = r.warning
        d.update(
            {
                "outputs": self.outputs,
                "conclusion": h.conclusion,
                "leader": h.leader,
                "runner_up": h.runner_up,
                "hypotheses": [
                    {
                        "id": x.id,
                        "label": x.label,
                        "prior_probability": x.prior_probability,
                        "posterior_probability": x.posterior_probability,
                        "posterior_probability_se": x.posterior_probability_se,
                        "bayes_factor": x.bayes_factor,
                        "bayes_factor_against": x.bayes_factor_against,
                        "jeffreys": x.jeffreys,
                        "elpd_diff": x.elpd_diff,
                        "elpd_diff_se": x.elpd_diff_se,
                        "converged": x.converged,
                    }
                    for x in h.rows
                ],
                "history": None
                if not r.history.available
                else {
                    "path": str(Path(r.run_dir) / HISTORY),
                    "computed": self.history_computed,
                    "every": r.history.every,
                    "n_points": len(r.history.rows),
                    "converged": r.history.converged,
                },
                "figures": sorted(r.figures),
                "notes": r.diagnostics.notes,
                "seconds": self.seconds,
                "report_schema_version": REPORT_SCHEMA,
            }
        )
        return d


def output_paths(run_dir: Path, formats: tuple[str, ...], output: Path | None) -> dict[str, Path]:
    """Where each format goes: ``<run_dir>/report.<ext>`` or ``output`` (one format only)."""
    if output is None:
        return {f: Path(run_dir) / f"{REPORT_NAME}{SUFFIX[f]}" for f in formats}
    if len(formats) != 1:
        raise InputError("--output names one file: choose one --format (html, md or json)")
    output = Path(output)
    if output.is_dir():
        return {formats[0]: output / f"{REPORT_NAME}{SUFFIX[formats[0]]}"}
    if not output.parent.is_dir():
        raise InputError(f"--output {output}: the directory {output.parent} does not exist")
    return {formats[0]: output}


def compute_run_history(run_dir: Path, *, every: int = 1, settings=None, progress: Progress | None = None) -> History:
    """Compute support over time for a stored run (its own study and observations) and store history.json.

    With the run's own sampler settings (the default) the last quarter is the run's stored result.
    """
    from forecast.fit.sampler import SamplerSettings
    from forecast.workflows.history import compute_history, history_json

    run = load_run(run_dir)
    stored = {k: v for k, v in run.summary.get("settings", {}).items() if k in SamplerSettings.__dataclass_fields__}
    run_settings = SamplerSettings(**stored)
    final = None
    if settings is None or settings == run_settings:
        settings = run_settings
        final = {
            h["id"]: (
                h["log_marginal_likelihood"],
                h["log_marginal_likelihood_se"],
                [] if h["diagnostics"].get("converged") else list(h["diagnostics"].get("problems", ["failed"])),
            )
            for h in run.summary["hypotheses"]
        }
    history = compute_history(run.study, run.obs, None, settings, every=every, progress=progress, final=final)
    atomic_write_text(Path(run_dir) / HISTORY, history_json(history))
    return history


def run_report(
    run: Path | None = None,
    *,
    study_path: Path | None = None,
    runs_root: Path | None = None,
    formats: tuple[str, ...] = FORMATS,
    output: Path | None = None,
    history: bool = False,
    history_every: int = 1,
    history_settings=None,
    progress: Progress | None = None,
) -> ReportResult:
    """Resolve the run, optionally compute its history, build the report and write each format atomically."""
    t0 = time.perf_counter()
    for f in formats:
        if f not in FORMATS:
            raise InputError(f"unknown report format '{f}'; choose from {', '.join(FORMATS)}")
    if history_every < 1:
        raise InputError(f"--history-every must be >= 1, got {history_every}")
    run_dir = resolve_run(run, study_path=study_path, runs_root=runs_root)
    targets = output_paths(run_dir, tuple(formats), output)
    if history:
        compute_run_history(run_dir, every=history_every, settings=history_settings, progress=progress)
    report = build_report(run_dir, progress=progress)
    outputs = {}
    for fmt, path in targets.items():
        atomic_write_text(path, RENDERERS[fmt](report))
        outputs[fmt] = str(path)
    if progress:
        progress(f"report written: {', '.join(outputs.values())}")
    return ReportResult(report, outputs, history, time.perf_counter() - t0)
