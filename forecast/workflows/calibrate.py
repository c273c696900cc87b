"""`forecast calibrate`: simulation-based calibration of the hypothesis test itself.

Following Schad, Nicenboim, Bürkner, Betancourt & Vasishth (2023, "Workflow techniques for the
robust use of Bayes factors"), the whole pipeline of `forecast update` is run on data sets whose
truth is known:

1. draw a hypothesis H from the study's prior probabilities, and parameters from H's prior;
2. simulate a data set of the study's size and shape (``forecast.workflows.simulate``);
3. fit every hypothesis, estimate each log marginal likelihood by bridge sampling, and compute
   the posterior probabilities, exactly as `forecast update` does (convergence gate included).

If the computation is right, the posterior probabilities are calibrated, whatever the priors:

- *data-averaged posterior*: the average of P(H | y) over the simulated data sets equals the
  prior probability P(H) (checked per hypothesis with its Monte Carlo standard error; averaged
  within each true hypothesis and weighted by the prior, which removes the noise of how often
  each hypothesis happened to be drawn);
- *calibration*: among data sets where the tool says P(H | y) = p, H is true a fraction p of the
  time (binned, each bin with the band exact calibration allows);
- *Brier check*: the mean of sum_H (1{H true} - P(H | y))^2 - P(H | y) (1 - P(H | y)) is zero
  in expectation; over-confident probabilities make it positive, timid ones negative.

The same runs give a *design analysis*: how often, at the study's current data size, the tool
puts the most probability on the true hypothesis, how often it is decisive (P >= 0.9 for the
true one) and how often misleading (P >= 0.9 for a false one).

The data sets are independent, so they are fanned out over worker processes (or a Dask
cluster) through ``forecast.fit.pool.open_pool``; each worker compiles the model once and refits
it on every data set it gets (``StudyModel.fit(..., cells=...)``).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import softmax

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations, reliability_weight
from forecast.errors import ConvergenceError, InputError, RunStoreError
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.model.predictive import one_prior_draw, simulate_outcomes
from forecast.runs.store import atomic_write_text, default_root, dumps, latest_run
from forecast.settings import seed_sequence
from forecast.spec.study import Study, load_study
from forecast.workflows.simulate import study_design, uniform_design

CALIBRATION = "calibration.json"
BAND_LEVEL = 0.99
DECISIVE = 0.9
DEFAULT_BINS = 5
Progress = Callable[[str], None]

# One compiled model per study and worker process, reused for every data set it fits.
_MODELS: dict[str, StudyModel] = {}


@dataclass(frozen=True)
class Replicate:
    """One simulated data set and what the full update concluded from it."""

    index: int
    true: int  # index of the hypothesis the data were drawn from
    n_cooperative: int
    log_ml: tuple[float, ...]
    log_ml_se: tuple[float, ...]
    converged: tuple[bool, ...]
    problems: tuple[str, ...]  # convergence problems of the fits, "hypothesis: problem"
    seconds: float
    worker: str

    def posterior(self, prior: np.ndarray) -> np.ndarray:
        return softmax(np.log(prior) + np.array(self.log_ml))


def design_table(study: Study, design: pd.DataFrame, cooperative: np.ndarray) -> pd.DataFrame:
    """A design with outcomes as the validated observation table that ``cell_data`` reads."""
    dates = pd.to_datetime(design["event_date"])
    return pd.DataFrame(
        {
            "group": design["counterpart"].map(study.counterpart_group).to_numpy(),
            "domain": design["domain"].to_numpy(),
            "quarter": (dates.dt.year * 4 + (dates.dt.month - 1) // 3).astype("Int64").to_numpy(),
            "cooperative": np.asarray(cooperative, dtype=bool),
            "weight": reliability_weight(design["reliability"].astype(str), study).to_numpy(),
        }
    )


def replicate_seed(seed: int, index: int) -> np.random.SeedSequence:
    return seed_sequence(seed, 31, index)


def simulate_replicate(study: Study, design: pd.DataFrame, seed: int, index: int) -> tuple[int, pd.DataFrame]:
    """The true hypothesis and the simulated observations of data set ``index``."""
    rng = np.random.default_rng(replicate_seed(seed, index))
    prior = np.array([h.prior_probability for h in study.hypotheses])
    true = int(rng.choice(len(prior), p=prior / prior.sum()))
    params = one_prior_draw(study, study.hypotheses[true], rng)
    cooperative = simulate_outcomes(study, params, design, rng)
    return true, design_table(study, design, cooperative)


def _model(study: Study, cells) -> StudyModel:
    key = f"{study.path}:{study.sha256}"
    if key not in _MODELS:
        _MODELS[key] = StudyModel(study, cells)
    return _MODELS[key]


def run_replicate(study: Study, design: pd.DataFrame, settings: SamplerSettings, index: int) -> Replicate:
    """Worker entry point: simulate data set ``index`` and run the full update on it."""
    from forecast.fit.hypothesis import checked, marginal_likelihood

    t0 = time.perf_counter()
    true, table = simulate_replicate(study, design, settings.seed, index)
    cells = cell_data(table, study)
    model = _model(study, cells)
    fit_settings = replace(settings, seed=int(replicate_seed(settings.seed, index).generate_state(1)[0]))
    log_ml, se, ok, problems = [], [], [], []
    for h in study.hypotheses:
        fit = model.fit(h, fit_settings, cells=cells)
        bridge = marginal_likelihood(model, h, fit, fit_settings.seed, cells)
        fit = checked(fit, bridge)
        log_ml.append(float(bridge.log_ml))
        se.append(float(bridge.se))
        ok.append(bool(fit.diagnostics.converged))
        problems += [f"{h.id}: {p}" for p in fit.diagnostics.problems]
    return Replicate(
        index=index,
        true=true,
        n_cooperative=int(table["cooperative"].sum()),
        log_ml=tuple(log_ml),
        log_ml_se=tuple(se),
        converged=tuple(ok),
        problems=tuple(problems),
        seconds=time.perf_counter() - t0,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )


# --- the checks (pure functions of the replicates) --------------------------------------------------


def calibration_checks(true: np.ndarray, post: np.ndarray, prior: np.ndarray, n_bins: int = DEFAULT_BINS) -> dict:
    """Data-averaged posterior, binned calibration and the Brier check, with their MC bands.

    ``true``: (K,) index of the true hypothesis per data set; ``post``: (K, H) posterior
    probabilities; ``prior``: (H,). Bands are two-sided at ``BAND_LEVEL``.
    """
    true, post, prior = np.asarray(true), np.asarray(post, dtype=float), np.asarray(prior, dtype=float)
    k, n_h = post.shape
    z = float(stats.norm.ppf(0.5 + BAND_LEVEL / 2))
    onehot = np.eye(n_h)[true]

    # Data-averaged posterior. The plain average over data sets carries the noise of how often
    # each hypothesis happened to be drawn; averaging within each true hypothesis and weighting
    # by the prior (post-stratification) estimates the same E[P(H | y)] without that noise.
    counts = np.bincount(true, minlength=n_h)
    stratified = bool((counts >= 2).all())
    mean_post = []
    for j in range(n_h):
        plain = float(post[:, j].mean())
        plain_se = float(post[:, j].std(ddof=1) / np.sqrt(k)) if k > 1 else float("nan")
        if stratified:
            m = float(sum(prior[h] * post[true == h, j].mean() for h in range(n_h)))
            se = float(np.sqrt(sum(prior[h] ** 2 * post[true == h, j].var(ddof=1) / counts[h] for h in range(n_h))))
        else:
            m, se = plain, plain_se
        zj = (m - prior[j]) / se if se > 0 else 0.0
        mean_post.append(
            {
                "prior": float(prior[j]),
                "mean_posterior": m,
                "se": se,
                "estimator": "stratified by the true hypothesis" if stratified else "plain average",
                "plain_mean": plain,
                "plain_se": plain_se,
                "band_low": float(prior[j] - z * se),
                "band_high": float(prior[j] + z * se),
                "z": float(zj),
                "within": bool(abs(zj) <= z),
                "fraction_true": float(onehot[:, j].mean()),
            }
        )

    p, o = post.ravel(), onehot.ravel()
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        sel = which == b
        n = int(sel.sum())
        if n == 0:
            bins.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": 0})
            continue
        pb, ob = p[sel], o[sel]
        sd = float(np.sqrt((pb * (1 - pb)).sum()) / n)
        lo, hi = float(pb.mean() - z * sd), float(pb.mean() + z * sd)
        bins.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "n": n,
                "mean_predicted": float(pb.mean()),
                "observed": float(ob.mean()),
                "band_low": max(lo, 0.0),
                "band_high": min(hi, 1.0),
                # a bin whose probabilities are all 0 or 1 has no spread: then it must match exactly
                "within": bool(lo - 1e-9 <= ob.mean() <= hi + 1e-9),
            }
        )

    d = ((onehot - post) ** 2).sum(axis=1) - (post * (1 - post)).sum(axis=1)
    d_se = float(d.std(ddof=1) / np.sqrt(k)) if k > 1 else float("nan")
    d_z = float(d.mean() / d_se) if d_se > 0 else 0.0
    brier = {
        "statistic": float(d.mean()),
        "se": d_se,
        "z": d_z,
        "within": bool(abs(d_z) <= z),
        "meaning": "0 if calibrated; > 0 over-confident, < 0 under-confident",
    }
    consistent = all(m["within"] for m in mean_post) and all(b.get("within", True) for b in bins) and brier["within"]
    return {
        "band_level": BAND_LEVEL,
        "mean_posterior": mean_post,
        "bins": bins,
        "brier": brier,
        "consistent": bool(consistent),
    }


def design_analysis(true: np.ndarray, post: np.ndarray, hypotheses: list[str], decisive: float = DECISIVE) -> dict:
    """How often the tool would pick the true hypothesis, be decisive, or mislead."""
    true, post = np.asarray(true), np.asarray(post, dtype=float)
    picked = post.argmax(axis=1)
    p_true = post[np.arange(len(true)), true]
    wrong = post.copy()
    wrong[np.arange(len(true)), true] = 0
    by_truth = {}
    for j, h in enumerate(hypotheses):
        sel = true == j
        by_truth[h] = {
            "n": int(sel.sum()),
            "picks_true": float((picked[sel] == j).mean()) if sel.any() else None,
            "decisive": float((p_true[sel] >= decisive).mean()) if sel.any() else None,
            "mean_posterior_of_true": float(p_true[sel].mean()) if sel.any() else None,
        }
    return {
        "picks_true": float((picked == true).mean()),
        "decisive": float((p_true >= decisive).mean()),
        "misleading": float((wrong.max(axis=1) >= decisive).mean()),
        "decisive_threshold": decisive,
        "mean_posterior_of_true": float(p_true.mean()),
        "by_truth": by_truth,
    }


# --- the command ------------------------------------------------------------------------------------


@dataclass
class CalibrationResult:
    data: dict

    def to_dict(self) -> dict:
        return self.data


def run_calibration(
    study_path: str | Path,
    settings: SamplerSettings | None = None,
    *,
    n_datasets: int = 100,
    n: int | None = None,
    reliability: str = "A1",
    workers: int | None = None,
    scheduler: str | None = None,
    n_bins: int = DEFAULT_BINS,
    runs_root: Path | None = None,
    allow_unconverged: bool = False,
    write: bool = True,
    progress: Progress | None = None,
    bar: bool = True,
    today: dt.date | None = None,
) -> CalibrationResult:
    """Simulation-based calibration of the study's hypothesis test; see the module docstring."""
    from forecast.fit.pool import ProgressBar, open_pool

    settings = settings or SamplerSettings()
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    if n_datasets < 2:
        raise InputError(f"--datasets must be at least 2, got {n_datasets}")
    if n is not None and n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    study = load_study(study_path)
    if len(study.hypotheses) < 2:
        raise InputError("calibration needs at least two hypotheses to compare")
    if n is None:
        design = study_design(study, load_observations(study, today=today).table)
        design_text = f"the study's {len(design)} counted observations (same counterparts, domains, dates, grades)"
    else:
        design = uniform_design(study, n, np.random.default_rng([settings.seed, 5]), reliability, today)
        design_text = f"{n} events uniform over counterparts, domains and quarters, grade {reliability}"
    hyps = [h.id for h in study.hypotheses]
    prior = np.array([h.prior_probability for h in study.hypotheses])
    say(f"{study.name}: {n_datasets} simulated data sets of {len(design)} events, {len(hyps)} hypotheses each")

    replicates: list[Replicate] = []
    with open_pool(scheduler, workers, n_tasks=n_datasets, cores=settings.cores) as pool:
        say(f"running on {pool.description}")
        task_settings = replace(settings, cores=pool.cores_per_fit)
        bar_ = ProgressBar(n_datasets, "calibration") if bar else None
        pending = list(range(n_datasets))
        if pool.warm_first and len(pending) > 1:
            replicates.append(
                pool.executor.submit(run_replicate, study, design, task_settings, pending.pop(0)).result()
            )
            if bar_:
                bar_.step()
        futures = [pool.executor.submit(run_replicate, study, design, task_settings, i) for i in pending]
        try:
            for f in as_completed(futures):
                replicates.append(f.result())
                if bar_:
                    bar_.step()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        pool_text, n_workers = pool.description, pool.workers
    replicates.sort(key=lambda r: r.index)

    unconverged = [r.index for r in replicates if not all(r.converged)]
    if unconverged and not allow_unconverged:
        raise ConvergenceError(
            f"{len(unconverged)} of {n_datasets} simulated data sets had a fit that failed the convergence gate after "
            f"one retry (data sets {unconverged[:10]}{' ...' if len(unconverged) > 10 else ''}); nothing was written. "
            "Leaving them out would bias the calibration: try more --tune/--draws, or pass --allow-unconverged to keep "
            "them (flagged)."
        )
    true = np.array([r.true for r in replicates])
    post = np.stack([r.posterior(prior) for r in replicates])
    checks = calibration_checks(true, post, prior, n_bins)
    for j, m in enumerate(checks["mean_posterior"]):
        m["hypothesis"] = hyps[j]
    data = {
        "study": study.name,
        "hypotheses": hyps,
        "prior_probability": dict(zip(hyps, prior.tolist(), strict=True)),
        "n_datasets": n_datasets,
        "n_events": len(design),
        "design": design_text,
        "settings": task_settings.to_dict(),
        "pool": {"description": pool_text, "workers": n_workers},
        "converged": not unconverged,
        "n_unconverged": len(unconverged),
        "calibration": checks,
        "consistent": checks["consistent"],
        "design_analysis": design_analysis(true, post, hyps),
        "replicates": [
            {
                "index": r.index,
                "true": hyps[r.true],
                "posterior_probability": dict(zip(hyps, r.posterior(prior).tolist(), strict=True)),
                "log_marginal_likelihood": dict(zip(hyps, r.log_ml, strict=True)),
                "log_marginal_likelihood_se": dict(zip(hyps, r.log_ml_se, strict=True)),
                "n_cooperative": r.n_cooperative,
                "converged": all(r.converged),
                "problems": list(r.problems),
                "seconds": r.seconds,
                "worker": r.worker,
            }
            for r in replicates
        ],
        "timings": {"total_s": time.perf_counter() - t0},
    }
    if unconverged:
        data["warning"] = f"UNRELIABLE: {len(unconverged)} data set(s) had a fit that failed the convergence gate"
    if write:
        root = runs_root or study.runs_path or default_root()
        try:
            path = latest_run(root, study.name) / CALIBRATION
        except RunStoreError:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            path = Path(root) / study.name / "calibration" / f"{stamp}-{CALIBRATION}"
            path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, dumps(data) + "\n")
        data["written"] = str(path)
    return CalibrationResult(data)


