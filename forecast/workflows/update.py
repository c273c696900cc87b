"""`forecast update`: from study and observations to posterior support for each hypothesis.

Validate everything and check that the runs directory can take a run, fit every hypothesis on
the one compiled model, estimate each log marginal likelihood by bridge sampling, compute
PSIS-LOO, gate on convergence, fit the evidence variants, evaluate the study's declared class of
reasonable priors on these fits (forecast.workflows.robustness); with ``[[constraint_hypotheses]]``
also fit the encompassing model once and compare them on it (forecast.workflows.constraints: a
separate comparison, stored as constraints.json with the sentence saying whether it agrees with
the prior-specified one; a study may state constraint hypotheses only); and write the run directory
atomically (file names from ``forecast.runs.layout``; the manifest records the gate the run was
judged by). The headline (``conclusion``, its parts in ``judgement``) says how strong the
evidence is, how robust, and with what confidence (forecast.stats.wording). Returns a record the
CLI prints and serialises.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.data.cells import CellData, cell_data
from forecast.data.csvsafe import FORMULA_PREFIXES, spreadsheet_safe
from forecast.data.observations import Observations, load_observations
from forecast.errors import ConvergenceError, InputError, ObservationError, SamplingError, StudyError
from forecast.fit.hypothesis import fit_hypotheses
from forecast.fit.sampler import (
    EBFMI_MIN,
    ESS_MIN,
    MORE_CHAINS_MARGIN,
    RETRY_TARGET_ACCEPT,
    RETRY_TUNE_FACTOR,
    RHAT_MAX,
    TREEDEPTH_SATURATION_MAX,
    Diagnostics,
    Fit,
    SamplerSettings,
    StudyModel,
)
from forecast.model.record import concentration_draws, model_record
from forecast.runs.layout import (
    CONSTRAINTS,
    CONSTRAINTS_SCHEMA,
    HISTORY,
    MANIFEST,
    OBSERVATIONS_COPY,
    POINTWISE,
    POSTERIOR_DIR,
    SCHEMA_VERSION,
    STUDY_COPY,
    SUMMARY,
)
from forecast.runs.store import RunWriter, default_root, package_versions, preflight
from forecast.runs.stored import StoredRun
from forecast.settings import Progress
from forecast.spec.constraints import ENCOMPASSING_ID, reserved_id_problems
from forecast.spec.study import Study, load_study
from forecast.stats.bridge import BRIDGE_SE_MAX
from forecast.stats.loo import (
    Loo,
    elpd_differences,
    posterior_probabilities,
    stacking_weights,
)
from forecast.stats.wording import (
    confidence,
    favours,
    jeffreys,
    likelihood_word,
    loo_agreement,
    mc_error_can_flip,
    strength_phrase,
)
from forecast.workflows.constraints import (
    Agreement,
    ConstraintComparison,
    agreement,
    comparison_from_fit,
    constraint_study,
    fit_encompassing,
    prior_masses_in_background,
)
from forecast.workflows.history import History, compute_history, history_for_run
from forecast.workflows.robustness import Robustness, flip_sentence, robustness
from forecast.workflows.variants import EvidenceVariant, applicable, evidence_variants

UNRELIABLE = "UNRELIABLE: at least one fit failed its checks (convergence, marginal-likelihood error)"


@dataclass(frozen=True)
class HypothesisResult:
    id: str
    label: str
    prior_probability: float
    log_marginal_likelihood: float
    log_marginal_likelihood_se: float
    posterior_probability: float
    posterior_probability_se: float
    elpd_loo: float
    elpd_loo_se: float
    elpd_diff: float
    elpd_diff_se: float
    p_loo: float
    pareto_k_max: float
    loo_weight: float
    diagnostics: Diagnostics
    attempts: int
    sampler: dict
    seconds: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["diagnostics"] = self.diagnostics.to_dict()
        return d


@dataclass(frozen=True)
class UpdateResult:
    study: str
    study_path: str
    question: str
    run_dir: str | None
    converged: bool
    n_observations: int
    latest_observation: str | None
    hypotheses: list[HypothesisResult]
    conclusion: str
    loo_note: str
    settings: dict
    timings: dict = field(default_factory=dict)
    history: dict | None = None  # only with run_update(history=True): see _history_summary
    # Support under other choices of whose acts count (forecast.workflows.variants); empty when
    # the observations do not record who acted, or with variants=False.
    evidence_variants: list[EvidenceVariant] = field(default_factory=list)
    # The range of support over the study's declared class of reasonable priors
    # (forecast.workflows.robustness); None with robustness=False or a single hypothesis.
    robustness: Robustness | None = None
    # The headline's parts as data: leader, likelihood word, Bayes factor and its strength,
    # robustness, confidence and its reasons (see ``judgement``); None with one hypothesis.
    judgement: dict | None = None
    # The constraint hypotheses compared on one encompassing fit (forecast.workflows.constraints)
    # and whether that comparison agrees with the prior-specified one; None without
    # [[constraint_hypotheses]]. Stored as the run's constraints.json, not in summary.json.
    constraints: ConstraintComparison | None = None
    agreement: Agreement | None = None
    # The likelihood the study was fitted with (``model_record``): {"overdispersion": "none"} for a
    # plain study; with [model] overdispersion = "cell" also the concentration's prior and posterior.
    model: dict = field(default_factory=lambda: {"overdispersion": "none"})

    def constraints_dict(self) -> dict | None:
        """constraints.json: the comparison's record plus its ``agreement`` (None without one)."""
        if self.constraints is None:
            return None
        d = self.constraints.to_dict()
        d["agreement"] = self.agreement.to_dict() if self.agreement is not None else None
        d["schema_version"] = CONSTRAINTS_SCHEMA
        return d

    def to_dict(self) -> dict:
        # robustness and the constraint records have their own to_dict
        d = asdict(dataclasses.replace(self, robustness=None, constraints=None, agreement=None))
        del d["robustness"], d["agreement"]
        d["constraints"] = self.constraints_dict()
        d["hypotheses"] = [h.to_dict() for h in self.hypotheses]
        d["evidence_variants"] = [v.to_dict() for v in self.evidence_variants]
        if self.robustness is not None:
            d["robustness"] = self.robustness.to_dict()
        d["schema_version"] = SCHEMA_VERSION
        if d["history"] is None:
            del d["history"]
        if not self.converged:
            d["warning"] = UNRELIABLE
        return d


