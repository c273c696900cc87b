"""Terminal rendering of `forecast update`: the support table, the headline, the LOO note, the
evidence variants, the robustness over the study's declared class of reasonable priors, and the
constraint hypotheses' own comparison with the sentence saying whether the two agree. An
overdispersed study ([model] overdispersion = "cell") gets one line under the table on the bound
on a cell's evidence and the concentration's posterior; a plain study's output is unchanged."""

from __future__ import annotations

from forecast.reports.text.constraints import constraint_lines


def render_update(result) -> str:
    lines = [f"Study '{result.study}': {result.n_observations} observations, latest {result.latest_observation}", ""]
    constraints = getattr(result, "constraints", None)
    prior_failed = any(not h.diagnostics.converged for h in result.hypotheses)
    if not result.converged:
        which = (
            "every figure below is UNRELIABLE."
            if prior_failed or not result.hypotheses
            else "the constraint comparison below is UNRELIABLE (the encompassing fit failed)."
        )
        lines += [
            "!" * 80,
            "WARNING: at least one fit FAILED its checks (convergence, marginal-likelihood error);",
            which,
            "!" * 80,
            "",
        ]
    if not result.hypotheses:
        lines += ["No prior-specified hypotheses: the study states constraint hypotheses only.", ""]
        if constraints is not None:
            lines += render_constraint_section(result)
        overdispersion = overdispersion_sentence(getattr(result, "model", None))
        if overdispersion:
            lines += ["", overdispersion]
        lines += ["", result.conclusion]
        if result.run_dir:
            lines += ["", f"Run written to {result.run_dir}"]
        return "\n".join(lines)
    head = f"{'hypothesis':<26} {'prior P':>7}  {'log ML ± MCSE':>16}  {'posterior P ± MCSE':>18}  {'elpd_loo ± SE':>15}  {'Δelpd ± SE':>13}  {'LOO wt':>6}  fit"
    lines += ["Support (Bayes factors)                     |  Predictive accuracy (PSIS-LOO)", head, "-" * len(head)]
    for h in result.hypotheses:
        d = h.diagnostics
        fit = "ok" if d.converged else "FAILED"
        fit += f" (R-hat {d.rhat_max:.3f}, ESS {min(d.ess_bulk_min, d.ess_tail_min):.0f}, div {d.divergences}"
        fit += "; ML error too large)" if any(p.startswith("marginal likelihood") for p in d.problems) else ")"
        lines.append(
            f"{h.label[:26]:<26} {h.prior_probability:>7.3f}  {h.log_marginal_likelihood:>8.2f} ± {h.log_marginal_likelihood_se:<5.2f}  "
            f"{h.posterior_probability:>9.3f} ± {h.posterior_probability_se:<6.3f}  {h.elpd_loo:>7.1f} ± {h.elpd_loo_se:<5.1f}  "
            f"{h.elpd_diff:>5.1f} ± {h.elpd_diff_se:<5.1f}  {h.loo_weight:>6.2f}  {fit}"
        )
    overdispersion = overdispersion_sentence(getattr(result, "model", None))
    if overdispersion:
        lines.append(overdispersion)
    lines += ["", result.conclusion, "", result.loo_note]
    lines += render_variants(result)
    lines += render_robustness(result)
    if constraints is not None:
        lines += ["", ""] + render_constraint_section(result)
        agreed = getattr(result, "agreement", None)
        if agreed is not None:
            lines += ["", agreed.sentence]
    history = getattr(result, "history", None)
    if history:
        flag = "" if history["converged"] else "; some points FAILED their convergence checks (flagged)"
        lines += ["", f"Support over time: {history['n_points']} points, every {history['every']} quarter(s){flag}"]
    if result.run_dir:
        lines += ["", f"Run written to {result.run_dir}"]
    return "\n".join(lines)


def _fig(x: float) -> str:
    """A concentration in a sentence: two significant figures, whole numbers from 10 on."""
    return f"{x:.2g}" if x < 10 else f"{x:,.0f}"


def overdispersion_sentence(model: dict | None) -> str | None:
    """One line on an overdispersed run's likelihood (None for a plain one): the bound on a cell's
    evidence, the concentration's posterior per hypothesis and its prior. ``model`` is the
    record of forecast.model.record.model_record."""
    if not model or model.get("overdispersion", "none") == "none":
        return None
    post = model.get("concentration") or {}
    parts = [
        f"{_fig(x['median'])} (90%: {_fig(x['interval_90'][0])}-{_fig(x['interval_90'][1])}) under '{x['label']}'"
        for x in post.values()
    ]
    prior = model.get("concentration_prior") or {}
    text = "Overdispersion: each cell carries at most about phi+1 events' evidence"
    if parts:
        text += "; concentration (phi) posterior median " + ", ".join(parts)
    if prior:
        low, high = prior["interval_90"]
        text += f" (prior {prior['description']}: median {_fig(prior['median'])}, 90% {_fig(low)}-{_fig(high)})"
    return text + "."


