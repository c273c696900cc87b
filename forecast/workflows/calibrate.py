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

A verdict needs enough data sets: below ``MIN_DATASETS`` the checks are shown but the answer is
"too few data sets to judge". With every verdict comes the power of the check at that number of
data sets, computed from the Monte Carlo errors of the checks themselves: the smallest
miscalibration, in probability points, that it would detect with probability ``POWER`` at the
band level (for a normal test statistic, a true shift of (z_band + z_power) standard errors).

The data sets are independent, so they are fanned out over worker processes (or a Dask
cluster) through ``forecast.fit.pool.open_pool``; each data set gets the model `forecast update`
would build for it (its own centring), compiled once per process and structure and refitted with
new data (``StudyModel.fit(..., cells=...)``). A line per finished data set, with an estimate of
the time left, goes to ``progress``.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from concurrent.futures import as_completed
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import softmax

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations, reliability_weight
from forecast.errors import ConvergenceError, InputError, RunStoreError
from forecast.fit.hypothesis import fit_hypothesis
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.model.predictive import one_prior_draw, simulate_outcomes
from forecast.runs.layout import CALIBRATION
from forecast.runs.store import default_root, preflight, write_json
from forecast.runs.stored import StoredRun
from forecast.settings import Progress, seed_sequence
from forecast.spec.study import Study, load_study
from forecast.workflows.simulate import study_design, uniform_design

BAND_LEVEL = 0.99
POWER = 0.8  # the power stated with every verdict
MIN_DATASETS = 20  # fewer data sets: "too few data sets to judge"
DECISIVE = 0.9
DEFAULT_BINS = 5
NO_RUN_FOLDER = "calibration"  # under the study's run folder, when no run matches the current inputs
MIN_FREE_BYTES = 1024 * 1024  # calibration.json is ~1 KB per data set
CONSISTENT = "consistent with exact calibration"
NOT_CONSISTENT = "not consistent with exact calibration"
TOO_FEW = "too few data sets to judge"


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


def run_replicate(study: Study, design: pd.DataFrame, settings: SamplerSettings, index: int) -> Replicate:
    """Worker entry point: simulate data set ``index`` and run the full update on it.

    The model is the one `forecast update` would build for these data (``StudyModel`` is cheap;
    its compiled code is shared by every model of the same structure in the process).
    """
    t0 = time.perf_counter()
    true, table = simulate_replicate(study, design, settings.seed, index)
    cells = cell_data(table, study)
    model = StudyModel(study, cells)
    fit_settings = replace(settings, seed=int(replicate_seed(settings.seed, index).generate_state(1)[0]))
    log_ml, se, ok, problems = [], [], [], []
    for h in study.hypotheses:
        judged = fit_hypothesis(model, h, fit_settings, cells=cells, with_loo=False)
        log_ml.append(float(judged.bridge.log_ml))
        se.append(float(judged.bridge.se))
        ok.append(bool(judged.converged))
        problems += [f"{h.id}: {p}" for p in judged.fit.diagnostics.problems]
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


# --- records ------------------------------------------------------------------------------------------


def _plain(value: object) -> object:
    """Records as plain dicts and tuples as lists, in field order (numbers untouched)."""
    if is_dataclass(value) and not isinstance(value, type):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Record:
    _optional: tuple[str, ...] = ()  # fields left out of the dict while they are None

    def to_dict(self) -> dict:
        return {
            f.name: _plain(getattr(self, f.name))
            for f in fields(self)
            if not (f.name in self._optional and getattr(self, f.name) is None)
        }


@dataclass(frozen=True)
class MeanPosteriorCheck(_Record):
    """The data-averaged posterior of one hypothesis against its prior probability."""

    prior: float
    mean_posterior: float
    se: float
    estimator: str
    plain_mean: float
    plain_se: float
    band_low: float  # the band exact calibration allows, clipped to [0, 1]
    band_high: float
    z: float
    within: bool
    fraction_true: float
    hypothesis: str
    detectable: float  # the smallest shift of the average it detects with probability POWER


@dataclass(frozen=True)
class BinCheck(_Record):
    """One bin of stated probabilities: how often the hypothesis was true there."""

    _optional = ("mean_predicted", "observed", "band_low", "band_high", "within", "detectable")

    low: float
    high: float
    n: int
    mean_predicted: float | None = None  # the rest is None for an empty bin
    observed: float | None = None
    band_low: float | None = None  # clipped to [0, 1]
    band_high: float | None = None
    within: bool | None = None
    detectable: float | None = None  # the smallest gap it detects with probability POWER


@dataclass(frozen=True)
class BrierCheck(_Record):
    statistic: float
    se: float
    z: float
    within: bool
    meaning: str


