"""`forecast calibrate` from start to end: the data sets fanned out, the checks, ``calibration.json``.

A progress line per finished data set; the result goes into the study's latest run when it
matches the current inputs, and otherwise, saying so, beside the runs.
"""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np

from forecast.data.observations import load_observations
from forecast.errors import ConvergenceError, InputError, RunStoreError
from forecast.fit.pool import open_pool
from forecast.fit.sampler import SamplerSettings
from forecast.runs.layout import CALIBRATION
from forecast.runs.layout import CALIBRATION_DIR as NO_RUN_FOLDER  # noqa: E402  (when no run matches)
from forecast.runs.store import default_root, preflight, write_json
from forecast.runs.stored import StoredRun
from forecast.settings import Progress
from forecast.spec.study import Study, load_study
from forecast.workflows.calibrate.checks import DEFAULT_BINS, MIN_DATASETS, calibration_checks, design_analysis
from forecast.workflows.calibrate.records import CalibrationResult, PoolInfo, ReplicateResult
from forecast.workflows.calibrate.replicates import Replicate, run_replicate
from forecast.workflows.simulate import study_design, uniform_design

MIN_FREE_BYTES = 1024 * 1024  # calibration.json is ~1 KB per data set


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
