"""Terminal rendering of `forecast update`: the support table, its conclusion and the LOO note."""

from __future__ import annotations


def render_update(result) -> str:
    lines = [f"Study '{result.study}': {result.n_observations} observations, latest {result.latest_observation}", ""]
    if not result.converged:
        lines += [
            "!" * 80,
            "WARNING: at least one fit FAILED its checks (convergence, marginal-likelihood error);",
            "every figure below is UNRELIABLE.",
            "!" * 80,
            "",
        ]
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
    lines += ["", result.conclusion, "", result.loo_note]
    lines += render_variants(result)
    history = getattr(result, "history", None)
    if history:
        flag = "" if history["converged"] else "; some points FAILED their convergence checks (flagged)"
        lines += ["", f"Support over time: {history['n_points']} points, every {history['every']} quarter(s){flag}"]
    if result.run_dir:
        lines += ["", f"Run written to {result.run_dir}"]
    return "\n".join(lines)


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
