"""Robustness of `forecast update`'s conclusion over the study's declared class of reasonable priors.

A study declares the class of priors its conclusion must survive in ``[robustness]``
(``forecast.spec.study.RobustnessSpec``; the defaults are `forecast sensitivity`'s grid: each
hypothesis's priors shifted by ±0.5 prior SD and made 1.5x wider and narrower, one hyperparameter
at a time and jointly), plus the evidence variants update has already fitted (whose acts count)
when the observations record who acted. This is robust Bayesian analysis in Berger's sense: the
answer is the range of each hypothesis's posterior probability over the whole class, and whether
the leading hypothesis leads in every member of it.

Nothing is read back from disk: the fits update has just made are in memory. A prior variant
differs from its base only in the prior, so its change of log marginal likelihood is the
Pareto-smoothed importance-sampling estimate over the base's draws (``forecast.workflows.
sensitivity``: ``build_grid``, ``reweight_variants``); where Pareto k says that estimate is
unreliable, the variant is refitted on the same compiled model (``refit_tasks``, ``refit``, seeds
derived from the run's seed and the variant's id, so `forecast sensitivity` on the stored run
gives the same rows). The prior probability at which the leader changes comes from the Bayes
factors exactly (``prior_odds``).

A refit that fails its convergence checks does not stop `forecast update`: its variant is kept,
flagged (``unreliable_variants``) and named in the record's warning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from forecast.fit.sampler import Fit, SamplerSettings, StudyModel
from forecast.runs.store import jsonable
from forecast.settings import Progress
from forecast.spec.study import Hypothesis, RobustnessSpec, Study
from forecast.workflows.sensitivity.grid import GridSpec, Variant, build_grid
from forecast.workflows.sensitivity.record import odds_text, probability_ranges
from forecast.workflows.sensitivity.reweight import default_k_threshold, prior_odds
from forecast.workflows.sensitivity.run import BaseRun, base_row, refit, refit_tasks, reweight_variants, variant_row
from forecast.workflows.variants import EvidenceVariant

# A flip is within Monte Carlo error when the two hypotheses' probabilities in that variant differ
# by less than this many times the sum of their Monte Carlo SEs (the sum bounds the SE of the
# difference whatever their correlation).
FLIP_MC_SES = 2.0


@dataclass(frozen=True)
class Robustness:
    """Each hypothesis's range of posterior probability over the declared class, and the leader's fate.

    ``variants`` are the rows of the class, the stated analysis (``"base"``) first: prior variants
    (``kind`` "prior", rows of `forecast sensitivity`'s shape) and evidence variants (``kind``
    "evidence"); each has ``leader``, ``posterior_probabilities`` and a plain ``description``.
    """

    leader: str
    leader_stable: bool
    declared: dict  # the class: its settings, and whether the study stated them or they are defaults
    ranges: dict[str, dict]  # per hypothesis: base, min, max, min_variant, max_variant
    variants: list[dict]
    flips: list[dict]  # variants in which another hypothesis leads
    prior_odds: dict[str, dict]  # per hypothesis: the prior probability at which it stops leading, ...
    prior_odds_text: str
    refitted: list[str]
    unreliable_variants: list[str]
    warning: str | None = None
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)

    @property
    def n_variants(self) -> int:
        """Members of the class besides the stated analysis."""
        return len(self.variants) - 1

    @property
    def leader_range(self) -> tuple[float, float]:
        r = self.ranges[self.leader]
        return (r["min"], r["max"])

    @property
    def leader_changes_at(self) -> dict | None:
        """The prior probability of the leader below which another hypothesis leads (None with one)."""
        o = self.prior_odds.get(self.leader) or {}
        if o.get("flip_prior") is None:
            return None
        return {"prior_probability": o["flip_prior"], "se": o["flip_prior_se"], "new_leader": o["flip_against"]}

    def strongest_flip(self) -> dict | None:
        """The flip in which the new leader is most probable (the headline names it), or None."""
        return max(self.flips, key=lambda f: f["posterior_probabilities"][f["new_leader"]], default=None)

    def to_dict(self) -> dict:
        out = {
            "leader": self.leader,
            "leader_stable": self.leader_stable,
            "n_variants": self.n_variants,
            "class": self.declared,
            "ranges": self.ranges,
            "leaders": {r["id"]: r["leader"] for r in self.variants},
            "flips": self.flips,
            "leader_changes_at": self.leader_changes_at,
            "prior_odds": self.prior_odds,
            "prior_odds_text": self.prior_odds_text,
            "refitted": self.refitted,
            "unreliable_variants": self.unreliable_variants,
        }
        if self.warning is not None:
            out["warning"] = self.warning
        out |= {"variants": self.variants, "seconds": self.seconds, "timings": self.timings}
        return jsonable(out)


def grid_spec(spec: RobustnessSpec) -> GridSpec:
    """`forecast sensitivity`'s grid for a study's ``[robustness]`` (refits where Pareto k says so)."""
    return GridSpec(
        shifts=spec.shifts,
        scales=spec.scales,
        by=spec.by,
        joint=spec.joint,
        hypotheses=spec.hypotheses,
        parameters=spec.parameters,
        refit="auto",
        pareto_k_threshold=spec.pareto_k_threshold,
    )


def robustness(
    study: Study,
    model: StudyModel,
    fits: list[Fit],
    log_ml: np.ndarray,
    log_ml_se: np.ndarray,
    settings: SamplerSettings,
    *,
    converged: bool,
    evidence: list[EvidenceVariant] | None = None,
    progress: Progress | None = None,
    bar: bool = False,
) -> Robustness | None:
    """The declared class of ``study`` evaluated on update's fits (in study order); None with one hypothesis.

    ``log_ml``/``log_ml_se``: the fits' bridge-sampled log marginal likelihoods; ``evidence``: the
    evidence variants update fitted (used when ``[robustness] evidence_variants`` is true).
    """
    if len(study.hypotheses) < 2:
        return None
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    spec = grid_spec(study.robustness)
    variants = build_grid(study, spec)
    ids = [h.id for h in study.hypotheses]
    base = BaseRun(
        run=None,  # type: ignore[arg-type]  # no stored run: the fits update has just made
        settings=settings,
        ids=ids,
        prior=np.array([h.prior_probability for h in study.hypotheses]),
        log_ml=np.asarray(log_ml, dtype=float),
        log_ml_se=np.asarray(log_ml_se, dtype=float),
        posterior={f.hypothesis: f.trace.posterior for f in fits},
        converged=converged,
    )
    k_max = spec.pareto_k_threshold or default_k_threshold(settings.chains * settings.draws)
    say(f"robustness: {len(variants) - 1} prior variants by importance reweighting of the fits")
    reweights = reweight_variants(variants, study, base)
    t_rw = time.perf_counter()
    tasks = refit_tasks(variants, study, base, reweights, spec, k_max)
    fan = refit(
        study,
        model.cells,
        tasks,
        cores=settings.cores,
        auto=True,
        scheduler=None,
        workers=0,  # on the compiled model in this process
        allow_unconverged=True,  # a failed refit flags its variant; update's own results stand
        model=model,
        bar=bar,
        say=say,
    )
    refits = {o.key: o for o in fan.outcomes} if fan else {}
    t_rf = time.perf_counter()

    hyp = {h.id: h for h in study.hypotheses}
    groups = {g.id: g.label for g in study.groups}
    rows = [{**base_row(base, {}, False), "kind": "base", "description": "the stated priors and evidence"}]
    for v in variants[1:]:
        row = variant_row(v, hyp[v.hypothesis], base, reweights[v.id], refits.get(v.id), k_max)
        if v.id in refits and not refits[v.id].converged:
            row["reliable"] = False
        rows.append({**row, "kind": "prior", "description": describe_prior_variant(v, hyp[v.hypothesis], groups)})
    if study.robustness.evidence_variants:
        rows += [evidence_row(e) for e in evidence or [] if not e.as_fitted]

    leader = rows[0]["leader"]
    by_id = {v.id: v for v in variants}
    flips = []
    for r in rows[1:]:
        if r["leader"] == leader:
            continue
        f = flip(r, leader)
        v = by_id.get(r["id"])
        own = v is not None and v.hypothesis == r["leader"]
        f["description"] = describe_prior_variant(v, hyp[v.hypothesis], groups, own) if own else r["description"]
        flips.append(f)
    odds = prior_odds(base.log_ml, base.prior, ids, base.log_ml_se)
    unreliable = [r["id"] for r in rows[1:] if not r.get("reliable", True)]
    warning = None
    if unreliable:
        warning = (
            f"{len(unreliable)} variant(s) rest on a fit that failed its checks ({', '.join(unreliable[:5])}"
            f"{', ...' if len(unreliable) > 5 else ''}): their probabilities are unreliable"
        )
    evidence_rows = sum(r["kind"] == "evidence" for r in rows)
    return Robustness(
        leader=leader,
        leader_stable=not flips,
        declared=declared_class(study, spec, k_max, evidence_rows),
        ranges=probability_ranges(rows, ids),
        variants=rows,
        flips=flips,
        prior_odds={h: {k: v for k, v in o.items() if k != "curve"} for h, o in odds.items()},
        prior_odds_text=odds_text(odds, leader, {h: hyp[h] for h in ids}),
        refitted=[r["id"] for r in rows if r.get("method") == "refitted" and r["kind"] == "prior"],
        unreliable_variants=unreliable,
        warning=warning,
        seconds=time.perf_counter() - t0,
        timings={"reweight_s": t_rw - t0, "refit_s": t_rf - t_rw, "refits": len(tasks)},
    )


def declared_class(study: Study, spec: GridSpec, k_max: float, n_evidence: int) -> dict:
    """The class as JSON: its settings, where they come from, and its members' counts."""
    r = study.robustness
    return {
        "source": "study [robustness]" if r.declared else "defaults",
        "shifts": list(spec.shifts),
        "scales": list(spec.scales),
        "by": spec.by,
        "joint": spec.joint,
        "hypotheses": list(spec.hypotheses) if spec.hypotheses is not None else None,
        "parameters": list(spec.parameters) if spec.parameters is not None else None,
        "evidence_variants": r.evidence_variants,
        "n_evidence_variants": n_evidence,
        "pareto_k_threshold": k_max,
    }


