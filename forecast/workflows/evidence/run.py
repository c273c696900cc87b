"""`forecast evidence` from start to end: read the run, estimate, refit, rank, write ``evidence.json``."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from forecast.errors import ConvergenceError, InputError, RunStoreError
from forecast.fit.sampler import StudyModel
from forecast.runs.layout import EVIDENCE, POINTWISE, POSTERIOR_DIR
from forecast.runs.store import preflight
from forecast.runs.stored import StoredRun
from forecast.settings import Progress
from forecast.spec.constraints import ENCOMPASSING_ID
from forecast.spec.study import load_study
from forecast.stats.loo import relative_ess
from forecast.workflows.evidence.constraints import NO_ENCOMPASSING_FIT, ConstraintEvidence, constraint_evidence
from forecast.workflows.evidence.context import RunContext, base_posterior, load_run
from forecast.workflows.evidence.records import (
    CorroboratedEvent,
    Corroboration,
    EvidenceResult,
    ObservationEvidence,
    QualityCheck,
)
from forecast.workflows.evidence.scenarios import estimate, finish, item_scenarios, quality_scenario, refit_unreliable
from forecast.workflows.evidence.statistics import diagnosticity, pattern_term_loglik, psis_weights

DEFAULT_SHIFT = 0.1
DEFAULT_MAX_REFITS = 10
MIN_FREE_BYTES = 4 * 1024 * 1024  # room checked before refits: evidence.json of a large study is a few MB
CORROBORATION_RULE = "each event counts once, through its report with the highest reliability weight"
UNRELIABLE_RUN = "UNRELIABLE: the run's fits failed their convergence checks"


def run_evidence(
    study_path: str | Path,
    *,
    runs_root: Path | None = None,
    run_dir: Path | None = None,
    shift: float = DEFAULT_SHIFT,
    reliability_below: float | None = None,
    refit: bool = True,
    max_refits: int = DEFAULT_MAX_REFITS,
    k_threshold: float | None = None,
    allow_unconverged: bool = False,
    write: bool = True,
    model: StudyModel | None = None,
    progress: Progress | None = None,
) -> EvidenceResult:
    """Diagnosticity, critical items, evidence quality and corroboration for a run of the study.

    ``run_dir``: a run directory (or a study's run folder); by default the study's latest run.
    The run must match the current study and observations (``StoredRun.check_inputs``).
    ``k_threshold`` overrides the Pareto k above which PSIS estimates are refitted (tests use it
    to force refits); ``model`` reuses an already compiled ``StudyModel`` for refits. With
    ``write``, evidence.json is added to the run.
    """
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    if not 0 <= shift <= 1:
        raise InputError(f"--shift must lie in [0, 1], got {shift}")
    if reliability_below is not None and not 0 < reliability_below <= 1:
        raise InputError(f"--reliability-below must lie in (0, 1], got {reliability_below}")
    study = load_study(study_path)
    run = StoredRun.find(run_dir, study=study, runs_root=runs_root)
    say(f"{study.name}: reading run {run.path}")
    ctx = load_run(study, run)
    if write:  # before any refit: the run must take evidence.json
        preflight(run.path.parent.parent, run.path.parent.name, need_bytes=MIN_FREE_BYTES)
    threshold = ctx.k_threshold if k_threshold is None else k_threshold

    removals, reversals = item_scenarios(ctx)
    quality, dropped = quality_scenario(ctx, reliability_below) if reliability_below is not None else (None, [])
    scenarios = removals + reversals + ([quality] if quality is not None else [])
    n_refits = 0
    if ctx.hypotheses:  # the prior-specified hypotheses (a study may state constraint hypotheses only)
        estimate(ctx, scenarios, threshold)
        if refit:
            # The quality filter is a headline figure: it is refitted first.
            if quality is not None:
                n_refits, model = refit_unreliable(ctx, [quality], max_refits, model, say)
            more, model = refit_unreliable(ctx, removals + reversals, max_refits - n_refits, model, say)
            n_refits += more
        finish(ctx, scenarios)
    constraints, missing = None, None
    if study.constraints is not None and not ctx.run.has(f"{POSTERIOR_DIR}/{ENCOMPASSING_ID}.nc") and ctx.hypotheses:
        # A run written before `forecast update` stored the encompassing fit: the prior-specified
        # evidence stands on its own, and the text says why the constraint part is missing.
        missing = NO_ENCOMPASSING_FIT.format(id=ENCOMPASSING_ID)
    elif study.constraints is not None:
        constraints = constraint_evidence(
            ctx,
            removals,
            reversals,
            quality,
            dropped,
            shift=shift,
            k_threshold=threshold,
            refit=refit,
            max_refits=max_refits - n_refits,
            progress=say,
        )
    converged = all(s.converged for s in scenarios) and (constraints is None or _constraints_converged(constraints))
    if not converged and not allow_unconverged:
        raise ConvergenceError(
            "a refit failed the convergence gate after its retry, so no evidence figures are reported and nothing "
            "was written. Pass --allow-unconverged to write results flagged as unreliable, or --no-refit."
        )

    if ctx.hypotheses:
        result = _assemble(ctx, removals, reversals, quality, reliability_below, dropped, shift, threshold, n_refits)
    else:
        result = _constraints_only(ctx, reliability_below, dropped, shift, threshold)
    result = replace(result, constraints=constraints, timings={"total_s": time.perf_counter() - t0})
    if missing:
        result = replace(result, warnings=(*result.warnings, missing))
    if write:
        result = replace(result, written=str(run.write_json(EVIDENCE, result)))
    return result


def _constraints_converged(c: ConstraintEvidence) -> bool:
    items = [*c.observations, *c.groups, *([c.quality] if c.quality is not None else [])]
    return all(o.converged for x in items for o in (x.if_removed, x.if_reversed) if o is not None)


def _constraints_only(ctx: RunContext, reliability_below, dropped, shift, threshold) -> EvidenceResult:
    """The record of a study with constraint hypotheses only: no prior-specified diagnosticity
    (its ``constraints`` carry the figures), corroboration as for any study."""
    return EvidenceResult(
        study=ctx.study.name,
        run_dir=str(ctx.run_dir),
        hypotheses=(),
        prior_probability={},
        posterior_probability={},
        leading=None,
        n_observations=len(ctx.table),
        n_counted=int(ctx.cells.event_counted.sum()),
        shift_threshold=shift,
        pareto_k_threshold=threshold,
        pareto_k_threshold_default=ctx.k_threshold,
        n_refits=0,
        n_unreliable=0,
        converged=True,
        critical=(),
        observations=(),
        corroboration=_corroboration(ctx),
        quality=None,
        warnings=tuple([UNRELIABLE_RUN] if not ctx.summary.get("converged", True) else []),
        timings={},
    )


def _pointwise_elpd(ctx: RunContext) -> tuple[np.ndarray, np.ndarray]:
    """PSIS-LOO elpd and Pareto k per pattern and hypothesis, from the posterior draws."""
    pat_ll = [pattern_term_loglik(e, ctx.cells, phi) for e, phi in zip(ctx.eta, ctx.concentration, strict=True)]
    r_eff = [relative_ess(ll.T, c) for ll, c in zip(pat_ll, ctx.chains_per, strict=True)]
    elpd = np.zeros((len(ctx.cells.pattern_count), len(ctx.hypotheses)))
    kpat = np.zeros_like(elpd)
    for j, ll in enumerate(pat_ll):
        lw, k = psis_weights(-ll.T, r_eff[j])
        elpd[:, j] = logsumexp(lw + ll.T, axis=-1)
        kpat[:, j] = k
    return elpd, kpat


def _warnings(ctx: RunContext, elpd: np.ndarray) -> list[str]:
    t, cells, hyps = ctx.table, ctx.cells, ctx.hypotheses
    warnings = []
    if not ctx.summary.get("converged", True):
        warnings.append(UNRELIABLE_RUN)
    stored = _stored_pointwise(ctx)
    if stored is not None:
        mine = pd.DataFrame(elpd[cells.event_pattern], columns=hyps, index=t["id"].to_numpy())
        counted_ids = t["id"].to_numpy()[cells.event_counted]
        gap = np.nanmax(np.abs(mine.loc[counted_ids].to_numpy() - stored.loc[counted_ids, hyps].to_numpy()))
        if gap > 1e-6:
            warnings.append(
                f"the run's {POINTWISE} differs from the PSIS-LOO recomputed here from the posterior draws by up to "
                f"{gap:.2g} nats; the figures above use the recomputed values"
            )
    return warnings


def _observation(ctx: RunContext, i: int, elpd: np.ndarray, kpat: np.ndarray, removed, reversed_, shift, lead):
    row = ctx.table.iloc[i]
    cells, hyps = ctx.cells, ctx.hypotheses
    counted = bool(cells.event_counted[i])
    root = str(cells.event_root[i])
    p = cells.event_pattern[i]
    e = elpd[p] if counted else np.zeros(len(hyps))
    rm, rv = removed.outcome(ctx), reversed_.outcome(ctx)
    hinge = tuple(name for name, sc in (("removed", rm), ("reversed", rv)) if sc.leading != lead)
    d = diagnosticity(e, hyps)
    return ObservationEvidence(
        id=row["id"],
        event_date=row["event_date"].date().isoformat(),
        report_date=row["report_date"].date().isoformat(),
        counterpart=row["counterpart"],
        domain=row["domain"],
        outcome="cooperative" if row["cooperative"] else "conflictual",
        reliability=row["reliability"],
        weight=float(row["weight"]),
        description=row["description"],
        counted=counted,
        event=root,
        corroborates=None if root == row["id"] else root,
        elpd_loo=dict(zip(hyps, e.tolist(), strict=True)) if counted else None,
        pareto_k=dict(zip(hyps, kpat[p].tolist(), strict=True)) if counted else None,
        diagnosticity=d["diagnosticity"],
        favours=d["favours"],
        disfavours=d["disfavours"],
        log_predictive_ratio=d["log_predictive_ratio"],
        if_removed=rm,
        if_reversed=rv,
        changes_leading=hinge,
        critical=bool(hinge) or max(rm.max_shift, rv.max_shift) >= shift,
    )


def _corroboration(ctx: RunContext) -> Corroboration:
    cells = ctx.cells
    events = pd.DataFrame({"event": cells.event_root, "id": ctx.table["id"].to_numpy(), "counted": cells.event_counted})
    multi = events.groupby("event").filter(lambda g: len(g) > 1)
    return Corroboration(
        n_events=int(events["event"].nunique()),
        n_reports_not_counted=int((~cells.event_counted).sum()),
        rule=CORROBORATION_RULE,
        events=tuple(
            CorroboratedEvent(event=ev, reports=tuple(g["id"].tolist()), counted=g.loc[g["counted"], "id"].iloc[0])
            for ev, g in multi.groupby("event", sort=True)
        ),
    )


def _assemble(
    ctx, removals, reversals, quality, reliability_below, dropped, shift, threshold, n_refits
) -> EvidenceResult:
    hyps = ctx.hypotheses
    base = base_posterior(ctx)
    lead = hyps[int(np.argmax(base))]
    elpd, kpat = _pointwise_elpd(ctx)
    items = [_observation(ctx, i, elpd, kpat, removals[i], reversals[i], shift, lead) for i in range(len(ctx.table))]
    items.sort(key=lambda x: (-x.diagnosticity, x.id))
    items = [replace(x, rank=rank) for rank, x in enumerate(items, start=1)]
    critical = sorted((x for x in items if x.critical), key=lambda x: (-len(x.changes_leading), -x.max_shift))
    methods = [m for s in removals + reversals for m in s.method]
    q = None
    if quality is not None:
        outcome = quality.outcome(ctx)
        q = QualityCheck(
            reliability_below=float(reliability_below),
            n_dropped=len(dropped),
            dropped=tuple(dropped),
            outcome=outcome,
            changes_leading=outcome.leading != lead,
        )
    return EvidenceResult(
        study=ctx.study.name,
        run_dir=str(ctx.run_dir),
        hypotheses=tuple(hyps),
        prior_probability=dict(zip(hyps, ctx.prior.tolist(), strict=True)),
        posterior_probability=dict(zip(hyps, base.tolist(), strict=True)),
        leading=lead,
        n_observations=len(ctx.table),
        n_counted=int(ctx.cells.event_counted.sum()),
        shift_threshold=shift,
        pareto_k_threshold=threshold,
        pareto_k_threshold_default=ctx.k_threshold,
        n_refits=n_refits,
        n_unreliable=int(sum(m == "unreliable" for m in methods)),
        converged=all(s.converged for s in [*removals, *reversals, *([quality] if quality is not None else [])]),
        critical=tuple(x.id for x in critical),
        observations=tuple(items),
        corroboration=_corroboration(ctx),
        quality=q,
        warnings=tuple(_warnings(ctx, elpd)),
        timings={},
    )


def _stored_pointwise(ctx: RunContext) -> pd.DataFrame | None:
    """The run's per-event LOO table (elpd per hypothesis by id), or None when it has none."""
    if not ctx.run.has(POINTWISE):
        return None
    path = ctx.run.path / POINTWISE
    try:
        df = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise RunStoreError(f"{path}: unreadable ({type(e).__name__}); the file is damaged or truncated") from None
    cols = {f"elpd_loo__{h}": h for h in ctx.hypotheses}
    if "id" not in df.columns or not set(cols) <= set(df.columns):
        return None
    return df.set_index("id")[list(cols)].rename(columns=cols)
