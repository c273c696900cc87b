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
from forecast.workflows.calibrate.constraints import (
    CONSTRAINT_METHOD,
    ConstraintReplicate,
    ConstraintSetup,
    constraint_setup,
    rejection_info,
    run_constraint_replicate,
)
from forecast.workflows.calibrate.records import (
    CalibrationResult,
    ConstraintCalibration,
    ConstraintReplicateResult,
    PoolInfo,
    ReplicateResult,
)
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

    def __init__(self, total: int, say: Progress, what: str = "calibration"):
        self.total, self.say, self.done, self.what = total, say, 0, what
        self.t0 = time.perf_counter()

    def step(self, r: Replicate | ConstraintReplicate, hypotheses: list[str]) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.t0
        left = elapsed / self.done * (self.total - self.done)
        flag = "" if all(r.converged) else "; a fit FAILED its checks"
        tail = f"about {_duration(left)} left" if self.done < self.total else "all done"
        self.say(
            f"{self.what}: {self.done}/{self.total} data sets done (data set {r.index}: true '{hypotheses[r.true]}', "
            f"{r.seconds:.1f} s{flag}); {_duration(elapsed)} so far, {tail}"
        )


def _fan_out(task, args: tuple, hyps: list[str], n_datasets: int, pool, clock: _Clock) -> list:
    """``task(*args, index)`` for every data set on ``pool``, a progress line as each finishes
    (in-process: one at a time). ``args`` end with the settings; extra arguments follow the index."""
    head, tail = args[:3], args[3:]
    replicates: list = []

    def collect(r) -> None:
        replicates.append(r)
        clock.step(r, hyps)

    pending = list(range(n_datasets))
    if pool.kind == "inline":
        for i in pending:
            collect(task(*head, i, *tail))
        return replicates
    if pool.warm_first and len(pending) > 1:
        collect(pool.executor.submit(task, *head, pending.pop(0), *tail).result())
    futures = [pool.executor.submit(task, *head, i, *tail) for i in pending]
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


COMPARISONS = ("prior", "constraints", "both")


def comparisons_of(study: Study, comparison: str | None) -> tuple[str, ...]:
    """Which comparisons to calibrate: by default every one the study has ("prior" for its
    prior-specified hypotheses, "constraints" for its constraint hypotheses)."""
    has = tuple(
        c
        for c, present in (("prior", len(study.hypotheses) >= 2), ("constraints", study.constraints is not None))
        if present
    )
    if comparison is None:
        if not has:
            raise InputError(
                f"{study.path}: calibration needs at least two hypotheses to compare (prior-specified "
                "[[hypotheses]], or [[constraint_hypotheses]] on an [encompassing] prior)"
            )
        return has
    if comparison not in COMPARISONS:
        raise InputError(f"--comparison: expected one of {', '.join(COMPARISONS)}, got {comparison!r}")
    wanted = ("prior", "constraints") if comparison == "both" else (comparison,)
    for c in wanted:
        if c not in has:
            raise InputError(
                "calibration needs at least two hypotheses to compare"
                if c == "prior"
                else f"{study.path}: --comparison {comparison}: the study states no [[constraint_hypotheses]]"
            )
    return wanted