def evidence_row(e: EvidenceVariant) -> dict:
    """An evidence variant as a member of the class (every hypothesis refitted on other rows)."""
    return {
        "id": f"evidence/{e.id}",
        "kind": "evidence",
        "hypothesis": None,
        "target": "evidence",
        "change": e.id,
        "joint": False,
        "method": "refitted",
        "initiators": list(e.initiators),
        "n_observations": e.n_observations,
        "log_marginal_likelihood": e.log_marginal_likelihood,
        "posterior_probabilities": e.posterior_probability,
        "posterior_probabilities_se": e.posterior_probability_se,
        "leader": e.leader,
        "reliable": e.converged,
        "description": f"the evidence counted is {e.label}",
    }


def flip(row: dict, leader: str) -> dict:
    """A variant in which ``row['leader']`` leads instead of ``leader``, and whether MC error could explain it."""
    p, se = row["posterior_probabilities"], row.get("posterior_probabilities_se") or {}
    new = row["leader"]
    bound = FLIP_MC_SES * (float(se.get(new, np.nan)) + float(se.get(leader, np.nan)))
    return {
        "variant": row["id"],
        "kind": row["kind"],
        "new_leader": new,
        "posterior_probabilities": p,
        # Unknown errors (nan) count as "could be": the flip is not ruled out as noise.
        "within_mc_error": not bool(abs(p[new] - p[leader]) >= bound),
    }