def run_update(
    study_path: str | Path,
    settings: SamplerSettings | None = None,
    *,
    runs_root: Path | None = None,
    allow_unconverged: bool = False,
    write: bool = True,
    progress: Progress | None = None,
    today: dt.date | None = None,
    history: bool = False,
    history_every: int = 1,
    history_settings: SamplerSettings | None = None,
    variants: bool = True,
    robustness: bool = True,
) -> UpdateResult:
    """Fit every hypothesis of a study and write a run; see the module docstring.

    ``variants=True`` (the default) also fits every hypothesis under the evidence variants
    (forecast.workflows.variants: all rows, the actor's own and joint acts, the actor's own acts
    only) when the observations record who acted; their probabilities are reported side by side.

    ``robustness=True`` (the default) also evaluates the study's declared class of reasonable
    priors (``[robustness]``, forecast.workflows.robustness) on these fits: each hypothesis's
    range of posterior probability, whether the leader leads in every variant, and the prior
    odds at which it changes; the headline then says how robust the conclusion is. It never
    changes the support figures (its refits come after them, with their own seeds).

    ``history=True`` also computes support over time (``forecast.workflows.history``, the
    `forecast history` workflow, run on the run being written before it is published: a refit
    per quarter of evidence, every ``history_every`` quarters, on the same compiled model, with
    ``history_settings`` or the run's own settings; the last quarter is this run's result) and
    stores it as the run's ``history.json``.
    """
    settings = settings or SamplerSettings()
    say = progress or (lambda _msg: None)
    t_start = time.perf_counter()
    if history and history_every < 1:
        raise InputError(f"history_every must be a whole number of quarters >= 1, got {history_every}")
    study = load_study(study_path)
    reserved = reserved_id_problems([h.id for h in study.hypotheses])
    if reserved:
        raise StudyError(f"{study.path}: " + "; ".join(reserved))
    spec = constraint_study(study) if study.constraints is not None else None
    if not study.hypotheses and spec is None:
        raise StudyError(f"{study.path}: no [[hypotheses]] and no [[constraint_hypotheses]] to fit")
    obs = load_observations(study, today=today)
    if obs.n == 0:
        raise ObservationError(f"{obs.path}: no observations yet; add coded events before running `forecast update`")
    root = runs_root or study.runs_path or default_root()
    if write:
        preflight(root, study.name)  # a read-only or full runs directory: exit 2 now, not after the fits
    say(
        f"{study.name}: {obs.n} observations, {len(study.hypotheses)} hypotheses"
        + (f" and {len(spec.hypotheses)} constraint hypotheses" if spec else "")
        + f", latest observation {obs.latest_date}"
    )
    cells = cell_data(obs.table, study)
    # The prior-specified hypotheses' model (a constraint-only study has none: its encompassing
    # model is built by forecast.workflows.constraints.fit_encompassing).
    model = StudyModel(study, cells) if study.hypotheses else None
    # The constraint regions' prior masses need neither data nor fit: computed on a thread of
    # their own while the models compile and sample (the same numbers as computed after).
    constraint_prior = (
        prior_masses_in_background(study, spec, settings.seed, spec.prior_draws, say) if spec is not None else None
    )

    def starting(i: int, h) -> None:
        say(
            f"[{i}/{len(study.hypotheses)}] fitting '{h.id}'"
            + (" (compiling the model once for all hypotheses)" if i == 1 else "")
        )

    def sampled(h, fit: Fit) -> None:
        status = "converged" if fit.diagnostics.converged else "NOT CONVERGED: " + "; ".join(fit.diagnostics.problems)
        say(f"      sampled in {fit.seconds:.1f} s, {status}")

    # Fit, bridge-sampled marginal likelihood, gate (a marginal likelihood whose error is too
    # large fails it like non-convergence), LOO: forecast.fit.hypothesis, each fit judged while
    # the next one samples.
    judged_all = (
        fit_hypotheses(model, study.hypotheses, settings, progress=say, starting=starting, sampled=sampled)
        if model
        else []
    )
    fits: list[Fit] = [complete(j.fit, j.fit.settings) for j in judged_all]
    bridges = [j.bridge for j in judged_all]
    loos = [j.loo for j in judged_all]

    enc_fit, enc_compile = None, 0.0
    if spec is not None:
        # One fit of the encompassing model: the same sampler, retry and gate as a hypothesis's,
        # its seed derived from the run's seed and ENCOMPASSING_ID (forecast.workflows.constraints).
        say(f"fitting the encompassing model of the {len(spec.hypotheses)} constraint hypotheses")
        enc, enc_model = fit_encompassing(study, spec, cells, settings, progress=say)
        enc_fit, enc_compile = complete(enc, enc.settings), enc_model.compile_seconds
        status = "converged" if enc.diagnostics.converged else "NOT CONVERGED: " + "; ".join(enc.diagnostics.problems)
        say(f"      sampled in {enc.seconds:.1f} s, {status}")

    prior_converged = all(f.diagnostics.converged for f in fits)
    every = fits + ([enc_fit] if enc_fit is not None else [])
    converged = all(f.diagnostics.converged for f in every)
    if not converged and not allow_unconverged:
        failed = [
            ("the encompassing model" if f is enc_fit else f"'{f.hypothesis}'")
            + f": {'; '.join(f.diagnostics.problems)}"
            for f in every
            if not f.diagnostics.converged
        ]
        raise ConvergenceError(
            "the convergence gate failed (a fit gets more chains or a longer-tuned refit before it fails), so no "
            "support figures are "
            "reported and nothing was written:\n"
            + "\n".join(f"  - {x}" for x in failed)
            + "\nTry more --tune/--draws, or pass --allow-unconverged to write results flagged as unreliable."
        )

    if fits:
        result = _assemble(study, obs, fits, bridges, loos, cells.pattern_count, settings, prior_converged)
    else:
        result = _constraint_only(study, obs, settings)
    result = dataclasses.replace(result, converged=converged)
    if variants and fits and applicable(obs):
        base = {f.hypothesis: (b.log_ml, b.se) for f, b in zip(fits, bridges, strict=True)}
        found = evidence_variants(study, obs, model, settings, base, converged, progress=say)
        result = dataclasses.replace(result, evidence_variants=found)
    if robustness and fits:
        found_robustness = _robustness(study, model, fits, bridges, settings, prior_converged, result, progress)
        if found_robustness is not None:
            result = dataclasses.replace(
                result,
                robustness=found_robustness,
                conclusion=conclusion(result.hypotheses, prior_converged, obs.latest_date, found_robustness),
                judgement=judgement(result.hypotheses, prior_converged, found_robustness),
            )
    result = dataclasses.replace(result, model=_model(study, fits, enc_fit))
    if spec is not None and enc_fit is not None:
        t_constraints = time.perf_counter()
        comparison = comparison_from_fit(
            study,
            spec,
            obs,
            enc_fit,
            enc_compile,
            progress=say,
            cells=cells,
            settings=settings,
            model=enc_model,
            prior=constraint_prior,
        )
        agreed = _agreement(result, comparison, prior_converged)
        result = dataclasses.replace(result, constraints=comparison, agreement=agreed)
        if not fits:
            result = dataclasses.replace(result, conclusion=_constraint_conclusion(comparison, agreed, obs))
        constraints_s = enc_fit.seconds + time.perf_counter() - t_constraints  # its compilation included

    def support_over_time(run: StoredRun) -> History:
        say("support over time (--history)")
        return history_for_run(
            run,
            study,
            obs,
            model=model,
            every=history_every,
            settings=history_settings,
            allow_unconverged=allow_unconverged,
            progress=say,
        )

    run_dir, support_history = None, None
    if write:
        say("writing the run directory")
        pointwise = pointwise_table(obs, cells, study, loos)
        run_dir, support_history = _write_run(
            root, study, obs, fits, result, pointwise, support_over_time if history else None, enc_fit
        )
    elif history:  # nothing is stored: the same computation, kept in memory
        say("support over time (--history)")
        own = history_settings is None or history_settings == settings
        support_history = compute_history(
            study,
            obs,
            model,
            history_settings or settings,
            every=history_every,
            progress=say,
            final=_final(fits, bridges) if own else None,
        )
    timings = {"total_s": time.perf_counter() - t_start, "compile_s": model.compile_seconds if model else 0.0}
    if support_history is not None:
        timings["history_s"] = support_history.seconds
    if result.robustness is not None:
        timings["robustness_s"] = result.robustness.seconds
    if result.constraints is not None:
        timings["constraints_s"] = constraints_s  # the encompassing fit (and its compilation) and the comparison
    return UpdateResult(
        **{
            **result.__dict__,
            "run_dir": str(run_dir) if run_dir else None,
            "timings": timings,
            "history": _history_summary(support_history, run_dir),
        }
    )


