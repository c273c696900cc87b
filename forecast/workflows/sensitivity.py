"""`forecast sensitivity`: would the conclusion change under other reasonable priors?

Three answers, all from the latest run of the study (its posterior draws and log marginal
likelihoods), so most of the work is importance sampling, not refitting:

1. **Power-scaling** (Kallioinen et al. 2024; ArviZ's ``psense_summary``): for each hypothesis
   and hyperparameter, how much the posterior moves when the hyperparameters' priors or the
   likelihood are raised to a power near 1. Prior and likelihood sensitivity both above 0.05
   flag a prior-data conflict; prior sensitivity alone flags a prior-dominated parameter.
   Only the priors a hypothesis states (tilt, spread, trend, volatility) are power-scaled; the
   standard-normal domain effects and random-walk steps are part of the model's structure.
2. **A perturbation grid**: every hypothesis's priors are shifted (real-valued
   hyperparameters: mu by ± ``shift`` prior standard deviations) and widened or narrowed (the
   scale multiplied or divided by ``scale``; for positive hyperparameters every quantile is
   scaled), one hyperparameter at a time and jointly. A variant differs from its base only in
   the prior, so with ``r = p_variant(θ) / p_base(θ)`` over the base posterior draws:
   ``log p_variant(y) - log p_base(y) = log E_post[r]`` and the variant's posterior is the
   base's reweighted by ``r``. Both are Pareto-smoothed (PSIS); where Pareto k exceeds
   ``min(1 - 1/log10(S), 0.7)`` the estimate is unreliable and the variant is refitted on the
   compiled model (fanned out by forecast.fit.pool). Each variant gives every hypothesis a
   posterior probability; the output is their ranges, a tornado plot and a verdict on whether
   the leading hypothesis leads in every variant.
3. **Prior odds**: the posterior probability of each hypothesis as a function of its prior
   probability (the others keep their relative prior odds), exact from the Bayes factors, and
   the prior probability at which the leading hypothesis changes.

Results go to ``sensitivity.json`` (+ two PNG plots) in the run directory, each file written
atomically; ``load_sensitivity`` and ``sensitivity_section`` serve ``forecast report``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.special import expit, logsumexp

from forecast.data.cells import CellData, cell_data
from forecast.errors import ConvergenceError, InputError, RunStoreError, allowed_list, did_you_mean
from forecast.fit.sampler import SamplerSettings, hypothesis_seed
from forecast.model.build import cell_logit_draws, draws_as_arrays, rv_name, slots
from forecast.runs.store import dumps
from forecast.spec.priors import Prior
from forecast.spec.study import PARAMETERS, Hypothesis, Study, load_study
from forecast.stats.loo import PARETO_K_GOOD, pattern_loglik, posterior_probabilities

SENSITIVITY = "sensitivity.json"
TORNADO_PLOT = "sensitivity_tornado.png"
PRIOR_ODDS_PLOT = "sensitivity_prior_odds.png"
SCHEMA_VERSION = 1
PSENSE_THRESHOLD = 0.05
PRIOR_ODDS_POINTS = 99
REFIT_MODES = ("auto", "all", "none")
BY_MODES = ("parameter", "slot")

Progress = Callable[[str], None]


class SensitivitySpecError(InputError):
    """A sensitivity grid specification that cannot be used."""


# --------------------------------------------------------------------------------------------
# The grid specification


@dataclass(frozen=True)
class GridSpec:
    """Which prior variants to try. Every field has a default; see ``parse_grid_spec``."""

    shifts: tuple[float, ...] = (0.5,)  # location shifts of real-valued hyperparameters, in prior SDs (±)
    scales: tuple[float, ...] = (1.5,)  # width factors > 1 (each gives a wider and a narrower variant)
    by: str = "parameter"  # "parameter": all groups of a hyperparameter at once; "slot": each group alone
    joint: bool = True  # also perturb all selected hyperparameters of a hypothesis together
    hypotheses: tuple[str, ...] | None = None  # default: every hypothesis
    parameters: tuple[str, ...] | None = None  # default: every hyperparameter of the model
    refit: str = "auto"  # "auto": refit where Pareto k is too high; "all": refit every variant; "none"
    pareto_k_threshold: float | None = None  # default min(1 - 1/log10(S), 0.7)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


SPEC_KEYS = tuple(GridSpec.__dataclass_fields__)


def parse_grid_spec(raw: dict, source: str = "grid") -> GridSpec:
    """Validate a grid specification (a TOML table or CLI options); raise listing every problem."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise SensitivitySpecError(f"{source}: expected a table of grid settings")
    for key in sorted(set(raw) - set(SPEC_KEYS)):
        problems.append(
            f"{source}: unknown key '{key}'{did_you_mean(key, SPEC_KEYS)}; allowed: {allowed_list(SPEC_KEYS)}"
        )
    out: dict = {}

    def numbers(key: str, check: Callable[[float], bool], what: str) -> None:
        if key not in raw:
            return
        value = raw[key]
        values = value if isinstance(value, list | tuple) else [value]
        good = []
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not check(float(v)):
                problems.append(f"{source}.{key}: {what}, got {v!r}")
            else:
                good.append(float(v))
        if not values:
            problems.append(f"{source}.{key}: give at least one value")
        out[key] = tuple(sorted(set(good)))

    numbers("shifts", lambda v: v > 0, "each shift must be a number of prior standard deviations > 0 (e.g. 0.5)")
    numbers(
        "scales", lambda v: v > 1, "each scale must be a width factor > 1 (e.g. 1.5 widens by 1.5 and narrows by 1/1.5)"
    )
    for key, allowed in (("by", BY_MODES), ("refit", REFIT_MODES)):
        if key in raw:
            if raw[key] not in allowed:
                problems.append(
                    f"{source}.{key}: {raw[key]!r} is not one of {allowed_list(allowed)}{did_you_mean(str(raw[key]), allowed)}"
                )
            else:
                out[key] = raw[key]
    if "joint" in raw:
        if not isinstance(raw["joint"], bool):
            problems.append(f"{source}.joint: expected true or false, got {raw['joint']!r}")
        else:
            out["joint"] = raw["joint"]
    for key in ("hypotheses", "parameters"):
        if key in raw and raw[key] is not None:
            v = raw[key]
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list | tuple) or not v or not all(isinstance(x, str) for x in v):
                problems.append(f"{source}.{key}: expected a list of ids, got {raw[key]!r}")
            else:
                out[key] = tuple(v)
    if "pareto_k_threshold" in raw and raw["pareto_k_threshold"] is not None:
        k = raw["pareto_k_threshold"]
        if isinstance(k, bool) or not isinstance(k, int | float) or not 0 < k <= 1:
            problems.append(f"{source}.pareto_k_threshold: expected a number in (0, 1] (usually 0.7), got {k!r}")
        else:
            out["pareto_k_threshold"] = float(k)
    if problems:
        raise SensitivitySpecError(problems, heading=f"{source}: the sensitivity grid has problems")
    return GridSpec(**out)