@dataclass(frozen=True)
class Power(_Record):
    """What the checks could detect at this number of data sets (probabilities, not points)."""

    probability: float  # POWER
    band_level: float
    n_datasets: int
    mean_posterior: float  # largest over hypotheses of the shift of the average posterior detected
    bins: float | None  # smallest over non-empty bins of the gap detected (None: no bin with spread)


@dataclass(frozen=True)
class CalibrationChecks(_Record):
    band_level: float
    mean_posterior: tuple[MeanPosteriorCheck, ...]
    bins: tuple[BinCheck, ...]
    brier: BrierCheck
    consistent: bool | None  # None: too few data sets to judge
    min_datasets: int
    verdict: str  # CONSISTENT, NOT_CONSISTENT or TOO_FEW
    power: Power


@dataclass(frozen=True)
class TruthAnalysis(_Record):
    n: int
    picks_true: float | None
    decisive: float | None
    mean_posterior_of_true: float | None


@dataclass(frozen=True)
class DesignAnalysis(_Record):
    picks_true: float
    decisive: float
    misleading: float
    decisive_threshold: float
    mean_posterior_of_true: float
    by_truth: dict[str, TruthAnalysis]


@dataclass(frozen=True)
class ReplicateResult(_Record):
    index: int
    true: str
    posterior_probability: dict[str, float]
    log_marginal_likelihood: dict[str, float]
    log_marginal_likelihood_se: dict[str, float]
    n_cooperative: int
    converged: bool
    problems: tuple[str, ...]
    seconds: float
    worker: str


@dataclass(frozen=True)
class PoolInfo(_Record):
    description: str
    workers: int


@dataclass(frozen=True)
class CalibrationResult(_Record):
    """What `forecast calibrate` found, and where it was written."""

    _optional = ("warning", "written", "note")

    study: str
    hypotheses: tuple[str, ...]
    prior_probability: dict[str, float]
    n_datasets: int
    n_events: int
    design: str
    settings: dict
    pool: PoolInfo
    converged: bool
    n_unconverged: int
    calibration: CalibrationChecks
    consistent: bool | None  # None: too few data sets to judge
    design_analysis: DesignAnalysis
    replicates: tuple[ReplicateResult, ...]
    timings: dict[str, float]
    warning: str | None = None
    written: str | None = None
    run_dir: str | None = None  # the run calibration.json was added to (None: no run matched)
    note: str | None = None  # why it is not in a run

    @property
    def verdict(self) -> str:
        return self.calibration.verdict


# --- the checks (pure functions of the replicates) --------------------------------------------------


def detectable_shift(se: float, band_level: float = BAND_LEVEL, power: float = POWER) -> float:
    """The true shift a two-sided z-test at ``band_level`` detects with probability ``power``.

    With standard error ``se``: (z_band + z_power) * se; the far tail's chance is negligible.
    """
    return float((stats.norm.ppf(0.5 + band_level / 2) + stats.norm.ppf(power)) * se)