def render_constraint_section(result) -> list[str]:
    """The constraint hypotheses' comparison, titled as a separate comparison (its own table)."""
    c = result.constraints
    title = "Constraint hypotheses: one shared encompassing prior, a separate comparison"
    lines = [title, "=" * len(title)]
    lines.append(
        f"Each claim's Bayes factor against the encompassing model is its region's posterior mass over its prior "
        f"mass ({c.posterior_draws} posterior draws, {c.prior_draws} prior draws); the probabilities include "
        "the complement and are not comparable with the table above."
    )
    return lines + constraint_lines(c)


def render_variants(result) -> list[str]:
    """The evidence variants side by side: posterior probability of each hypothesis, and the leader."""
    variants = getattr(result, "evidence_variants", None) or []
    if not variants:
        return []
    labels = {h.id: h.label for h in result.hypotheses}
    ids = [h.id for h in result.hypotheses]
    width = max(len(v.label) for v in variants) + 14
    head = f"{'evidence counted':<{width}} {'rows':>5}  " + "  ".join(f"{labels[h][:18]:>18}" for h in ids) + "  leader"
    lines = ["", "Evidence variants: the same hypotheses and priors, fitted on whose acts count", head, "-" * len(head)]
    for v in variants:
        name = v.label + (" (as fitted)" if v.as_fitted else "")
        cells = "  ".join(f"{v.posterior_probability[h]:>18.3f}" for h in ids)
        flag = "" if v.converged else "  UNRELIABLE (a fit failed its checks)"
        lines.append(f"{name:<{width}} {v.n_observations:>5}  {cells}  {labels[v.leader]}{flag}")
    leaders = {v.leader for v in variants if v.converged}
    if len(leaders) > 1:
        lines.append(
            "The leading hypothesis depends on whose acts are counted: the conclusion above holds only for the "
            "evidence as fitted."
        )
    else:
        lines.append("The same hypothesis leads whichever acts are counted.")
    return lines


def describe_class(declared: dict, n_evidence: int) -> str:
    """The declared class in words: which priors change, how, and the evidence variants."""
    shifts = ", ".join(f"±{x:g}" for x in declared["shifts"])
    scales = ", ".join(f"{x:g}x" for x in declared["scales"])
    who = (
        "each hypothesis's"
        if declared["hypotheses"] is None
        else "the " + ", ".join(declared["hypotheses"]) + " hypotheses'"
    )
    params = "priors" if declared["parameters"] is None else " and ".join(declared["parameters"]) + " priors"
    how = "one hyperparameter at a time and jointly" if declared["joint"] else "one hyperparameter at a time"
    if declared["by"] == "slot":
        how += ", each counterpart group alone"
    text = f"{who} {params} shifted by {shifts} prior SD and made {scales} wider and narrower, {how}"
    if n_evidence:
        text += f"; {n_evidence} evidence variant(s)"
    return text


def render_robustness(result) -> list[str]:
    """Each hypothesis's range over the declared class, the variants where the leader changes, prior odds."""
    r = getattr(result, "robustness", None)
    if r is None:
        return []
    labels = {h.id: h.label for h in result.hypotheses}
    n_evidence = sum(v["kind"] == "evidence" for v in r.variants)
    source = "the study's declared class" if r.declared["source"] != "defaults" else "the default class"
    refitted = f"; {len(r.refitted)} refitted where reweighting was unreliable" if r.refitted else ""
    lines = [
        "",
        f"Robustness over {r.n_variants} variants of {source}: {describe_class(r.declared, n_evidence)}{refitted}",
    ]
    ids = [h.id for h in result.hypotheses]
    vw = max([len(r.ranges[h]["min_variant"]) for h in ids] + [len(r.ranges[h]["max_variant"]) for h in ids] + [7])
    head = f"{'hypothesis':<26} {'stated':>6}  {'lowest':>6}  {'variant':<{vw}}  {'highest':>7}  variant"
    lines += [head, "-" * (len(head) - len("variant") + vw)]
    for h in ids:
        x = r.ranges[h]
        lines.append(
            f"{labels[h][:26]:<26} {x['base']:>6.3f}  {x['min']:>6.3f}  {x['min_variant']:<{vw}}  {x['max']:>7.3f}  {x['max_variant']}"
        )
    leader = labels[r.leader]
    if r.leader_stable:
        lines.append(f"'{leader}' leads in every variant.")
    else:
        shown = ", ".join(
            f"{f['variant']} -> '{labels[f['new_leader']]}'"
            + (" (within Monte Carlo error)" if f["within_mc_error"] else "")
            for f in r.flips[:8]
        )
        more = f" and {len(r.flips) - 8} more" if len(r.flips) > 8 else ""
        lines.append(f"'{leader}' loses the lead in {len(r.flips)} of {r.n_variants} variants: {shown}{more}.")
    if r.prior_odds_text:
        lines.append(r.prior_odds_text)
    if r.warning:
        lines.append(f"WARNING: {r.warning}")
    return lines