def read_grid_file(path: str | Path) -> dict:
    """The raw grid settings of a TOML file: top-level keys, or a ``[sensitivity]`` table."""
    path = Path(path)
    if not path.is_file():
        raise SensitivitySpecError(f"{path}: grid file not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SensitivitySpecError(f"{path}: not valid TOML: {e}") from None
    return raw["sensitivity"] if set(raw) == {"sensitivity"} and isinstance(raw["sensitivity"], dict) else raw


def load_grid_spec(path: str | Path) -> GridSpec:
    """Read a grid specification from a TOML file (keys as in ``GridSpec``)."""
    return parse_grid_spec(read_grid_file(path), str(path))


def grid_spec_from(path: str | Path | None = None, **overrides) -> GridSpec:
    """A grid file's settings (if any) with command-line values (those not None) on top."""
    raw = read_grid_file(path) if path else {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return parse_grid_spec(raw, str(path) if path else "sensitivity options")


def check_spec(spec: GridSpec, study: Study) -> None:
    """Hypothesis and hyperparameter names in the spec must exist in the study."""
    problems = []
    hids = [h.id for h in study.hypotheses]
    for h in spec.hypotheses or ():
        if h not in hids:
            problems.append(
                f"hypotheses: '{h}' is not a hypothesis of '{study.name}'{did_you_mean(h, hids)}; known: {allowed_list(hids)}"
            )
    for p in spec.parameters or ():
        if p not in study.parameters:
            why = "" if p not in PARAMETERS else " (its time component is not in the study)"
            problems.append(
                f"parameters: '{p}' is not a hyperparameter of the model{why}{did_you_mean(p, study.parameters)}; "
                f"known: {allowed_list(study.parameters)}"
            )
    if problems:
        raise SensitivitySpecError(problems, heading="the sensitivity grid does not fit the study")


# --------------------------------------------------------------------------------------------
# Variants


@dataclass(frozen=True)
class Variant:
    """One hypothesis with changed priors (or the unperturbed base, ``hypothesis`` None)."""

    id: str
    hypothesis: str | None
    target: str  # "tilt", "tilt.russia", "all", or "" for the base
    change: str  # "base", "shift+0.5", "shift-0.5", "wider1.5", "narrower1.5"
    priors: dict[tuple[str, str], Prior] = field(default_factory=dict)
    changed: tuple[tuple[str, str], ...] = ()

    @property
    def joint(self) -> bool:
        return self.target == "all"


def shift_prior(prior: Prior, sds: float) -> Prior:
    """Move a real-valued prior's location by ``sds`` of its scale parameter sigma."""
    k = dict(prior.kwargs)
    k["mu"] = k["mu"] + sds * k["sigma"]
    return Prior(prior.dist, k)


def scale_prior(prior: Prior, factor: float) -> Prior:
    """Widen (factor > 1) or narrow a prior.

    Real-valued: sigma times factor (around the same location). Positive: the variable itself
    times factor, so every quantile is scaled (HalfNormal/HalfStudentT sigma, LogNormal mu +
    log factor, Gamma beta / factor, Exponential lam / factor).
    """
    k = dict(prior.kwargs)
    if prior.dist in ("Normal", "StudentT", "HalfNormal", "HalfStudentT"):
        k["sigma"] *= factor
    elif prior.dist == "LogNormal":
        k["mu"] += math.log(factor)
    elif prior.dist == "Gamma":
        k["beta"] /= factor
    elif prior.dist == "Exponential":
        k["lam"] /= factor
    else:  # pragma: no cover - every family is handled above
        raise ValueError(prior.dist)
    return Prior(prior.dist, k)


def _changes(spec: GridSpec, real: bool) -> list[tuple[str, Callable[[Prior], Prior]]]:
    out: list[tuple[str, Callable[[Prior], Prior]]] = []
    if real:
        for s in spec.shifts:
            out.append((f"shift-{s:g}", lambda p, s=s: shift_prior(p, -s)))
            out.append((f"shift+{s:g}", lambda p, s=s: shift_prior(p, s)))
    for f in spec.scales:
        out.append((f"wider{f:g}", lambda p, f=f: scale_prior(p, f)))
        out.append((f"narrower{f:g}", lambda p, f=f: scale_prior(p, 1.0 / f)))
    return out


def build_grid(study: Study, spec: GridSpec) -> list[Variant]:
    """The base and every variant the spec asks for, in a stable order."""
    check_spec(spec, study)
    params = [p for p in study.parameters if spec.parameters is None or p in spec.parameters]
    variants = [Variant("base", None, "", "base")]
    for h in study.hypotheses:
        if spec.hypotheses is not None and h.id not in spec.hypotheses:
            continue
        targets: list[tuple[str, list[tuple[str, str]]]] = []
        for p in params:
            if spec.by == "parameter":
                targets.append((p, [(p, g.id) for g in study.groups]))
            else:
                targets += [(f"{p}.{g.id}", [(p, g.id)]) for g in study.groups]
        for target, slot_list in targets:
            real = PARAMETERS[slot_list[0][0]][0] == "real"
            for change, fn in _changes(spec, real):
                priors = dict(h.priors)
                for s in slot_list:
                    priors[s] = fn(h.priors[s])
                variants.append(Variant(f"{h.id}/{target}/{change}", h.id, target, change, priors, tuple(slot_list)))
        if spec.joint and len(params) > 1:
            every = [(p, g.id) for p in params for g in study.groups]
            real_slots = [s for s in every if PARAMETERS[s[0]][0] == "real"]
            for change, fn in _changes(spec, True):
                chosen = real_slots if change.startswith("shift") else every
                if not chosen:
                    continue
                priors = dict(h.priors)
                for s in chosen:
                    priors[s] = fn(h.priors[s])
                variants.append(Variant(f"{h.id}/all/{change}", h.id, "all", change, priors, tuple(chosen)))
    return variants


# --------------------------------------------------------------------------------------------
# Importance reweighting


def default_k_threshold(n_draws: int) -> float:
    return float(min(1.0 - 1.0 / math.log10(n_draws), PARETO_K_GOOD))


@dataclass(frozen=True)
class Reweight:
    """A variant's change in log marginal likelihood by Pareto-smoothed importance sampling."""

    delta_log_ml: float  # log E_post[p_variant / p_base]
    se: float  # Monte Carlo standard error of delta_log_ml
    pareto_k: float
    ess: float  # effective sample size of the importance weights
    log_weights: np.ndarray  # normalised, over the flattened (chain, draw) draws


def log_prior_ratio(
    base: dict[tuple[str, str], Prior],
    variant: dict[tuple[str, str], Prior],
    changed: Iterable[tuple[str, str]],
    draws: dict[tuple[str, str], np.ndarray],
) -> np.ndarray:
    """log p_variant(θ) - log p_base(θ) at each draw, summed over the changed slots."""
    total = None
    for s in changed:
        x = draws[s]
        term = variant[s].logpdf(x) - base[s].logpdf(x)
        total = term if total is None else total + term
    return np.asarray(total, dtype=float)


def psis_reweight(log_ratio: np.ndarray) -> Reweight:
    """PSIS estimate of log E[exp(log_ratio)] over (chain, draw) draws, with Pareto k and MC error.

    ``array_stats.psislw`` smooths the largest weights and returns normalised log weights; it
    expects the *negative* log ratios (its LOO convention), hence ``-flat``. The unsmoothed
    body of the weights is left as it is, so the normaliser (the smoothed sum) is recovered from
    any draw below the tail: ``log sum = log r_i - lw_i``.
    """
    from arviz_stats.base import array_stats

    chains, draws = log_ratio.shape[:2]
    flat = log_ratio.reshape(-1)
    n = flat.size
    if not np.all(np.isfinite(flat)):
        return Reweight(float("nan"), float("inf"), float("inf"), 0.0, np.full(n, -np.log(n)))
    if np.ptp(flat) < 1e-12:  # the prior did not change where the posterior lives
        return Reweight(float(flat[0]), 0.0, float("-inf"), float(n), np.full(n, -np.log(n)))
    w = np.exp(log_ratio - flat.max())
    r_eff = float(np.asarray(array_stats.ess(w, method="mean", relative=True)))
    r_eff = min(max(r_eff, 1e-3), 1.0) if math.isfinite(r_eff) else 1.0
    lw, k = array_stats.psislw(-flat, r_eff=r_eff, axis=-1)
    lw = np.asarray(lw, dtype=float)
    i = int(np.argsort(flat)[n // 2])  # the median draw is never in the smoothed right tail
    log_sum = flat[i] - lw[i]
    delta = float(log_sum - np.log(n))
    wn = np.exp(lw)
    cv2 = max(float(n * np.sum(wn**2) - 1.0), 0.0)  # squared coefficient of variation of the ratios
    se = math.sqrt(cv2 / (n * r_eff))
    ess = float(1.0 / np.sum(wn**2))
    return Reweight(delta, se, float(k), ess, lw)


# --------------------------------------------------------------------------------------------
# The base run


@dataclass
class BaseRun:
    run_dir: Path
    summary: dict
    settings: SamplerSettings
    ids: list[str]
    prior: np.ndarray
    log_ml: np.ndarray
    log_ml_se: np.ndarray
    posterior: dict[str, object]  # hypothesis id -> xarray.Dataset of its posterior draws
    converged: bool

    def draws(self, hid: str, study: Study) -> dict[tuple[str, str], np.ndarray]:
        post = self.posterior[hid]
        return {s: np.asarray(post[rv_name(*s)].values, dtype=float) for s in slots(study)}


def matching_run(root: Path, study: Study, obs_sha256: str) -> Path | None:
    """The latest run of the study if it was made from exactly these study and observation files."""
    from forecast.runs.store import MANIFEST, latest_run

    try:
        run = latest_run(root, study.name)
        manifest = json.loads((run / MANIFEST).read_text(encoding="utf-8"))
    except (RunStoreError, OSError, json.JSONDecodeError):
        return None
    if manifest.get("study", {}).get("sha256") != study.sha256:
        return None
    if manifest.get("observations", {}).get("sha256") != obs_sha256:
        return None
    return run


def load_base(run_dir: Path, study: Study) -> BaseRun:
    """Posterior draws and support figures of every hypothesis from a run directory."""
    import xarray as xr

    from forecast.runs.store import POSTERIOR_DIR, load_summary

    summary = load_summary(run_dir)
    rows = {h["id"]: h for h in summary["hypotheses"]}
    ids = [h.id for h in study.hypotheses]
    missing = [h for h in ids if h not in rows]
    if missing:
        raise RunStoreError(f"{run_dir}: the run has no results for {allowed_list(missing)}; run `forecast update`")
    posterior = {}
    for hid in ids:
        path = Path(run_dir) / POSTERIOR_DIR / f"{hid}.nc"
        if not path.is_file():
            raise RunStoreError(f"{path}: missing; run `forecast update` again")
        with xr.open_datatree(path, engine="h5netcdf") as tree:
            posterior[hid] = tree["posterior"].to_dataset().load()
    known = {k: v for k, v in summary["settings"].items() if k in SamplerSettings.__dataclass_fields__}
    return BaseRun(
        run_dir=Path(run_dir),
        summary=summary,
        settings=SamplerSettings(**known),
        ids=ids,
        prior=np.array([h.prior_probability for h in study.hypotheses]),
        log_ml=np.array([rows[h]["log_marginal_likelihood"] for h in ids], dtype=float),
        log_ml_se=np.array([rows[h]["log_marginal_likelihood_se"] for h in ids], dtype=float),
        posterior=posterior,
        converged=bool(summary.get("converged", True)),
    )


# --------------------------------------------------------------------------------------------
# Power-scaling sensitivity


def power_scaling(study: Study, cells: CellData, posterior, hypothesis: Hypothesis) -> list[dict]:
    """Prior and likelihood power-scaling sensitivity of each hyperparameter of one hypothesis."""
    import xarray as xr
    from arviz_stats import psense_summary

    names = [rv_name(*s) for s in slots(study)]
    dims = ("chain", "draw")
    if hasattr(posterior, "to_dataset"):  # a DataTree node (a fit's trace.posterior)
        posterior = posterior.to_dataset()
    post = posterior[names]
    log_prior = xr.Dataset(
        {rv_name(*s): (dims, hypothesis.priors[s].logpdf(post[rv_name(*s)].values)) for s in slots(study)}
    )
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    eta = cell_logit_draws(draws_as_arrays(posterior, study), study, cells)
    loglik = (pattern_loglik(eta, cells) * cells.pattern_count).reshape(chains, draws, -1)
    tree = xr.DataTree.from_dict(
        {
            "posterior": post,
            "log_prior": log_prior,
            "log_likelihood": xr.Dataset({"events": (("chain", "draw", "pattern"), loglik)}),
        }
    )
    logging.getLogger("arviz_stats.psense").setLevel(logging.ERROR)
    table = psense_summary(tree, var_names=names, threshold=PSENSE_THRESHOLD, round_to=6)
    out = []
    for (param, group), name in zip(slots(study), names, strict=True):
        prior_s, lik_s = float(table.loc[name, "prior"]), float(table.loc[name, "likelihood"])
        if prior_s >= PSENSE_THRESHOLD and lik_s >= PSENSE_THRESHOLD:
            flag = "prior-data conflict"
        elif prior_s > PSENSE_THRESHOLD > lik_s:
            flag = "prior-dominated"
        else:
            flag = None
        out.append({"parameter": param, "group": group, "prior": prior_s, "likelihood": lik_s, "flag": flag})
    return out


# --------------------------------------------------------------------------------------------
# Prior odds


def prior_odds(
    log_ml: np.ndarray,
    prior: np.ndarray,
    ids: list[str],
    log_ml_se: np.ndarray | None = None,
    n: int = PRIOR_ODDS_POINTS,
) -> dict[str, dict]:
    """Posterior probability of each hypothesis as a function of its prior probability.

    Hypothesis i gets prior probability π; the others share 1 - π in their original
    proportions w_j. Bayes' rule gives P(H_i | y) = π B_i / (π B_i + (1 - π) Σ_j w_j B_j) with
    B = p(y | H). The others keep their order among themselves, so i leads exactly when
    π B_i > (1 - π) max_j w_j B_j: ``flip_prior`` = expit(max_j (log w_j + log B_j) - log B_i);
    ``even_odds_prior`` (posterior 1/2) uses the log-sum instead of the max.
    """
    log_ml, prior = np.asarray(log_ml, float), np.asarray(prior, float)
    se = np.zeros_like(log_ml) if log_ml_se is None else np.asarray(log_ml_se, float)
    grid = np.linspace(0.0, 1.0, n + 2)[1:-1]
    out = {}
    for i, hid in enumerate(ids):
        others = [j for j in range(len(ids)) if j != i]
        if not others:
            out[hid] = {"flip_prior": None, "even_odds_prior": None, "curve": {"prior": [], "posterior": []}}
            continue
        lw = np.log(prior[others]) - np.log(prior[others].sum())
        terms = lw + log_ml[others]
        log_rest = float(logsumexp(terms))
        j = others[int(np.argmax(terms))]
        flip_logit = float(terms.max() - log_ml[i])
        post = expit(np.log(grid) - np.log1p(-grid) + log_ml[i] - log_rest)
        flip = float(expit(flip_logit))
        out[hid] = {
            "prior_probability": float(prior[i]),
            "posterior_probability": float(expit(np.log(prior[i]) - np.log1p(-prior[i]) + log_ml[i] - log_rest)),
            "flip_prior": flip,
            "flip_prior_se": float(flip * (1 - flip) * math.hypot(se[i], se[j])),
            "flip_against": ids[j],
            "even_odds_prior": float(expit(log_rest - log_ml[i])),
            "curve": {"prior": grid.tolist(), "posterior": post.tolist()},
        }
    return out


# --------------------------------------------------------------------------------------------
# The whole analysis


def _probabilities(log_ml: np.ndarray, se: np.ndarray, prior: np.ndarray, ids: list[str]) -> tuple[dict, dict]:
    p, p_se = posterior_probabilities(log_ml, se, prior)
    return ({h: float(x) for h, x in zip(ids, p, strict=True)}, {h: float(x) for h, x in zip(ids, p_se, strict=True)})


def _describe_change(base: dict, variant: Variant) -> dict:
    return {
        f"{p}.{g}": {"from": base[(p, g)].describe(), "to": variant.priors[(p, g)].describe()}
        for p, g in variant.changed
    }


def run_sensitivity(
    study_path: str | Path,
    spec: GridSpec | None = None,
    *,
    runs_root: Path | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    allow_unconverged: bool = False,
    write: bool = True,
    progress: Progress | None = None,
    bar: bool = True,
    model=None,
    update_settings: SamplerSettings | None = None,
) -> dict:
    """Run the three sensitivity analyses on the study's latest run; see the module docstring.

    Without a run of the current study and observation files, ``forecast update`` runs first
    (with ``update_settings``). ``model``: a compiled StudyModel of the study to reuse for
    in-process refits. Returns the JSON-able result (also written to ``sensitivity.json``).
    """
    from forecast.data.observations import load_observations
    from forecast.fit.pool import FitTask, open_pool, register_model, run_fits
    from forecast.runs.store import default_root

    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    spec = spec or GridSpec()
    if scheduler is not None and "://" not in scheduler:
        raise InputError(f"--scheduler: expected an address like tcp://host:8786, got {scheduler!r}")
    study = load_study(study_path)
    variants = build_grid(study, spec)  # checks the spec before anything slow happens
    obs = load_observations(study)
    cells = cell_data(obs.table, study)
    root = Path(runs_root or study.runs_path or default_root())
    run = matching_run(root, study, obs.sha256)
    if run is None:
        from forecast.workflows.update import run_update

        say(
            f"no run of '{study.name}' matches the current study and observation files; running `forecast update` first"
        )
        result = run_update(
            study_path, update_settings, runs_root=root, allow_unconverged=allow_unconverged, progress=progress
        )
        run = Path(result.run_dir)
    say(f"sensitivity of '{study.name}' from run {run}")
    base = load_base(run, study)
    if not base.converged and not allow_unconverged:
        raise ConvergenceError(
            f"{run}: the base run failed its convergence checks, so sensitivity figures would be unreliable; "
            "rerun `forecast update` with more draws, or pass --allow-unconverged"
        )
    ids, prior = base.ids, base.prior
    hyp = {h.id: h for h in study.hypotheses}
    n_draws = base.settings.chains * base.settings.draws
    k_max = spec.pareto_k_threshold or default_k_threshold(n_draws)

    # 1. Reweight every variant by its prior ratio.
    t_rw = time.perf_counter()
    draws = {hid: base.draws(hid, study) for hid in ids}
    reweights: dict[str, Reweight] = {}
    for v in variants[1:]:
        log_r = log_prior_ratio(hyp[v.hypothesis].priors, v.priors, v.changed, draws[v.hypothesis])
        reweights[v.id] = psis_reweight(log_r)
    reweight_s = time.perf_counter() - t_rw

    # 2. Refit where reweighting is unreliable (or everything, on request).
    to_refit = []
    for v in variants[1:]:
        rw = reweights[v.id]
        if spec.refit == "all" or (spec.refit == "auto" and not rw.pareto_k <= k_max):
            to_refit.append(v)
    tasks = []
    for v in to_refit:
        seed = hypothesis_seed(base.settings.seed, v.id)
        h = replace(hyp[v.hypothesis], priors=v.priors)
        tasks.append(FitTask(v.id, h, replace(base.settings, seed=seed), seed))
    if spec.refit == "all":
        for hid in ids:
            seed = hypothesis_seed(base.settings.seed, f"base/{hid}")
            tasks.append(FitTask(f"base/{hid}", hyp[hid], replace(base.settings, seed=seed), seed))
    refits = {}
    fan = None
    t_rf = time.perf_counter()
    if tasks:
        if model is not None:
            register_model(model)
        say(
            f"refitting {len(tasks)} fit(s) where importance reweighting is unreliable"
            if spec.refit == "auto"
            else f"refitting {len(tasks)} fit(s)"
        )
        with open_pool(scheduler, workers, len(tasks), base.settings.cores) as pool:
            say(f"  on {pool.description}")
            fan = run_fits(study, cells, tasks, pool, bar=bar and progress is not None, label="refits")
        refits = {o.key: o for o in fan.outcomes}
        failed = [o for o in fan.outcomes if not o.converged]
        if failed and not allow_unconverged:
            raise ConvergenceError(
                "the convergence gate failed for refitted variant(s), so no sensitivity results were written:\n"
                + "\n".join(f"  - {o.key}: {'; '.join(o.diagnostics['problems'])}" for o in failed)
                + "\nRerun `forecast update` with more --tune/--draws, or pass --allow-unconverged."
            )
    refit_s = time.perf_counter() - t_rf

    # 3. Posterior probabilities per variant.
    base_p, base_p_se = _probabilities(base.log_ml, base.log_ml_se, prior, ids)
    leader = max(base_p, key=base_p.get)
    rows = []
    base_row = {
        "id": "base",
        "hypothesis": None,
        "target": "",
        "change": "base",
        "joint": False,
        "method": "base",
        "priors_changed": {},
        "log_marginal_likelihood": dict(zip(ids, base.log_ml.tolist(), strict=True)),
        "posterior_probabilities": base_p,
        "posterior_probabilities_se": base_p_se,
        "leader": leader,
    }
    if spec.refit == "all":
        lm = np.array([refits[f"base/{h}"].log_ml for h in ids])
        lse = np.array([refits[f"base/{h}"].log_ml_se for h in ids])
        p, p_se = _probabilities(lm, lse, prior, ids)
        base_row["refit"] = {
            "log_marginal_likelihood": dict(zip(ids, lm.tolist(), strict=True)),
            "log_marginal_likelihood_se": dict(zip(ids, lse.tolist(), strict=True)),
            "posterior_probabilities": p,
            "posterior_probabilities_se": p_se,
            "diagnostics": {h: refits[f"base/{h}"].diagnostics for h in ids},
        }
    rows.append(base_row)
    for v in variants[1:]:
        i = ids.index(v.hypothesis)
        rw = reweights[v.id]
        lm, lse = base.log_ml.copy(), base.log_ml_se.copy()
        if v.id in refits:
            method = "refitted"
            lm[i], lse[i] = refits[v.id].log_ml, refits[v.id].log_ml_se
        else:
            method = "reweighted"
            lm[i], lse[i] = base.log_ml[i] + rw.delta_log_ml, math.hypot(base.log_ml_se[i], rw.se)
        p, p_se = _probabilities(lm, lse, prior, ids)
        row = {
            "id": v.id,
            "hypothesis": v.hypothesis,
            "target": v.target,
            "change": v.change,
            "joint": v.joint,
            "method": method,
            "priors_changed": _describe_change(hyp[v.hypothesis].priors, v),
            "pareto_k": rw.pareto_k,
            "importance_ess": rw.ess,
            "delta_log_ml_reweighted": rw.delta_log_ml,
            "delta_log_ml_reweighted_se": rw.se,
            "delta_log_ml": float(lm[i] - base.log_ml[i]),
            "log_marginal_likelihood": float(lm[i]),
            "log_marginal_likelihood_se": float(lse[i]),
            "posterior_probabilities": p,
            "posterior_probabilities_se": p_se,
            "leader": max(p, key=p.get),
            # False only for a variant that needed a refit and did not get one (--refit none)
            "reliable": method == "refitted" or bool(rw.pareto_k <= k_max),
        }
        if v.id in refits:
            row["refit"] = refits[v.id].to_dict()
        rows.append(row)

    # 4. Ranges, tornado, verdict.
    ranges = {}
    for h in ids:
        values = [(r["posterior_probabilities"][h], r["id"]) for r in rows]
        lo, hi = min(values), max(values)
        ranges[h] = {"base": base_p[h], "min": lo[0], "max": hi[0], "min_variant": lo[1], "max_variant": hi[1]}
    tornado = _tornado(rows, leader)
    verdict = _verdict(rows, leader, hyp, base.log_ml, base.log_ml_se, prior, ids)

    # 5. Prior odds and power-scaling.
    odds = prior_odds(base.log_ml, prior, ids, base.log_ml_se)
    t_ps = time.perf_counter()
    psense = {h: power_scaling(study, cells, base.posterior[h], hyp[h]) for h in ids}
    psense_s = time.perf_counter() - t_ps
    flags = [
        {"hypothesis": h, "parameter": r["parameter"], "group": r["group"], "flag": r["flag"]}
        for h in ids
        for r in psense[h]
        if r["flag"]
    ]

    result = {
        "schema_version": SCHEMA_VERSION,
        "study": study.name,
        "study_path": str(study.path),
        "run_dir": str(run),
        "converged": base.converged and all(o.converged for o in (fan.outcomes if fan else [])),
        "grid": spec.to_dict() | {"pareto_k_threshold": k_max},
        "sampler": base.settings.to_dict(),
        "hypotheses": [{"id": h, "label": hyp[h].label, "prior_probability": float(prior[ids.index(h)])} for h in ids],
        "base": {
            "leader": leader,
            "posterior_probabilities": base_p,
            "posterior_probabilities_se": base_p_se,
            "log_marginal_likelihood": dict(zip(ids, base.log_ml.tolist(), strict=True)),
            "log_marginal_likelihood_se": dict(zip(ids, base.log_ml_se.tolist(), strict=True)),
        },
        "n_variants": len(rows),
        "n_refitted": sum(r["method"] == "refitted" for r in rows),
        "refitted": [r["id"] for r in rows if r["method"] == "refitted"],
        "variants": rows,
        "ranges": ranges,
        "tornado": tornado,
        "verdict": verdict,
        "prior_odds": odds,
        "prior_odds_text": _odds_text(odds, leader, hyp),
        "psense": psense,
        "psense_flags": flags,
        "psense_threshold": PSENSE_THRESHOLD,
        "scaleout": {
            "pool": fan.pool if fan else None,
            "workers": fan.workers if fan else 0,
            "compiles": fan.compiles if fan else 0,
            "fits": len(tasks),
        },
        "files": {},
    }
    unreliable = [r["id"] for r in rows[1:] if not r["reliable"]]
    result["unreliable_variants"] = unreliable
    if not result["converged"]:
        result["warning"] = "UNRELIABLE: at least one fit failed its convergence checks"
    elif unreliable:
        result["warning"] = (
            f"{len(unreliable)} variant(s) have Pareto k above {k_max:.2f} and were not refitted (--refit none): "
            "their figures are unreliable"
        )
    result["timings"] = {
        "total_s": time.perf_counter() - t0,
        "reweight_s": reweight_s,
        "refit_s": refit_s,
        "psense_s": psense_s,
    }
    result = _finite(result)
    if write:
        say("writing sensitivity results into the run directory")
        result["files"] = write_results(run, result)
        result["timings"]["total_s"] = time.perf_counter() - t0
        atomic_write(run / SENSITIVITY, dumps(result) + "\n")
    return result


def _tornado(rows: list[dict], leader: str) -> list[dict]:
    """Per (hypothesis, perturbed prior): the range of the leader's posterior probability."""
    base = rows[0]["posterior_probabilities"][leader]
    groups: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for r in rows[1:]:
        groups.setdefault((r["hypothesis"], r["target"]), []).append((r["posterior_probabilities"][leader], r["id"]))
    out = []
    for (h, target), values in groups.items():
        lo, hi = min(values), max(values)
        out.append(
            {
                "hypothesis": h,
                "target": target,
                "low": min(lo[0], base),
                "high": max(hi[0], base),
                "low_variant": lo[1],
                "high_variant": hi[1],
                "swing": max(hi[0], base) - min(lo[0], base),
            }
        )
    return sorted(out, key=lambda t: -t["swing"])


def _verdict(rows, leader, hyp, log_ml, log_ml_se, prior, ids) -> dict:
    flips = []
    for r in rows[1:]:
        if r["leader"] == leader:
            continue
        i, j = ids.index(leader), ids.index(r["leader"])
        lm = dict(zip(ids, log_ml, strict=True))
        lse = dict(zip(ids, log_ml_se, strict=True))
        lm[r["hypothesis"]] = r["log_marginal_likelihood"]
        lse[r["hypothesis"]] = r["log_marginal_likelihood_se"]
        gap = (np.log(prior[j]) + lm[r["leader"]]) - (np.log(prior[i]) + lm[leader])
        flips.append(
            {
                "variant": r["id"],
                "new_leader": r["leader"],
                "posterior_probabilities": r["posterior_probabilities"],
                "within_mc_error": bool(abs(gap) < 2 * math.hypot(lse[leader], lse[r["leader"]])),
            }
        )
    p = [r["posterior_probabilities"][leader] for r in rows]
    label = hyp[leader].label
    if not flips:
        text = (
            f"'{label}' leads in all {len(rows)} prior variants (its posterior probability ranges from "
            f"{min(p):.2f} to {max(p):.2f}): the conclusion does not depend on these prior choices."
        )
    else:
        names = ", ".join(f"{f['variant']} (-> '{hyp[f['new_leader']].label}')" for f in flips[:8])
        more = f" and {len(flips) - 8} more" if len(flips) > 8 else ""
        text = (
            f"'{label}' leads in {len(rows) - len(flips)} of {len(rows)} prior variants; it loses the lead in "
            f"{names}{more}. The conclusion depends on these prior choices."
        )
        if all(f["within_mc_error"] for f in flips):
            text += " Every flip is within two Monte Carlo standard errors: rerun with more --draws to settle it."
    return {"leader": leader, "stable": not flips, "flips": flips, "text": text}


def _odds_text(odds: dict, leader: str, hyp: dict) -> str:
    o = odds[leader]
    if o.get("flip_prior") is None:
        return ""
    return (
        f"'{hyp[leader].label}' stays the most probable hypothesis as long as its prior probability is above "
        f"{o['flip_prior']:.3g} (now {o['prior_probability']:.3g}, others keeping their relative odds); below that "
        f"'{hyp[o['flip_against']].label}' leads. It needs a prior of {o['even_odds_prior']:.3g} for even posterior odds."
    )


# --------------------------------------------------------------------------------------------
# Files


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write a file so that readers see the old or the new content, never a partial one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finite(obj):
    """The result with every non-finite float as None, so that the JSON is strict JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in JSON")


def _savefig(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write(path, buf.getvalue())


def write_results(run_dir: Path, result: dict) -> dict[str, str]:
    """The tornado and prior-odds plots, each written atomically; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {h["id"]: h["label"] for h in result["hypotheses"]}
    leader = result["verdict"]["leader"]
    files = {}

    rows = result["tornado"][:20]
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(rows), 3) + 1.4))
    base = result["base"]["posterior_probabilities"][leader]
    for y, t in enumerate(reversed(rows)):
        ax.barh(y, t["high"] - t["low"], left=t["low"], color="tab:blue" if t["target"] != "all" else "tab:gray")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{labels[t['hypothesis']]}: {t['target']}" for t in reversed(rows)], fontsize=8)
    ax.axvline(base, color="black", lw=1)
    ax.axvline(0.5, color="tab:red", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"posterior probability of '{labels[leader]}' across prior variants")
    ax.set_title("Which prior moves the conclusion most (grey: all priors of a hypothesis jointly)", fontsize=9)
    _savefig(fig, run_dir / TORNADO_PLOT)
    plt.close(fig)
    files["tornado"] = TORNADO_PLOT

    fig, ax = plt.subplots(figsize=(6, 4))
    for hid, o in result["prior_odds"].items():
        if not o["curve"]["prior"]:
            continue
        (line,) = ax.plot(o["curve"]["prior"], o["curve"]["posterior"], label=labels[hid])
        ax.plot([o["prior_probability"]], [o["posterior_probability"]], "o", color=line.get_color())
        if hid == leader:
            ax.axvline(o["flip_prior"], color=line.get_color(), ls=":", lw=1)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
    ax.set_xlabel("prior probability of the hypothesis (others keep their relative odds)")
    ax.set_ylabel("posterior probability")
    ax.set_title("Prior odds: dots are the study's priors; dotted line, where the leader changes", fontsize=9)
    ax.legend(fontsize=8)
    _savefig(fig, run_dir / PRIOR_ODDS_PLOT)
    plt.close(fig)
    files["prior_odds"] = PRIOR_ODDS_PLOT
    return files


def load_sensitivity(run_dir: str | Path) -> dict | None:
    """The sensitivity results of a run (the ``--json`` object), or None if there are none."""
    path = Path(run_dir) / SENSITIVITY
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RunStoreError(f"{path}: unreadable ({e})") from None
    if data.get("schema_version") != SCHEMA_VERSION:
        raise RunStoreError(f"{path}: sensitivity schema {data.get('schema_version')!r}; rerun `forecast sensitivity`")
    return data


def render_sensitivity(result: dict) -> str:
    """The plain-text report `forecast sensitivity` prints (also usable in `forecast report`)."""
    labels = {h["id"]: h["label"] for h in result["hypotheses"]}
    lines = [f"Sensitivity of '{result['study']}' to its priors (run {result['run_dir']})", ""]
    if result.get("warning"):
        lines += [result["warning"], ""]
    lines.append(
        f"Perturbation grid: {result['n_variants']} variants (shifts ±{', '.join(f'{s:g}' for s in result['grid']['shifts'])} "
        f"prior SD, widths ×/÷{', '.join(f'{s:g}' for s in result['grid']['scales'])}); "
        f"{result['n_refitted']} refitted where Pareto k > {result['grid']['pareto_k_threshold']:.2f}, the rest reweighted."
    )
    head = f"  {'hypothesis':<26} {'base P':>7} {'min P':>7} {'max P':>7}"
    lines += [head]
    for h, r in result["ranges"].items():
        lines.append(f"  {labels[h][:26]:<26} {r['base']:>7.3f} {r['min']:>7.3f} {r['max']:>7.3f}")
    lines += ["", result["verdict"]["text"], ""]
    lines.append("Priors that move the leader's probability most:")
    for t in result["tornado"][:5]:
        lines.append(f"  {labels[t['hypothesis']]}: {t['target']:<14} {t['low']:.3f} .. {t['high']:.3f}")
    if result["refitted"]:
        lines.append("Refitted (reweighting unreliable): " + ", ".join(result["refitted"]))
    lines += ["", "Prior odds: " + result["prior_odds_text"], ""]
    lines.append(f"Power-scaling (threshold {result['psense_threshold']}):")
    if not result["psense_flags"]:
        lines.append("  no prior-data conflict and no prior-dominated hyperparameter")
    for f in result["psense_flags"]:
        lines.append(f"  {labels[f['hypothesis']]}: {f['parameter']}.{f['group']}: {f['flag']}")
    if result.get("files"):
        lines += ["", "Plots: " + ", ".join(str(Path(result["run_dir"]) / v) for v in result["files"].values())]
    return "\n".join(lines)


def sensitivity_section(run_dir: str | Path) -> str | None:
    """A report section (Markdown) for ``forecast report``, or None if the run has no results."""
    data = load_sensitivity(run_dir)
    if data is None:
        return None
    body = render_sensitivity(data)
    images = "".join(f"\n![{k}]({v})" for k, v in data.get("files", {}).items())
    return "## Sensitivity to the priors\n\n```\n" + body + "\n```\n" + images + "\n"
