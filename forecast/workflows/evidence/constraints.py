"""`forecast evidence` for constraint hypotheses: each observation's and evidence group's influence.

A study's constraint hypotheses (forecast.spec.constraints) are regions of ONE encompassing model;
their probabilities come from the fraction of the encompassing posterior's draws inside each
region over the region's prior mass (forecast.workflows.constraints). Leaving data out, or
reversing an outcome, changes the posterior but not the prior, so the prior masses stay as they
are and only the posterior masses move. They are recomputed without refitting by
Pareto-smoothed importance reweighting of the run's STORED encompassing posterior
(``posterior/encompassing.nc``): a changed data set removes the likelihood terms ``L_removed``
and adds ``L_added`` (``forecast.workflows.evidence.scenarios``: the same changes as the
prior-specified hypotheses' what-ifs), so each draw's importance ratio is
``exp(L_added - L_removed)``, smoothed (PSIS), and the region's mass is the weighted fraction of
draws inside it, with error ``sqrt(p (1 - p) / n_eff)``. The Bayes factors and probabilities then
follow as in the run's comparison.

Where the weights' Pareto k is above the threshold (min(1 - 1/log10(S), 0.7), as for the
prior-specified hypotheses) the estimate is flagged unreliable and, as the prior-specified
what-ifs are, refitted (one encompassing fit on the changed data) within what is left of the
refit budget, the quality filter and the evidence groups first, then the items with the highest k.

Evidence groups: every observation of one group of counterparts, and every observation in one
domain, left out at once (their weights are usually too heavy-tailed to trust: then they are
refitted or flagged).

Shown apart from the prior-specified diagnosticity: the two comparisons answer different
questions.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from forecast.data.cells import cell_data
from forecast.errors import RunStoreError
from forecast.fit.sampler import StudyModel
from forecast.model.build import draws_as_arrays, latent_logit, years_from_reference
from forecast.model.record import concentration_draws
from forecast.runs.layout import CONSTRAINTS, CONSTRAINTS_SCHEMA
from forecast.runs.records import Record
from forecast.settings import Progress, derive_rng
from forecast.spec.constraints import ENCOMPASSING_ID
from forecast.stats.encompassing import (
    Mass,
    bayes_factor,
    mass_from_draws,
    posterior_probabilities,
    zero_hits_upper,
)
from forecast.stats.loo import relative_ess
from forecast.stats.psis import psislw
from forecast.workflows.constraints import (
    PriorDraws,
    Regions,
    constraint_study,
    encompassing_hypothesis,
    prior_masses,
)
from forecast.workflows.evidence.context import RunContext
from forecast.workflows.evidence.scenarios import Scenario
from forecast.workflows.evidence.statistics import (
    pattern_term_loglik,
    pattern_terms,
    removal_loglik,
    term_loglik,
    terms,
)

NO_ENCOMPASSING_FIT = (
    "the run has no encompassing fit (posterior/{id}.nc), so the constraint hypotheses' evidence was not "
    "computed; run `forecast update` to fit the current inputs"
)


# --- records ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConstraintOutcome(Record):
    """The constraint comparison on a changed data set."""

    probabilities: dict[str, float]
    probabilities_se: dict[str, float]
    posterior_mass: dict[str, float]
    leading: str
    max_shift: float  # largest change of a constraint hypothesis's probability against the run's
    method: str  # 'unchanged', 'psis', 'unreliable' (Pareto k above the threshold) or 'refit'
    pareto_k: float | None
    n_eff: float | None  # effective draws of the importance weights (None: unchanged or refit)
    converged: bool = True

    @property
    def approximate(self) -> bool:
        return self.method in ("refit", "unreliable")


@dataclass(frozen=True)
class ConstraintItem(Record):
    """One observation, or one evidence group, and the constraint comparison without it."""

    _optional = ("if_reversed",)

    id: str  # the observation's id, or 'group:<id>', 'domain:<id>', 'quality'
    kind: str  # 'observation', 'group', 'domain' or 'quality'
    label: str
    n_observations: int  # rows it leaves out
    if_removed: ConstraintOutcome
    if_reversed: ConstraintOutcome | None
    max_shift: float
    changes_leading: tuple[str, ...]  # 'removed' and/or 'reversed'
    critical: bool
    unreliable: bool  # an estimate has Pareto k above the threshold and was not refitted


@dataclass(frozen=True)
class ConstraintEvidence(Record):
    """What `forecast evidence` found for the constraint hypotheses (``evidence.json``'s ``"constraints"``)."""

    hypotheses: tuple[str, ...]
    labels: dict[str, str]
    prior_probability: dict[str, float]
    prior_mass: dict[str, float]
    prior_mass_source: str  # 'constraints.json' (as the run reported them) or 'computed'
    posterior_probability: dict[str, float]
    posterior_mass: dict[str, float]
    leading: str
    posterior_draws: int
    pareto_k_threshold: float
    n_refits: int
    n_unreliable: int
    critical: tuple[str, ...]  # ids, the most consequential first
    observations: tuple[ConstraintItem, ...]  # the largest shift first
    groups: tuple[ConstraintItem, ...]  # each group of counterparts, each domain
    quality: ConstraintItem | None
    method: str


# --- the computation -------------------------------------------------------------------------------


@dataclass
class Encompassing:
    """The run's stored encompassing posterior, read for reweighting."""

    eta: np.ndarray  # (draws, group, domain, quarter)
    inside: dict[str, np.ndarray]  # hypothesis id -> (draws,) bool
    chains: int
    draws: int
    masses: dict[str, Mass]  # prior masses
    mass_source: str
    base_mass: dict[str, Mass]
    base_probabilities: np.ndarray
    concentration: np.ndarray | None = None  # an overdispersed model's draws (draws,), else None


def reweighted_mass(inside: np.ndarray, log_weights: np.ndarray) -> Mass:
    """A region's posterior mass under normalised log importance weights (one per draw)."""
    if np.ptp(log_weights) == 0:  # equal weights: exactly the unweighted fraction
        p, n_eff = float(np.mean(inside)), float(len(inside))
    else:
        w = np.exp(log_weights - logsumexp(log_weights))
        p = min(max(float(np.sum(w * inside)), 0.0), 1.0)
        n_eff = 1.0 / float(np.sum(w**2))
    hits = int(np.sum(inside))
    return Mass(
        p, math.sqrt(p * (1 - p) / n_eff), "reweighted", n_eff, hits, zero_hits_upper(n_eff) if p <= 0 else None
    )


def psis_log_weights(log_ratios: np.ndarray, r_eff: float) -> tuple[np.ndarray, float]:
    """Pareto-smoothed log weights for importance ratios exp(log_ratios), and their Pareto k.
    Constant ratios (nothing changes) give equal weights and k = 0, exactly."""
    if np.ptp(log_ratios) < 1e-12:
        return np.zeros_like(log_ratios), 0.0
    lw, k = psislw(-log_ratios, r_eff=r_eff)  # arviz-stats' psislw negates its input (statistics.psis_weights)
    return np.asarray(lw, dtype=float), float(k)


def load_encompassing(
    ctx: RunContext, prior_draws: int | None = None, progress: Progress | None = None
) -> Encompassing:
    """The run's encompassing posterior with each region's indicator, and the prior masses (as the
    run's constraints.json reported them, else estimated as `forecast update` does)."""
    study = ctx.study
    spec = constraint_study(study)
    post = ctx.run.open_posterior(ENCOMPASSING_ID)
    chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    arrays = draws_as_arrays(post, study)
    eta = latent_logit(
        np, arrays, years_from_reference(study), study.time.reference - study.time.start, study.time.components
    )
    regions = Regions(study, spec)
    margins = regions.margins(arrays)
    ids = [h.id for h in spec.hypotheses]
    inside = {h: margins[h] >= 0 for h in ids}
    masses, source = _stored_masses(ctx, ids), "constraints.json"
    if masses is None:
        n = prior_draws or spec.prior_draws
        if progress:
            progress(f"constraint hypotheses: their prior masses ({n} prior draws)")
        masses, _ = prior_masses(
            regions, PriorDraws(study, spec.priors), n, derive_rng(ctx.settings.seed, "constraints", "prior"), progress
        )
        source = "computed"
    base = {h: mass_from_draws(inside[h].reshape(chains, draws)) for h in ids}
    probs = _probabilities(spec, masses, [base[h] for h in ids], ctx.settings.seed)[0]
    return Encompassing(eta, inside, chains, draws, masses, source, base, probs, concentration_draws(post, study))


def _stored_masses(ctx: RunContext, ids: list[str]) -> dict[str, Mass] | None:
    try:
        stored = ctx.run.read_json(CONSTRAINTS, CONSTRAINTS_SCHEMA)
    except RunStoreError:
        return None
    if not stored:
        return None
    try:
        rows = {h["id"]: Mass(**h["prior_mass"]) for h in stored["hypotheses"]}
    except (KeyError, TypeError):
        return None
    return rows if sorted(rows) == sorted(ids) else None


def _probabilities(spec, masses: dict[str, Mass], post: list[Mass], seed: int) -> tuple[np.ndarray, np.ndarray]:
    bfs = [bayes_factor(masses[h.id], m) for h, m in zip(spec.hypotheses, post, strict=True)]
    prior = np.array([h.prior_probability for h in spec.hypotheses])
    p, sd, _ = posterior_probabilities(bfs, prior, derive_rng(seed, "constraints", "probabilities"))
    return p, sd


@dataclass
class _Estimate:
    masses: list[Mass]
    method: str
    pareto_k: float | None
    n_eff: float | None
    converged: bool = True


def constraint_evidence(
    ctx: RunContext,
    removals: list[Scenario],
    reversals: list[Scenario],
    quality: Scenario | None,
    dropped: list[str],
    *,
    shift: float,
    k_threshold: float,
    refit: bool,
    max_refits: int,
    progress: Progress | None = None,
) -> ConstraintEvidence:
    """The constraint hypotheses' evidence for a run (see the module docstring)."""
    say = progress or (lambda _m: None)
    study = ctx.study
    spec = constraint_study(study)
    ids = [h.id for h in spec.hypotheses]
    try:
        enc = load_encompassing(ctx, progress=say)
    except RunStoreError as e:
        raise RunStoreError(NO_ENCOMPASSING_FIT.format(id=ENCOMPASSING_ID) + f" ({e})") from None
    say(f"constraint hypotheses: reweighting the encompassing fit ({enc.chains} x {enc.draws} draws)")
    n = enc.chains * enc.draws
    keys = pattern_terms(ctx.cells)
    r_eff = relative_ess(pattern_term_loglik(enc.eta, ctx.cells, enc.concentration).T, enc.chains) if keys else 1.0
    inside = [enc.inside[h] for h in ids]

    def estimate(s: Scenario) -> _Estimate:
        if not s.removed and not s.added:
            return _Estimate([enc.base_mass[h] for h in ids], "unchanged", None, None)
        if enc.concentration is not None:  # overdispersed: the touched cells' Polya differences
            lr, la = removal_loglik(enc.eta, ctx.cells, s.removed, s.added, enc.concentration)
        else:
            lr, la = _loglik(enc.eta, s.removed, n), _loglik(enc.eta, s.added, n)
        lw, k = psis_log_weights(la - lr, r_eff)
        masses = [reweighted_mass(x, lw) for x in inside]
        return _Estimate(masses, "unreliable" if k > k_threshold else "psis", k, masses[0].n)

    groups = _group_scenarios(ctx)
    plan: list[tuple[str, Scenario]] = []  # (kind, scenario), refit priority order
    if quality is not None:
        plan.append(("quality", quality))
    plan += [("group", g[-1]) for g in groups]
    plan += [("removed", s) for s in removals] + [("reversed", s) for s in reversals]
    estimates = {id(s): estimate(s) for _, s in plan}

    n_refits = 0
    if refit and max_refits > 0:
        todo = [(kind, s) for kind, s in plan if estimates[id(s)].method == "unreliable"]
        head = [x for x in todo if x[0] in ("quality", "group")]
        rest = sorted(
            (x for x in todo if x[0] not in ("quality", "group")), key=lambda x: -estimates[id(x[1])].pareto_k
        )
        model = None
        for _, s in (head + rest)[:max_refits]:
            if model is None:
                say("compiling the encompassing model for refits")
                model = StudyModel(dataclasses.replace(study, hypotheses=(encompassing_hypothesis(spec),)), ctx.cells)
            say(f"  refit the encompassing model for '{s.label}' (Pareto k {estimates[id(s)].pareto_k:.2f})")
            estimates[id(s)] = _refit(model, ctx, spec, s)
            n_refits += 1

    def outcome(s: Scenario) -> ConstraintOutcome:
        e = estimates[id(s)]
        p, sd = _probabilities(spec, enc.masses, e.masses, ctx.settings.seed)
        return ConstraintOutcome(
            probabilities=dict(zip(ids, p.tolist(), strict=True)),
            probabilities_se=dict(zip(ids, sd.tolist(), strict=True)),
            posterior_mass={h: m.value for h, m in zip(ids, e.masses, strict=True)},
            leading=ids[int(np.argmax(p))],
            max_shift=float(np.max(np.abs(p - enc.base_probabilities))),
            method=e.method,
            pareto_k=e.pareto_k,
            n_eff=e.n_eff,
            converged=e.converged,
        )

    lead = ids[int(np.argmax(enc.base_probabilities))]
    table = ctx.table

    def item(ident, kind, label, n_rows, removed: Scenario, reversed_: Scenario | None) -> ConstraintItem:
        rm = outcome(removed)
        rv = outcome(reversed_) if reversed_ is not None else None
        both = [("removed", rm)] + ([("reversed", rv)] if rv is not None else [])
        hinge = tuple(name for name, o in both if o.leading != lead)
        top = max(o.max_shift for _, o in both)
        return ConstraintItem(
            id=ident,
            kind=kind,
            label=label,
            n_observations=n_rows,
            if_removed=rm,
            if_reversed=rv,
            max_shift=top,
            changes_leading=hinge,
            critical=bool(hinge) or top >= shift,
            unreliable=any(o.method == "unreliable" for _, o in both),
        )

    observations = [
        item(
            str(table["id"].iloc[i]),
            "observation",
            str(table["description"].iloc[i]),
            1,
            removals[i],
            reversals[i],
        )
        for i in range(len(table))
    ]
    observations.sort(key=lambda x: (-x.max_shift, x.id))
    group_items = [item(ident, kind, label, rows, s, None) for ident, kind, label, rows, s in groups]
    quality_item = (
        item("quality", "quality", quality.label, len(dropped), quality, None) if quality is not None else None
    )
    everything = observations + group_items + ([quality_item] if quality_item else [])
    critical = sorted((x for x in everything if x.critical), key=lambda x: (-len(x.changes_leading), -x.max_shift))
    return ConstraintEvidence(
        hypotheses=tuple(ids),
        labels={h.id: h.label for h in spec.hypotheses},
        prior_probability={h.id: float(h.prior_probability) for h in spec.hypotheses},
        prior_mass={h: enc.masses[h].value for h in ids},
        prior_mass_source=enc.mass_source,
        posterior_probability=dict(zip(ids, enc.base_probabilities.tolist(), strict=True)),
        posterior_mass={h: enc.base_mass[h].value for h in ids},
        leading=lead,
        posterior_draws=n,
        pareto_k_threshold=k_threshold,
        n_refits=n_refits,
        n_unreliable=sum(
            o.method == "unreliable" for x in everything for o in (x.if_removed, x.if_reversed) if o is not None
        ),
        critical=tuple(x.id for x in critical),
        observations=tuple(observations),
        groups=tuple(group_items),
        quality=quality_item,
        method=(
            "Posterior masses of the regions by Pareto-smoothed importance reweighting of the run's encompassing "
            "fit (weights: exp of the likelihood terms added minus those removed); prior masses unchanged by "
            f"leaving data out; Pareto k above {k_threshold:.2f}: refitted within the refit budget, else flagged."
        ),
    )


def _loglik(eta: np.ndarray, counts: Counter, n: int) -> np.ndarray:
    if not counts:
        return np.zeros(n)
    keys = list(counts)
    return term_loglik(eta, keys) @ np.array([counts[k] for k in keys], dtype=float)


def _refit(model: StudyModel, ctx: RunContext, spec, s: Scenario) -> _Estimate:
    """One encompassing fit on the changed data: the regions' masses from its draws."""
    enc = encompassing_hypothesis(spec)
    fit = model.fit(enc, ctx.settings, cells=cell_data(s.table(), ctx.study))
    post = fit.trace.posterior
    chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    margins = Regions(ctx.study, spec).margins(draws_as_arrays(post, ctx.study))
    masses = [mass_from_draws((margins[h.id] >= 0).reshape(chains, draws)) for h in spec.hypotheses]
    return _Estimate(masses, "refit", None, None, bool(fit.diagnostics.converged))


def _group_scenarios(ctx: RunContext) -> list[tuple[str, str, str, int, Scenario]]:
    """Every observation of one group of counterparts, and every observation in one domain, left
    out: (id, kind, label, rows left out, scenario). A group holding every observation is skipped."""
    t, study = ctx.table, ctx.study
    base = terms(ctx.cells)
    out = []
    counterpart_group = {c: g.id for g in study.groups for c in g.counterparts}
    group_of = t["counterpart"].map(counterpart_group).to_numpy()
    for column, values, kind in (
        (group_of, [g.id for g in study.groups], "group"),
        (t["domain"].to_numpy(), [d.id for d in study.domains], "domain"),
    ):
        for v in values:
            keep = column != v
            if keep.all() or not keep.any():
                continue
            kept = t[keep]
            changed = terms(cell_data(kept, study))
            n_out = int((~keep).sum())
            label = f"every observation {'with' if kind == 'group' else 'in'} {v} ({n_out}) left out"
            out.append(
                (
                    f"{kind}:{v}",
                    kind,
                    label,
                    n_out,
                    Scenario(label, lambda kept=kept: kept, base - changed, changed - base),
                )
            )
    return out


__all__ = [
    "ConstraintEvidence",
    "ConstraintItem",
    "ConstraintOutcome",
    "constraint_evidence",
    "load_encompassing",
    "psis_log_weights",
    "reweighted_mass",
]
