"""Terminal rendering of `forecast constraints` (record in, str out)."""

from __future__ import annotations

import math


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _mass(m) -> str:
    if m.value == 0 and m.upper is not None:
        return f"< {m.upper:.2g}"
    how = " stepwise" if m.method == "stepwise" else ""
    return f"{m.value:.3g} ± {m.se:.2g}{how}"


def render_constraints(result) -> str:
    """The comparison as a table: each hypothesis's masses, Bayes factor and posterior probability."""
    lines = [f"{result.study}: constraint hypotheses on one encompassing model"]
    lines.append(
        f"{result.n_observations} observations (latest {result.latest_observation}); "
        f"{result.posterior_draws} posterior draws, {result.prior_draws} prior draws"
    )
    lines += constraint_lines(result)
    lines += ["", "Prior predictive (share of cooperative interactions over the study's time, 5% / 50% / 95%):"]
    for g, q in result.prior_predictive.items():
        lines.append(f"  {g}: {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}")
    lines += ["", result.method]
    if result.timings:
        t = result.timings
        lines.append(
            f"Encompassing fit {t.get('fit_seconds', 0):.1f} s (compile {t.get('compile_seconds', 0):.1f} s); "
            f"comparison {t.get('comparison_seconds', 0):.1f} s."
        )
    return "\n".join(lines)


def constraint_lines(result) -> list[str]:
    """The comparison's table, leader, constraints, overlaps and robustness (shared with `update`)."""
    lines = []
    if not result.converged:
        lines.append(
            "UNRELIABLE: the encompassing fit failed its convergence checks: "
            + "; ".join(result.diagnostics.get("problems", []))
        )
    lines.append("")
    head = f"{'hypothesis':<26} {'prior P':>8} {'prior mass':>20} {'posterior mass':>20} {'BF vs enc.':>11} {'posterior P':>16}"
    lines += [head, "-" * len(head)]
    for h in result.hypotheses:
        bf = h.bayes_factor
        bf_text = ("< " if bf.bound else "") + f"{math.exp(bf.log_bf):.3g}"
        if bf.bound:
            post = f"< {_pct(h.posterior_probability_upper)}"
        else:
            post = f"{_pct(h.posterior_probability)} ± {_pct(h.posterior_probability_se)}"
        label = h.id + (" (complement)" if h.complement else "")
        lines.append(
            f"{label:<26} {_pct(h.prior_probability):>8} {_mass(h.prior_mass):>20} {_mass(h.posterior_mass):>20} "
            f"{bf_text:>11} {post:>16}"
        )
    leader = next(h for h in result.hypotheses if h.id == result.leader)
    lines += ["", f"Leading: {leader.label} ({leader.id}), posterior probability {_pct(leader.posterior_probability)}."]
    for h in result.hypotheses:
        if h.constraints:
            lines.append(f"  {h.id}: " + "; ".join(h.constraints))
    if result.overlaps:
        lines.append("")
        lines.append("OVERLAPPING hypotheses (their probabilities are not exclusive):")
        for o in result.overlaps:
            lines.append(
                f"  {o['hypotheses'][0]} & {o['hypotheses'][1]}: {o['prior_fraction_in_both']:.2%} of prior draws in both. {o['advice']}"
            )
    if result.robustness:
        lines += ["", "Encompassing prior scaled (every prior; posterior reweighted, refitted where Pareto k > 0.7):"]
        for r in result.robustness:
            probs = ", ".join(f"{k} {_pct(v)}" for k, v in r.probabilities.items())
            if getattr(r, "method", "reweighted") == "refit":
                flag = f" (refitted: Pareto k {r.pareto_k:.2f})"
            elif getattr(r, "method", "reweighted") == "refit failed":
                flag = (
                    f" (Pareto k {r.pareto_k:.2f}: reweighting unreliable, and the refit failed its convergence checks)"
                )
            elif not r.reliable:
                flag = f" (Pareto k {r.pareto_k:.2f}: reweighting unreliable, refit to check)"
            else:
                flag = ""
            lines.append(f"  x{r.factor:.3g}: {probs}; largest change {_pct(r.max_change)}{flag}")
    return lines
