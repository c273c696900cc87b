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
    history = getattr(result, "history", None)
    if history:
        flag = "" if history["converged"] else "; some points FAILED their convergence checks (flagged)"
        lines += ["", f"Support over time: {history['n_points']} points, every {history['every']} quarter(s){flag}"]
    if result.run_dir:
        lines += ["", f"Run written to {result.run_dir}"]
    return "\n".join(lines)