def _robustness(
    study: Study,
    model: StudyModel,
    fits: list[Fit],
    bridges,
    settings: SamplerSettings,
    converged: bool,
    result: UpdateResult,
    progress: Progress | None,
) -> Robustness | None:
    """The declared class evaluated on this run's fits (and its evidence variants)."""
    return robustness(
        study,
        model,
        fits,
        np.array([b.log_ml for b in bridges]),
        np.array([b.se for b in bridges]),
        settings,
        converged=converged,
        evidence=result.evidence_variants,
        progress=progress,
        bar=progress is not None,
    )


def _agreement(result: UpdateResult, comparison: ConstraintComparison, prior_converged: bool) -> Agreement:
    """The two comparisons side by side (forecast.workflows.constraints.agreement)."""
    j = result.judgement
    if j is None:
        return agreement(comparison)
    labels = {h.id: h.label for h in result.hypotheses}
    return agreement(
        comparison,
        prior_leader=j["leader"],
        prior_label=labels[j["leader"]],
        prior_probability=j["posterior_probability"],
        prior_robust=j["robust"],
        prior_converged=prior_converged,
        prior_bayes_factor=j["bayes_factor"],
        prior_mc_can_flip=j["mc_error_can_flip"],
    )


def _constraint_only(study: Study, obs: Observations, settings: SamplerSettings) -> UpdateResult:
    """The record of a study with constraint hypotheses only (no prior-specified table)."""
    return UpdateResult(
        study=study.name,
        study_path=str(study.path),
        question=study.question,
        run_dir=None,
        converged=True,
        n_observations=obs.n,
        latest_observation=obs.latest_date,
        hypotheses=[],
        conclusion="",
        loo_note="",
        settings=settings.to_dict(),
        judgement=None,
    )