def calibration_checks(
    true: np.ndarray,
    post: np.ndarray,
    prior: np.ndarray,
    n_bins: int = DEFAULT_BINS,
    *,
    hypotheses: list[str] | None = None,
    min_datasets: int = MIN_DATASETS,
) -> CalibrationChecks:
    """Data-averaged posterior, binned calibration and the Brier check, with their MC bands.

    ``true``: (K,) index of the true hypothesis per data set; ``post``: (K, H) posterior
    probabilities; ``prior``: (H,). Bands are two-sided at ``BAND_LEVEL`` and clipped to [0, 1];
    below ``min_datasets`` data sets there is no verdict (``consistent`` None).
    """
    true, post, prior = np.asarray(true), np.asarray(post, dtype=float), np.asarray(prior, dtype=float)
    k, n_h = post.shape
    names = hypotheses or [str(j) for j in range(n_h)]
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
            MeanPosteriorCheck(
                prior=float(prior[j]),
                mean_posterior=m,
                se=se,
                estimator="stratified by the true hypothesis" if stratified else "plain average",
                plain_mean=plain,
                plain_se=plain_se,
                band_low=float(max(prior[j] - z * se, 0.0)),
                band_high=float(min(prior[j] + z * se, 1.0)),
                z=float(zj),
                within=bool(abs(zj) <= z),
                fraction_true=float(onehot[:, j].mean()),
                hypothesis=names[j],
                detectable=detectable_shift(se),
            )
        )

    p, o = post.ravel(), onehot.ravel()
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        sel = which == b
        n = int(sel.sum())
        if n == 0:
            bins.append(BinCheck(low=float(edges[b]), high=float(edges[b + 1]), n=0))
            continue
        pb, ob = p[sel], o[sel]
        sd = float(np.sqrt((pb * (1 - pb)).sum()) / n)
        lo, hi = float(pb.mean() - z * sd), float(pb.mean() + z * sd)
        bins.append(
            BinCheck(
                low=float(edges[b]),
                high=float(edges[b + 1]),
                n=n,
                mean_predicted=float(pb.mean()),
                observed=float(ob.mean()),
                band_low=max(lo, 0.0),
                band_high=min(hi, 1.0),
                # a bin whose probabilities are all 0 or 1 has no spread: then it must match exactly
                within=bool(lo - 1e-9 <= ob.mean() <= hi + 1e-9),
                detectable=detectable_shift(sd),
            )
        )

    d = ((onehot - post) ** 2).sum(axis=1) - (post * (1 - post)).sum(axis=1)
    d_se = float(d.std(ddof=1) / np.sqrt(k)) if k > 1 else float("nan")
    d_z = float(d.mean() / d_se) if d_se > 0 else 0.0
    brier = BrierCheck(
        statistic=float(d.mean()),
        se=d_se,
        z=d_z,
        within=bool(abs(d_z) <= z),
        meaning="0 if calibrated; > 0 over-confident, < 0 under-confident",
    )
    passed = all(m.within for m in mean_post) and all(b.within is not False for b in bins) and brier.within
    judged = k >= min_datasets
    spread = [b.detectable for b in bins if b.n and b.detectable > 0]
    return CalibrationChecks(
        band_level=BAND_LEVEL,
        mean_posterior=tuple(mean_post),
        bins=tuple(bins),
        brier=brier,
        consistent=bool(passed) if judged else None,
        min_datasets=min_datasets,
        verdict=(CONSISTENT if passed else NOT_CONSISTENT) if judged else TOO_FEW,
        power=Power(
            probability=POWER,
            band_level=BAND_LEVEL,
            n_datasets=int(k),
            mean_posterior=float(max(m.detectable for m in mean_post)),
            bins=float(min(spread)) if spread else None,
        ),
    )


def design_analysis(
    true: np.ndarray, post: np.ndarray, hypotheses: list[str], decisive: float = DECISIVE
) -> DesignAnalysis:
    """How often the tool would pick the true hypothesis, be decisive, or mislead."""
    true, post = np.asarray(true), np.asarray(post, dtype=float)
    picked = post.argmax(axis=1)
    p_true = post[np.arange(len(true)), true]
    wrong = post.copy()
    wrong[np.arange(len(true)), true] = 0
    by_truth = {}
    for j, h in enumerate(hypotheses):
        sel = true == j
        by_truth[h] = TruthAnalysis(
            n=int(sel.sum()),
            picks_true=float((picked[sel] == j).mean()) if sel.any() else None,
            decisive=float((p_true[sel] >= decisive).mean()) if sel.any() else None,
            mean_posterior_of_true=float(p_true[sel].mean()) if sel.any() else None,
        )
    return DesignAnalysis(
        picks_true=float((picked == true).mean()),
        decisive=float((p_true >= decisive).mean()),
        misleading=float((wrong.max(axis=1) >= decisive).mean()),
        decisive_threshold=decisive,
        mean_posterior_of_true=float(p_true.mean()),
        by_truth=by_truth,
    )


# --- the command ------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class _Clock:
    """One progress line per finished data set: how many are done and about how long is left."""

    def __init__(self, total: int, say: Progress):
        self.total, self.say, self.done = total, say, 0
        self.t0 = time.perf_counter()

    def step(self, r: Replicate, hypotheses: list[str]) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.t0
        left = elapsed / self.done * (self.total - self.done)
        flag = "" if all(r.converged) else "; a fit FAILED its checks"
        tail = f"about {_duration(left)} left" if self.done < self.total else "all done"
        self.say(
            f"calibration: {self.done}/{self.total} data sets done (data set {r.index}: true '{hypotheses[r.true]}', "
            f"{r.seconds:.1f} s{flag}); {_duration(elapsed)} so far, {tail}"
        )


def _fan_out(study, design, settings, n_datasets, pool, clock: _Clock) -> list[Replicate]:
    """Every data set on ``pool``, a progress line as each finishes (in-process: one at a time)."""
    hyps = [h.id for h in study.hypotheses]
    replicates: list[Replicate] = []

    def collect(r: Replicate) -> None:
        replicates.append(r)
        clock.step(r, hyps)

    pending = list(range(n_datasets))
    if pool.kind == "inline":
        for i in pending:
            collect(run_replicate(study, design, settings, i))
        return replicates
    if pool.warm_first and len(pending) > 1:
        collect(pool.executor.submit(run_replicate, study, design, settings, pending.pop(0)).result())
    futures = [pool.executor.submit(run_replicate, study, design, settings, i) for i in pending]
    try:
        for f in as_completed(futures):
            collect(f.result())
    except BaseException:
        for f in futures:
            f.cancel()
        raise
    return replicates