def _change_words(change: str) -> str:
    if change.startswith("wider"):
        return f"{change.removeprefix('wider')}x wider"
    if change.startswith("narrower"):
        return f"{change.removeprefix('narrower')}x narrower"
    if change.startswith("shift+"):
        return f"shifted up by {change.removeprefix('shift+')} prior SD"
    if change.startswith("shift-"):
        return f"shifted down by {change.removeprefix('shift-')} prior SD"
    return change


def describe_prior_variant(v: Variant, h: Hypothesis, groups: dict[str, str], own: bool = False) -> str:
    """A prior variant in words: "the priors of 'X' are 1.5x wider", or with ``own`` "its priors are ...".

    ``own`` is for a sentence about hypothesis ``h`` itself (it leads when its priors change).
    """
    params = list(dict.fromkeys(p for p, _ in v.changed))
    if v.target == "all":
        what = "priors" if len(v.changed) == len(h.priors) else f"{' and '.join(params)} priors"
        verb = "are"
    elif "." in v.target:
        p, g = v.target.split(".", 1)
        what, verb = f"{p} prior for '{groups.get(g, g)}'", "is"
    else:
        what, verb = f"{v.target} priors", "are"
    whose = f"its {what}" if own else f"the {what} of '{h.label}'"
    return f"{whose} {verb} {_change_words(v.change)}"


def flip_sentence(f: dict, labels: dict[str, str]) -> str:
    """``'X' leads (0.77) when its priors are 1.5x wider``: a flip in words."""
    new = f["new_leader"]
    return f"'{labels[new]}' leads ({f['posterior_probabilities'][new]:.2f}) when {f['description']}"


__all__ = [
    "FLIP_MC_SES",
    "Robustness",
    "declared_class",
    "describe_prior_variant",
    "evidence_row",
    "flip",
    "flip_sentence",
    "grid_spec",
    "robustness",
]