def _constraint_conclusion(comparison: ConstraintComparison, agreed: Agreement, obs: Observations) -> str:
    """The headline of a constraint-only study: the constraint leader, as the agreement states it."""
    text = f"Through {obs.latest_date}, " + agreed.sentence[0].lower() + agreed.sentence[1:]
    return (UNRELIABLE + ". " + text) if not comparison.converged else text


def _model(study: Study, fits: list[Fit], enc_fit: Fit | None) -> dict:
    """``model_record`` of this run's fits (the encompassing model's too, when it has one)."""
    draws = {f.hypothesis: concentration_draws(f.trace.posterior, study) for f in fits}
    labels = {h.id: h.label for h in study.hypotheses}
    if enc_fit is not None and study.overdispersed:
        try:
            draws[ENCOMPASSING_ID] = concentration_draws(enc_fit.trace.posterior, study)
            labels[ENCOMPASSING_ID] = "the encompassing model"
        except ValueError:  # an encompassing model fitted without the study's overdispersion
            pass
    return model_record(study, draws, labels)


def complete(fit: Fit, settings: SamplerSettings) -> Fit:
    """The fit, if it has every chain and draw asked for; a short fit is never a result."""
    shape = tuple(np.shape(fit.unconstrained)[:2])
    if shape != (settings.chains, settings.draws):
        got = " x ".join(str(n) for n in shape) or "no draws"
        raise SamplingError(
            f"the sampler returned {got} (chains x draws) for hypothesis '{fit.hypothesis}' instead of "
            f"{settings.chains} x {settings.draws}; nothing was written"
        )
    return fit