def _destination(study: Study, root: Path, observations_sha256: str | None) -> tuple[StoredRun | None, str | None]:
    """The run calibration.json goes into (the study's latest run, if it matches the current
    inputs), or None and why not."""
    try:
        return StoredRun.find(study=study, runs_root=root).check_inputs(study, observations_sha256), None
    except RunStoreError as e:
        return None, str(e)


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
    today: dt.date | None = None,
) -> CalibrationResult:
    """Simulation-based calibration of the study's hypothesis test; see the module docstring.

    With ``write``, calibration.json goes into the study's latest run when that run matches the
    current inputs (``StoredRun.check_inputs``; with ``n`` the observations play no part), and
    otherwise, saying so, into ``<runs root>/<study>/calibration/``.
    """
    from forecast.fit.pool import open_pool

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
    obs = load_observations(study, today=today) if n is None else None
    if obs is not None:
        design = study_design(study, obs.table)
        design_text = f"the study's {len(design)} counted observations (same counterparts, domains, dates, grades)"
    else:
        design = uniform_design(study, n, np.random.default_rng([settings.seed, 5]), reliability, today)
        design_text = f"{n} events uniform over counterparts, domains and quarters, grade {reliability}"
    hyps = [h.id for h in study.hypotheses]
    prior = np.array([h.prior_probability for h in study.hypotheses])
    run, why_not = None, None
    root = Path(runs_root or study.runs_path or default_root())
    if write:  # before any fitting: where the result will go, and that it can be written there
        preflight(root, study.name, need_bytes=MIN_FREE_BYTES)
        run, why_not = _destination(study, root, obs.sha256 if obs is not None else None)
    say(f"{study.name}: {n_datasets} simulated data sets of {len(design)} events, {len(hyps)} hypotheses each")
    if n_datasets < MIN_DATASETS:
        say(f"(fewer than {MIN_DATASETS} data sets: the checks are shown, but with no verdict)")

    with open_pool(scheduler, workers, n_tasks=n_datasets, cores=settings.cores) as pool:
        say(f"running on {pool.description}")
        task_settings = replace(settings, cores=pool.cores_per_fit)
        replicates = _fan_out(study, design, task_settings, n_datasets, pool, _Clock(n_datasets, say))
        pool_info = PoolInfo(description=pool.description, workers=pool.workers)
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
    checks = calibration_checks(true, post, prior, n_bins, hypotheses=hyps)
    result = CalibrationResult(
        study=study.name,
        hypotheses=tuple(hyps),
        prior_probability=dict(zip(hyps, prior.tolist(), strict=True)),
        n_datasets=n_datasets,
        n_events=len(design),
        design=design_text,
        settings=task_settings.to_dict(),
        pool=pool_info,
        converged=not unconverged,
        n_unconverged=len(unconverged),
        calibration=checks,
        consistent=checks.consistent,
        design_analysis=design_analysis(true, post, hyps),
        replicates=tuple(
            ReplicateResult(
                index=r.index,
                true=hyps[r.true],
                posterior_probability=dict(zip(hyps, r.posterior(prior).tolist(), strict=True)),
                log_marginal_likelihood=dict(zip(hyps, r.log_ml, strict=True)),
                log_marginal_likelihood_se=dict(zip(hyps, r.log_ml_se, strict=True)),
                n_cooperative=r.n_cooperative,
                converged=all(r.converged),
                problems=r.problems,
                seconds=r.seconds,
                worker=r.worker,
            )
            for r in replicates
        ),
        timings={"total_s": time.perf_counter() - t0},
        warning=(
            f"UNRELIABLE: {len(unconverged)} data set(s) had a fit that failed the convergence gate"
            if unconverged
            else None
        ),
    )
    if not write:
        return result
    if run is not None:
        result = replace(result, run_dir=str(run.path))
        return replace(result, written=str(run.write_json(CALIBRATION, result)))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = root / study.name / NO_RUN_FOLDER / f"{stamp}-{CALIBRATION}"
    note = f"no run to add it to ({why_not}); written outside any run instead"
    path.parent.mkdir(parents=True, exist_ok=True)
    result = replace(result, note=note)
    return replace(result, written=str(write_json(path, result)))