def _combined(values: list[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    if any(v is None for v in values):
        return None
    return True


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
    comparison: str | None = None,
    prior_draws: int | None = None,
) -> CalibrationResult:
    """Simulation-based calibration of the study's hypothesis test; see the module docstring.

    ``comparison``: "prior" (the prior-specified hypotheses), "constraints" (the constraint
    hypotheses: forecast.workflows.calibrate.constraints) or "both"; by default every comparison
    the study has, each calibrated on its own data sets and reported separately. ``prior_draws``:
    the encompassing prior draws for the regions' prior masses (default: the study's, as
    `forecast update` uses).

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
    which = comparisons_of(study, comparison)
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
    setup = None
    if "constraints" in which:  # before any fitting: the regions' prior masses, and refusals
        say("constraint hypotheses: estimating the regions' prior masses once (encompassing prior draws)")
        setup = constraint_setup(study, settings.seed, prior_draws=prior_draws, progress=say)
    counts = []
    if "prior" in which:
        counts.append(f"{len(hyps)} prior-specified hypotheses")
    if setup is not None:
        counts.append(f"{len(setup.ids)} constraint hypotheses (one encompassing fit)")
    say(f"{study.name}: {n_datasets} simulated data sets of {len(design)} events for each of: {'; '.join(counts)}")
    if n_datasets < MIN_DATASETS:
        say(f"(fewer than {MIN_DATASETS} data sets: the checks are shown, but with no verdict)")

    replicates: list[Replicate] = []
    c_replicates: list[ConstraintReplicate] = []
    timings: dict[str, float] = {}
    n_tasks = n_datasets * len(which)
    with open_pool(scheduler, workers, n_tasks=n_tasks, cores=settings.cores) as pool:
        say(f"running on {pool.description}")
        task_settings = replace(settings, cores=pool.cores_per_fit)
        if "prior" in which:
            t = time.perf_counter()
            replicates = _fan_out(
                run_replicate, (study, design, task_settings), hyps, n_datasets, pool, _Clock(n_datasets, say)
            )
            timings["prior_s"] = time.perf_counter() - t
        if setup is not None:
            t = time.perf_counter()
            clock = _Clock(n_datasets, say, "constraint calibration")
            args = (study, design, task_settings, setup)
            c_replicates = _fan_out(run_constraint_replicate, args, list(setup.ids), n_datasets, pool, clock)
            timings["constraints_s"] = time.perf_counter() - t
        pool_info = PoolInfo(description=pool.description, workers=pool.workers)
    replicates.sort(key=lambda r: r.index)
    c_replicates.sort(key=lambda r: r.index)

    unconverged = [r.index for r in replicates if not all(r.converged)]
    c_unconverged = [r.index for r in c_replicates if not all(r.converged)]
    if (unconverged or c_unconverged) and not allow_unconverged:
        parts = []
        if unconverged:
            parts.append(f"{len(unconverged)} of {n_datasets} simulated data sets had a fit{_listed(unconverged)}")
        if c_unconverged:
            parts.append(
                f"{len(c_unconverged)} of {n_datasets} simulated data sets of the constraint hypotheses had an "
                f"encompassing fit{_listed(c_unconverged)}"
            )
        raise ConvergenceError(
            f"{' and '.join(parts)} that failed the convergence gate after its retry; nothing was written. "
            "Leaving them out would bias the calibration: try more --tune/--draws, or pass --allow-unconverged to keep "
            "them (flagged)."
        )
    prior_fields: dict = {}
    if "prior" in which:
        true = np.array([r.true for r in replicates])
        post = np.stack([r.posterior(prior) for r in replicates])
        checks = calibration_checks(true, post, prior, n_bins, hypotheses=hyps)
        prior_fields = dict(
            hypotheses=tuple(hyps),
            prior_probability=dict(zip(hyps, prior.tolist(), strict=True)),
            calibration=checks,
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
        )
    constraints = (
        constraint_calibration(setup, c_replicates, n_bins, timings.get("constraints_s", 0.0))
        if setup is not None
        else None
    )
    verdicts = [prior_fields["calibration"].consistent] if prior_fields else []
    if constraints is not None:
        verdicts.append(constraints.consistent)
    warnings = []
    if unconverged:
        warnings.append(f"{len(unconverged)} data set(s) had a fit that failed the convergence gate")
    if c_unconverged:
        warnings.append(f"{len(c_unconverged)} constraint data set(s) had an encompassing fit that failed the gate")
    timings["total_s"] = time.perf_counter() - t0
    result = CalibrationResult(
        study=study.name,
        n_datasets=n_datasets,
        n_events=len(design),
        design=design_text,
        settings=task_settings.to_dict(),
        pool=pool_info,
        converged=not unconverged and not c_unconverged,
        n_unconverged=len(unconverged) + len(c_unconverged),
        consistent=_combined(verdicts),
        timings=timings,
        warning="UNRELIABLE: " + "; ".join(warnings) if warnings else None,
        comparisons=which,
        constraints=constraints,
        **prior_fields,
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


def _listed(indices: list[int]) -> str:
    return f" (data sets {indices[:10]}{' ...' if len(indices) > 10 else ''})"


def constraint_calibration(
    setup: ConstraintSetup, replicates: list[ConstraintReplicate], n_bins: int, seconds: float
) -> ConstraintCalibration:
    """The checks and design analysis of the constraint comparison's data sets."""
    ids = list(setup.ids)
    true = np.array([r.true for r in replicates])
    post = np.stack([r.posterior() for r in replicates])
    checks = calibration_checks(true, post, setup.prior, n_bins, hypotheses=ids)
    candidates: dict[str, list[int]] = {}
    for r in replicates:
        candidates.setdefault(ids[r.true], []).append(r.candidates)
    unconverged = [r.index for r in replicates if not all(r.converged)]
    return ConstraintCalibration(
        hypotheses=tuple(ids),
        prior_probability=dict(zip(ids, setup.prior.tolist(), strict=True)),
        prior_masses={h: setup.masses[h].to_dict() for h in ids},
        prior_draws=setup.prior_draws,
        rejection=rejection_info(setup, candidates),
        n_datasets=len(replicates),
        converged=not unconverged,
        n_unconverged=len(unconverged),
        calibration=checks,
        consistent=checks.consistent,
        design_analysis=design_analysis(true, post, ids),
        replicates=tuple(
            ConstraintReplicateResult(
                index=r.index,
                true=ids[r.true],
                posterior_probability=dict(zip(ids, r.probabilities, strict=True)),
                log_bayes_factor=dict(zip(ids, r.log_bf, strict=True)),
                log_bayes_factor_se=dict(zip(ids, r.log_bf_se, strict=True)),
                bound=dict(zip(ids, r.bound, strict=True)),
                posterior_mass=dict(zip(ids, r.posterior_mass, strict=True)),
                n_cooperative=r.n_cooperative,
                candidates=r.candidates,
                converged=all(r.converged),
                problems=r.problems,
                seconds=r.seconds,
                worker=r.worker,
            )
            for r in replicates
        ),
        timings={"prior_masses_s": setup.seconds, "data_sets_s": seconds},
        method=CONSTRAINT_METHOD,
        warning=(
            f"UNRELIABLE: {len(unconverged)} data set(s) had an encompassing fit that failed the convergence gate"
            if unconverged
            else None
        ),
    )