def _final(fits: list[Fit], bridges) -> dict:
    """This run's result per hypothesis, as support over time takes it for its last quarter."""
    return {
        f.hypothesis: (b.log_ml, b.se, list(f.diagnostics.problems) if not f.diagnostics.converged else [])
        for f, b in zip(fits, bridges, strict=True)
    }


def gate_thresholds() -> dict:
    """The gate a fit is judged by (recorded in the manifest, so a run says what it passed)."""
    return {
        "rhat_max": RHAT_MAX,
        "ess_min": ESS_MIN,  # bulk and tail
        "divergences": 0,
        "ebfmi_min": EBFMI_MIN,
        "treedepth_saturation_max": TREEDEPTH_SATURATION_MAX,
        "warnings_only": ["ebfmi_min", "treedepth_saturation_max"],
        "bridge_se_max": BRIDGE_SE_MAX,
        # Up to three samplings: more chains when only ESS fails (as many as the shortfall needs
        # for margin x the gate, pooled), then a refit with longer tuning (forecast.fit.sampler).
        "retry": {
            "attempts": 3,
            "more_chains_when_only_ess_fails": True,
            "more_chains_margin": MORE_CHAINS_MARGIN,
            "tune_factor": RETRY_TUNE_FACTOR,
            "target_accept": RETRY_TARGET_ACCEPT,
        },
    }


