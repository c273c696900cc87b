"""`forecast sensitivity` from start to end: the base run, reweighting, refits, rows, the record.

Each step is its own function; ``run_sensitivity`` calls them in order:

1. ``base_run``: the study's latest run if it matches the current inputs (the one rule,
   ``StoredRun.check_inputs``); otherwise ``forecast update`` runs first, and says why.
2. ``load_base``: every hypothesis's posterior draws and support figures from that run.
3. ``reweight_variants``: every variant's change of log marginal likelihood by PSIS.
4. ``refit_tasks`` and ``refit``: refits where Pareto k says reweighting is unreliable (or all).
5. ``variant_rows``: each variant's posterior probabilities (reweighted or refitted).
6. summaries (``record``), power-scaling and prior odds (``reweight``), then the record is
   written into the run (``sensitivity.json`` and, when the caller supplies ``plots``, the PNGs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from forecast.data.cells import CellData, cell_data
from forecast.data.observations import load_observations
from forecast.errors import ConvergenceError, InputError, RunStoreError, allowed_list
from forecast.fit.pool import FitTask, open_pool, register_model, run_fits
from forecast.fit.sampler import hypothesis_seed
from forecast.model.build import rv_name
from forecast.runs.layout import SENSITIVITY, SENSITIVITY_SCHEMA
from forecast.runs.store import default_root
from forecast.runs.stored import REFIT, StoredRun
from forecast.settings import Progress, SamplerSettings
from forecast.spec.constraints import require_prior_hypotheses
from forecast.spec.study import Hypothesis, Study, load_study
from forecast.stats.loo import posterior_probabilities
from forecast.workflows.sensitivity.grid import GridSpec, Variant, build_grid
from forecast.workflows.sensitivity.record import (
    UNRELIABLE,
    SensitivityResult,
    leader_verdict,
    odds_text,
    probability_ranges,
    tornado_rows,
)
from forecast.workflows.sensitivity.reweight import (
    PSENSE_THRESHOLD,
    Reweight,
    default_k_threshold,
    log_prior_ratio,
    power_scaling,
    prior_odds,
    psis_reweight,
)

# Draws the plots of a result (its ``to_dict()``): key -> (file name in the run, PNG bytes).
# Workflows sit below reports, so the CLI hands in forecast.reports.plots.sensitivity.plots.
Plots = Callable[[dict], Mapping[str, tuple[str, bytes]]]


# --------------------------------------------------------------------------------------------
# 1-2. The base run


def base_run(
    study: Study,
    study_path: str | Path,
    obs_sha256: str,
    root: Path,
    *,
    settings: SamplerSettings | None,
    allow_unconverged: bool,
    progress: Progress | None,
) -> tuple[StoredRun, str | None]:
    """The study's latest run if it matches the current inputs, else a new one from ``forecast update``.

    Returns the run and, when ``update`` had to run, why (also said through ``progress``).
    """
    try:
        return StoredRun.find(study=study, runs_root=root).check_inputs(study, obs_sha256), None
    except RunStoreError as e:  # no run, or not one of these inputs: say which, then fit them
        why = str(e)
    from forecast.workflows.update import run_update  # a workflow calling a workflow: kept at the call

    if progress:
        progress(f"running `forecast update` first: {why}")
    # Robustness is this command's own grid: the update it runs first need not compute it too.
    result = run_update(
        study_path, settings, runs_root=root, allow_unconverged=allow_unconverged, progress=progress, robustness=False
    )
    return StoredRun.open(Path(result.run_dir)), why


@dataclass
class BaseRun:
    """A run's posterior draws and support figures, in the study's hypothesis order.

    ``run`` is None when the draws are in memory rather than stored (update's robustness).
    """

    run: StoredRun | None
    settings: SamplerSettings
    ids: list[str]
    prior: np.ndarray
    log_ml: np.ndarray
    log_ml_se: np.ndarray
    posterior: dict[str, object]  # hypothesis id -> xarray.Dataset of its posterior draws
    converged: bool

    def draws(self, hid: str, study: Study) -> dict[tuple[str, str], np.ndarray]:
        post = self.posterior[hid]
        return {s: np.asarray(post[rv_name(*s)].values, dtype=float) for s in study.slots}


def load_base(run: StoredRun, study: Study) -> BaseRun:
    """Posterior draws and support figures of every hypothesis of ``study`` from ``run``."""
    summary = run.summary
    rows = {h["id"]: h for h in summary["hypotheses"]}
    ids = [h.id for h in study.hypotheses]
    missing = [h for h in ids if h not in rows]
    if missing:
        raise RunStoreError(f"{run.path}: the run has no results for {allowed_list(missing)}; {REFIT}")
    known = {k: v for k, v in summary["settings"].items() if k in SamplerSettings.__dataclass_fields__}
    return BaseRun(
        run=run,
        settings=SamplerSettings(**known),
        ids=ids,
        prior=np.array([h.prior_probability for h in study.hypotheses]),
        log_ml=np.array([rows[h]["log_marginal_likelihood"] for h in ids], dtype=float),
        log_ml_se=np.array([rows[h]["log_marginal_likelihood_se"] for h in ids], dtype=float),
        posterior={hid: run.open_posterior(hid) for hid in ids},
        converged=bool(summary.get("converged", True)),
    )


# --------------------------------------------------------------------------------------------
# 3-4. Reweighting and refits


def reweight_variants(variants: list[Variant], study: Study, base: BaseRun) -> dict[str, Reweight]:
    """Every variant (not the base) reweighted by its prior ratio over its hypothesis's draws."""
    hyp = {h.id: h for h in study.hypotheses}
    draws = {hid: base.draws(hid, study) for hid in base.ids}
    return {
        v.id: psis_reweight(log_prior_ratio(hyp[v.hypothesis].priors, v.priors, v.changed, draws[v.hypothesis]))
        for v in variants[1:]
    }


def refit_tasks(
    variants: list[Variant], study: Study, base: BaseRun, reweights: dict[str, Reweight], spec: GridSpec, k_max: float
) -> list:
    """The fits to run: variants whose Pareto k exceeds ``k_max`` (or all, and the base, with refit='all')."""

    hyp = {h.id: h for h in study.hypotheses}
    tasks = []
    for v in variants[1:]:
        if spec.refit == "all" or (spec.refit == "auto" and not reweights[v.id].pareto_k <= k_max):
            seed = hypothesis_seed(base.settings.seed, v.id)
            h = replace(hyp[v.hypothesis], priors=v.priors)
            tasks.append(FitTask(v.id, h, replace(base.settings, seed=seed), seed))
    if spec.refit == "all":
        for hid in base.ids:
            seed = hypothesis_seed(base.settings.seed, f"base/{hid}")
            tasks.append(FitTask(f"base/{hid}", hyp[hid], replace(base.settings, seed=seed), seed))
    return tasks


def refit(
    study: Study,
    cells: CellData,
    tasks: list,
    *,
    cores: int,
    auto: bool,
    scheduler: str | None,
    workers: int | None,
    allow_unconverged: bool,
    model,
    bar: bool,
    say: Progress,
):
    """Run the refits on a pool; the fan-out (None without tasks). Raises when the gate fails."""
    if not tasks:
        return None

    if model is not None:
        register_model(model)
    say(
        f"refitting {len(tasks)} fit(s) where importance reweighting is unreliable"
        if auto
        else f"refitting {len(tasks)} fit(s)"
    )
    with open_pool(scheduler, workers, len(tasks), cores) as pool:
        say(f"  on {pool.description}")
        fan = run_fits(study, cells, tasks, pool, bar=bar, label="refits")
    failed = [o for o in fan.outcomes if not o.converged]
    if failed and not allow_unconverged:
        raise ConvergenceError(
            "the convergence gate failed for refitted variant(s), so no sensitivity results were written:\n"
            + "\n".join(f"  - {o.key}: {'; '.join(o.diagnostics['problems'])}" for o in failed)
            + "\nRerun `forecast update` with more --tune/--draws, or pass --allow-unconverged."
        )
    return fan


# --------------------------------------------------------------------------------------------
# 5. Rows


def _probabilities(log_ml: np.ndarray, se: np.ndarray, prior: np.ndarray, ids: list[str]) -> tuple[dict, dict]:
    p, p_se = posterior_probabilities(log_ml, se, prior)
    return ({h: float(x) for h, x in zip(ids, p, strict=True)}, {h: float(x) for h, x in zip(ids, p_se, strict=True)})


def _describe_change(base: dict, variant: Variant) -> dict:
    return {
        f"{p}.{g}": {"from": base[(p, g)].describe(), "to": variant.priors[(p, g)].describe()}
        for p, g in variant.changed
    }


def base_row(base: BaseRun, refits: dict, refit_base: bool) -> dict:
    """The unperturbed row: the run's own figures (and, with refit='all', its refits beside them)."""
    ids, prior = base.ids, base.prior
    p, p_se = _probabilities(base.log_ml, base.log_ml_se, prior, ids)
    row = {
        "id": "base",
        "hypothesis": None,
        "target": "",
        "change": "base",
        "joint": False,
        "method": "base",
        "priors_changed": {},
        "log_marginal_likelihood": dict(zip(ids, base.log_ml.tolist(), strict=True)),
        "posterior_probabilities": p,
        "posterior_probabilities_se": p_se,
        "leader": max(p, key=p.get),
    }
    if refit_base:
        lm = np.array([refits[f"base/{h}"].log_ml for h in ids])
        lse = np.array([refits[f"base/{h}"].log_ml_se for h in ids])
        rp, rp_se = _probabilities(lm, lse, prior, ids)
        row["refit"] = {
            "log_marginal_likelihood": dict(zip(ids, lm.tolist(), strict=True)),
            "log_marginal_likelihood_se": dict(zip(ids, lse.tolist(), strict=True)),
            "posterior_probabilities": rp,
            "posterior_probabilities_se": rp_se,
            "diagnostics": {h: refits[f"base/{h}"].diagnostics for h in ids},
        }
    return row


def variant_row(v: Variant, hyp: Hypothesis, base: BaseRun, rw: Reweight, refitted, k_max: float) -> dict:
    """One variant's posterior probabilities: its hypothesis's log ML changed, the others' as in the run."""
    i = base.ids.index(v.hypothesis)
    lm, lse = base.log_ml.copy(), base.log_ml_se.copy()
    if refitted is not None:
        method = "refitted"
        lm[i], lse[i] = refitted.log_ml, refitted.log_ml_se
    else:
        method = "reweighted"
        lm[i], lse[i] = base.log_ml[i] + rw.delta_log_ml, math.hypot(base.log_ml_se[i], rw.se)
    p, p_se = _probabilities(lm, lse, base.prior, base.ids)
    row = {
        "id": v.id,
        "hypothesis": v.hypothesis,
        "target": v.target,
        "change": v.change,
        "joint": v.joint,
        "method": method,
        "priors_changed": _describe_change(hyp.priors, v),
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
    if refitted is not None:
        row["refit"] = refitted.to_dict()
    return row


# --------------------------------------------------------------------------------------------
# The whole analysis


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
    plots: Plots | None = None,
) -> SensitivityResult:
    """Run the three sensitivity analyses on the study's latest run (see forecast.workflows.sensitivity).

    Without a run that matches the current study and observations (``StoredRun.check_inputs``),
    ``forecast update`` runs first (with ``update_settings``); the result's ``ran_update`` says
    why. ``model``: a compiled StudyModel of the study to reuse for in-process refits. With
    ``write``, the record goes to ``sensitivity.json`` in the run, and the PNGs ``plots`` draws.
    """

    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    spec = spec or GridSpec()
    if scheduler is not None and "://" not in scheduler:
        raise InputError(f"--scheduler: expected an address like tcp://host:8786, got {scheduler!r}")
    study = load_study(study_path)
    require_prior_hypotheses(
        study,
        "forecast sensitivity",
        "it varies the prior-specified hypotheses' priors; the constraint comparison's robustness is in constraints.json",
    )
    variants = build_grid(study, spec)  # checks the spec before anything slow happens
    obs = load_observations(study)
    cells = cell_data(obs.table, study)
    root = Path(runs_root or study.runs_path or default_root())
    run, ran_update = base_run(
        study,
        study_path,
        obs.sha256,
        root,
        settings=update_settings,
        allow_unconverged=allow_unconverged,
        progress=progress,
    )
    say(f"sensitivity of '{study.name}' from run {run.path}")
    base = load_base(run, study)
    if not base.converged and not allow_unconverged:
        raise ConvergenceError(
            f"{run.path}: the base run failed its convergence checks, so sensitivity figures would be unreliable; "
            "rerun `forecast update` with more draws, or pass --allow-unconverged"
        )
    ids, prior = base.ids, base.prior
    hyp = {h.id: h for h in study.hypotheses}
    k_max = spec.pareto_k_threshold or default_k_threshold(base.settings.chains * base.settings.draws)

    t_rw = time.perf_counter()
    reweights = reweight_variants(variants, study, base)
    reweight_s = time.perf_counter() - t_rw

    t_rf = time.perf_counter()
    tasks = refit_tasks(variants, study, base, reweights, spec, k_max)
    fan = refit(
        study,
        cells,
        tasks,
        cores=base.settings.cores,
        auto=spec.refit == "auto",
        scheduler=scheduler,
        workers=workers,
        allow_unconverged=allow_unconverged,
        model=model,
        bar=bar and progress is not None,
        say=say,
    )
    refits = {o.key: o for o in fan.outcomes} if fan else {}
    refit_s = time.perf_counter() - t_rf

    rows = [base_row(base, refits, spec.refit == "all")]
    leader = rows[0]["leader"]
    rows += [variant_row(v, hyp[v.hypothesis], base, reweights[v.id], refits.get(v.id), k_max) for v in variants[1:]]

    odds = prior_odds(base.log_ml, prior, ids, base.log_ml_se)
    t_ps = time.perf_counter()
    psense = {h: power_scaling(study, cells, base.posterior[h], hyp[h]) for h in ids}
    psense_s = time.perf_counter() - t_ps

    converged = base.converged and all(o.converged for o in (fan.outcomes if fan else []))
    unreliable = [r["id"] for r in rows[1:] if not r["reliable"]]
    if not converged:
        warning = UNRELIABLE
    elif unreliable:
        warning = (
            f"{len(unreliable)} variant(s) have Pareto k above {k_max:.2f} and were not refitted (--refit none): "
            "their figures are unreliable"
        )
    else:
        warning = None
    result = SensitivityResult(
        schema_version=SENSITIVITY_SCHEMA,
        study=study.name,
        study_path=str(study.path),
        run_dir=str(run.path),
        converged=converged,
        grid=spec.to_dict() | {"pareto_k_threshold": k_max},
        sampler=base.settings.to_dict(),
        hypotheses=[{"id": h, "label": hyp[h].label, "prior_probability": float(prior[ids.index(h)])} for h in ids],
        base={
            "leader": leader,
            "posterior_probabilities": rows[0]["posterior_probabilities"],
            "posterior_probabilities_se": rows[0]["posterior_probabilities_se"],
            "log_marginal_likelihood": dict(zip(ids, base.log_ml.tolist(), strict=True)),
            "log_marginal_likelihood_se": dict(zip(ids, base.log_ml_se.tolist(), strict=True)),
        },
        variants=rows,
        ranges=probability_ranges(rows, ids),
        tornado=tornado_rows(rows, leader),
        verdict=leader_verdict(rows, leader, hyp, base.log_ml, base.log_ml_se, prior, ids),
        prior_odds=odds,
        prior_odds_text=odds_text(odds, leader, hyp),
        psense=psense,
        psense_flags=[
            {"hypothesis": h, "parameter": r["parameter"], "group": r["group"], "flag": r["flag"]}
            for h in ids
            for r in psense[h]
            if r["flag"]
        ],
        psense_threshold=PSENSE_THRESHOLD,
        scaleout={
            "pool": fan.pool if fan else None,
            "workers": fan.workers if fan else 0,
            "compiles": fan.compiles if fan else 0,
            "fits": len(tasks),
        },
        files={},
        unreliable_variants=unreliable,
        warning=warning,
        timings={
            "total_s": time.perf_counter() - t0,
            "reweight_s": reweight_s,
            "refit_s": refit_s,
            "psense_s": psense_s,
        },
        ran_update=ran_update,
    )
    if write:
        say("writing sensitivity results into the run directory")
        result = write_result(run, result, plots, t0)
    return result


def write_result(run: StoredRun, result: SensitivityResult, plots: Plots | None, t0: float) -> SensitivityResult:
    """The plots (if any) and then ``sensitivity.json`` into the run, each atomically; the final record."""
    files = {}
    if plots is not None:
        for key, (name, png) in plots(result.to_dict()).items():
            run.write_with(name, lambda tmp, png=png: tmp.write_bytes(png))
            files[key] = name
    result = replace(result, files=files, timings=result.timings | {"total_s": time.perf_counter() - t0})
    run.write_json(SENSITIVITY, result)
    return result


__all__ = [
    "BaseRun",
    "Plots",
    "base_run",
    "base_row",
    "load_base",
    "refit",
    "refit_tasks",
    "reweight_variants",
    "run_sensitivity",
    "variant_row",
    "write_result",
]