def render(result: CalibrationResult) -> str:
    d = result.to_dict()
    c = d["calibration"]
    lines = [
        f"Calibration of study '{d['study']}': {d['n_datasets']} simulated data sets of {d['n_events']} events "
        f"({d['pool']['description']}).",
        "",
        f"Data-averaged posterior (exact calibration: equal to the prior, within the {c['band_level']:.0%} band):",
    ]
    for m in c["mean_posterior"]:
        lines.append(
            f"  {m['hypothesis']:<20} prior {m['prior']:.3f}  mean posterior {m['mean_posterior']:.3f} ± {m['se']:.3f}  "
            f"[{m['band_low']:.3f}, {m['band_high']:.3f}]  {'ok' if m['within'] else 'OUTSIDE'}"
        )
    lines += ["", "Calibration (among data sets where the tool says P(H) = p, H is true a fraction p of the time):"]
    for b in c["bins"]:
        if not b["n"]:
            lines.append(f"  P in [{b['low']:.1f}, {b['high']:.1f}): no data sets")
            continue
        lines.append(
            f"  P in [{b['low']:.1f}, {b['high']:.1f}): n {b['n']:>4}  said {b['mean_predicted']:.2f}  true "
            f"{b['observed']:.2f}  band [{b['band_low']:.2f}, {b['band_high']:.2f}]  {'ok' if b['within'] else 'OUTSIDE'}"
        )
    br = c["brier"]
    lines += [
        f"Brier check: {br['statistic']:+.4f} ± {br['se']:.4f} (z {br['z']:+.2f}; {br['meaning']})",
        "",
        "Consistent with exact calibration." if d["consistent"] else "NOT consistent with exact calibration.",
    ]
    da = d["design_analysis"]
    lines += [
        "",
        f"Design analysis at {d['n_events']} events: the true hypothesis gets the most probability in "
        f"{da['picks_true']:.0%} of data sets; decisive (P >= {da['decisive_threshold']}) in {da['decisive']:.0%}, "
        f"misleading (a false one >= {da['decisive_threshold']}) in {da['misleading']:.0%}.",
    ]
    for h, x in da["by_truth"].items():
        if x["n"]:
            lines.append(
                f"  when '{h}' is true ({x['n']}): picked {x['picks_true']:.0%}, decisive {x['decisive']:.0%}, "
                f"mean P {x['mean_posterior_of_true']:.2f}"
            )
    if d.get("warning"):
        lines += ["", "WARNING: " + d["warning"]]
    if d.get("written"):
        lines += ["", f"Written to {d['written']}"]
    return "\n".join(lines)