def _history_summary(history: History | None, run_dir: Path | None) -> dict | None:
    """What `update --json` says about the support-over-time computation (None when not asked)."""
    if history is None:
        return None
    return {
        "path": str(Path(run_dir) / HISTORY) if run_dir else None,
        "every": history.every,
        "n_points": len(history.points),
        "n_fitted": history.n_fitted,
        "converged": history.converged,
        "seconds": history.seconds,
        "settings": history.settings,
    }


def _assemble(
    study: Study, obs: Observations, fits: list[Fit], bridges, loos: list[Loo], counts, settings, converged
) -> UpdateResult:
    prior = np.array([h.prior_probability for h in study.hypotheses])
    log_ml = np.array([b.log_ml for b in bridges])
    log_ml_se = np.array([b.se for b in bridges])
    post, post_se = posterior_probabilities(log_ml, log_ml_se, prior)
    diff, diff_se = elpd_differences(loos, counts)
    weights = stacking_weights(loos, counts)
    rows = [
        HypothesisResult(
            id=h.id,
            label=h.label,
            prior_probability=float(prior[i]),
            log_marginal_likelihood=float(log_ml[i]),
            log_marginal_likelihood_se=float(log_ml_se[i]),
            posterior_probability=float(post[i]),
            posterior_probability_se=float(post_se[i]),
            elpd_loo=loos[i].elpd,
            elpd_loo_se=loos[i].se,
            elpd_diff=float(diff[i]),
            elpd_diff_se=float(diff_se[i]),
            p_loo=loos[i].p_loo,
            pareto_k_max=loos[i].pareto_k_max,
            loo_weight=float(weights[i]),
            diagnostics=fits[i].diagnostics,
            attempts=fits[i].attempts,
            sampler=fits[i].settings.to_dict(),
            seconds=fits[i].seconds,
        )
        for i, h in enumerate(study.hypotheses)
    ]
    return UpdateResult(
        study=study.name,
        study_path=str(study.path),
        question=study.question,
        run_dir=None,
        converged=converged,
        n_observations=obs.n,
        latest_observation=obs.latest_date,
        hypotheses=rows,
        conclusion=conclusion(rows, converged, obs.latest_date),
        loo_note=loo_note(rows),
        settings=settings.to_dict(),
        judgement=judgement(rows, converged),
    )


def judgement(rows: list[HypothesisResult], converged: bool, robust: Robustness | None = None) -> dict | None:
    """The headline's parts as data (None with one hypothesis).

    The leader (highest posterior probability) and its ICD 203 likelihood word; its Bayes factor
    against the runner-up with Jeffreys' label; whether the Monte Carlo error could reverse the
    order; how predictive accuracy (PSIS-LOO) sees the leader; robustness over the declared class
    (``robust``; None: not evaluated); and the confidence level with its reasons
    (forecast.stats.wording states the rule).
    """
    if len(rows) < 2:
        return None
    ranked = sorted(rows, key=lambda r: r.posterior_probability, reverse=True)
    top, second = ranked[0], ranked[1]
    log_bf = top.log_marginal_likelihood - second.log_marginal_likelihood
    log_bf_se = float(np.hypot(top.log_marginal_likelihood_se, second.log_marginal_likelihood_se))
    bf = float(np.exp(log_bf))
    mc_flip = mc_error_can_flip(log_bf, log_bf_se)
    loo_best = max(rows, key=lambda r: r.elpd_loo)
    loo = loo_agreement(top.elpd_diff, top.elpd_diff_se) if math.isfinite(top.elpd_diff) else None
    stable = robust.leader_stable if robust is not None else None
    conf = confidence(
        bayes_factor=bf,
        mc_can_flip=mc_flip,
        leader_stable=stable,
        leader_range=robust.leader_range if robust is not None else None,
        loo=loo,
        loo_best=loo_best.label,
        converged=converged,
    )
    return {
        "leader": top.id,
        "posterior_probability": top.posterior_probability,
        "likelihood": likelihood_word(min(max(top.posterior_probability, 0.0), 1.0)),
        "runner_up": second.id,
        "bayes_factor": bf,
        "log_bayes_factor": log_bf,
        "log_bayes_factor_se": log_bf_se,
        "evidence": jeffreys(bf),
        "mc_error_can_flip": mc_flip,
        "loo": loo,
        "loo_best": loo_best.id,
        "robust": stable,
        "leader_range": list(robust.leader_range) if robust is not None else None,
        "confidence": conf.level,
        "confidence_reasons": list(conf.reasons),
    }


def conclusion(
    rows: list[HypothesisResult],
    converged: bool,
    latest_observation: str | None = None,
    robust: Robustness | None = None,
) -> str:
    """The headline: which hypothesis the evidence supports, how strongly, how robustly, how confidently.

    E.g. "Through 2026-02-06, under the stated priors the evidence favours 'Pragmatic hedging'
    (0.83, very likely; Bayes factor 5.4 against 'Strategic realignment', moderate evidence). Not
    robust: 'Strategic realignment' leads (0.77) when its priors are 1.5x wider; the leader changes
    in 5 of 50 variants. Confidence: low, because ...". Words from forecast.stats.wording; no
    jargon (the table and the technical sections carry the log figures).
    """
    if len(rows) == 1:
        return f"Only one hypothesis ('{rows[0].label}'); support needs at least two to compare."
    j = judgement(rows, converged, robust)
    assert j is not None
    labels = {r.id: r.label for r in rows}
    top, second, bf = labels[j["leader"]], labels[j["runner_up"]], j["bayes_factor"]
    p, word = j["posterior_probability"], j["likelihood"]
    opening = f"Through {latest_observation}, under" if latest_observation else "Under"
    if bf >= 1:
        text = (
            f"{opening} the stated priors the evidence {favours(bf)} '{top}' ({p:.2f}, {word}; "
            f"Bayes factor {bf:.3g} against '{second}', {strength_phrase(bf)})."
        )
    else:
        text = (
            f"{opening} the stated priors '{top}' is the most probable hypothesis ({p:.2f}, {word}) on its prior "
            f"probability alone: the evidence favours '{second}' over it (Bayes factor {1 / bf:.3g}, "
            f"{strength_phrase(1 / bf)})."
        )
    if j["mc_error_can_flip"]:
        text += " The Monte Carlo error could reverse this order: rerun with more --draws before relying on it."
    if robust is not None:
        n = robust.n_variants
        kinds = (
            "of the priors and the evidence counted"
            if any(r["kind"] == "evidence" for r in robust.variants)
            else "of the priors"
        )
        if robust.leader_stable:
            lo, hi = robust.leader_range
            text += f" Robust: '{top}' leads in all {n} variants {kinds} ({lo:.2f} to {hi:.2f})."
        else:
            strongest = robust.strongest_flip()
            assert strongest is not None
            text += f" Not robust: {flip_sentence(strongest, labels)}"
            k = len(robust.flips)
            text += f"; the leader changes in {k} of {n} variants {kinds}." if k > 1 else "."
    reasons = j["confidence_reasons"]
    text += f" Confidence: {j['confidence']}"
    if reasons:
        text += ", because " + "; ".join(reasons[:-1]) + ("; and " if len(reasons) > 1 else "") + reasons[-1]
    text += "."
    if not converged:
        text = UNRELIABLE + ". " + text
    return text


def loo_note(rows: list[HypothesisResult]) -> str:
    best = max(rows, key=lambda r: r.elpd_loo)
    others = [r for r in rows if r is not best]
    if not others:
        return ""
    worst_ratio = max(abs(r.elpd_diff) / r.elpd_diff_se if r.elpd_diff_se > 0 else np.inf for r in others)
    clear = "clearly" if worst_ratio > 2 else "not clearly (differences within two standard errors)"
    return (
        "Predictive accuracy (PSIS-LOO) answers a different question: how well each fitted hypothesis predicts "
        f"a left-out event. '{best.label}' predicts best, {clear} better than the others. Stacking weights say how to "
        "combine the hypotheses' predictions; they are not probabilities that a hypothesis is true."
    )


def pointwise_table(obs: Observations, cells: CellData, study: Study, loos: list[Loo]) -> pd.DataFrame:
    """Per observation: its LOO elpd and Pareto k under each hypothesis (from its pattern).

    The ids are made safe for spreadsheets (``forecast.data.csvsafe``): an id a spreadsheet
    would run as a formula is written with a leading ``'``.
    """
    ids = obs.table["id"].astype(str)
    event_row = getattr(cells, "event_row", None)
    if event_row is not None and len(event_row) != len(ids):
        # Only the rows whose initiator the study counts are evidence ([evidence] initiators).
        ids = ids.iloc[event_row].reset_index(drop=True)
    risky = ids.str.startswith(FORMULA_PREFIXES).to_numpy()
    if risky.any():
        ids = ids.where(~risky, ids[risky].map(spreadsheet_safe))
    table = pd.DataFrame({"id": ids.to_numpy()})
    for h, lo in zip(study.hypotheses, loos, strict=True):
        table[f"elpd_loo__{h.id}"] = lo.pointwise[cells.event_pattern]
        table[f"pareto_k__{h.id}"] = lo.pareto_k[cells.event_pattern]
    return table


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    """CSV through Arrow: exact floats, ~10x faster than pandas for a million-event table."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    pacsv.write_csv(pa.Table.from_pandas(table, preserve_index=False), path)


def _write_run(
    root: Path,
    study: Study,
    obs: Observations,
    fits: list[Fit],
    result: UpdateResult,
    pointwise: pd.DataFrame,
    history=None,
    encompassing: Fit | None = None,
) -> tuple[Path, History | None]:
    """Write the run, and (``history``: a function of the stored run) its history, then publish it.

    Everything, history.json included, is written in the run's temporary directory and appears
    at once on commit: an interrupt at any moment leaves no new run and ``LATEST`` unmoved.
    """
    with RunWriter(root, study.name) as w, ThreadPoolExecutor(max_workers=1) as background:
        # Arrow writes the per-event table without the GIL, so for a large study it costs no
        # time beside the NetCDF writes (which hold it); its errors surface at .result().
        table_written = background.submit(w.write_with, POINTWISE, lambda p: _write_csv(pointwise, p))
        for f in fits:
            w.write_netcdf(f"{POSTERIOR_DIR}/{f.hypothesis}.nc", f.trace)
        if encompassing is not None:
            w.write_netcdf(f"{POSTERIOR_DIR}/{ENCOMPASSING_ID}.nc", encompassing.trace)
        if result.constraints is not None:
            w.write_json(CONSTRAINTS, result.constraints_dict())
        table_written.result()
        w.copy(STUDY_COPY, study.path)
        w.copy(OBSERVATIONS_COPY, obs.path)
        summary = {**result.to_dict(), "run_dir": str(w.final)}
        del summary["constraints"]  # one copy: the run's constraints.json
        w.write_json(SUMMARY, summary)
        w.write_json(
            MANIFEST,
            {
                "schema_version": SCHEMA_VERSION,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "study": {"path": str(study.path), "sha256": study.sha256},
                "observations": {"path": str(obs.path), "sha256": obs.sha256, "n": obs.n},
                "seed": result.settings["seed"],
                "sampler": result.settings,
                "sampler_per_hypothesis": {f.hypothesis: f.settings.to_dict() for f in fits},
                **({"sampler_encompassing": encompassing.settings.to_dict()} if encompassing is not None else {}),
                "gate": gate_thresholds(),
                "reproducibility": "nutpie: same seed gives the same draws once the numba compile cache is warm",
                "packages": package_versions(),
            },
        )
        support_history = None
        if history is not None:
            support_history = history(StoredRun.open(w.tmp))
            w.write_json(SUMMARY, {**summary, "history": _history_summary(support_history, w.final)})
        return w.commit(), support_history
