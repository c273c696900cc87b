"""Constraint hypotheses in the report (``constraints.json``, written by `forecast update`).

A study may state its hypotheses twice: as sets of priors (summary.json, section 1) and as
constraints on one shared encompassing model (constraints.json: the record of
forecast.workflows.constraints plus ``agreement``). The report keeps the two comparisons apart,
never in one table: the summary shows each in its own box with its robustness, and the agreement
sentence; section 1b lists each constraint hypothesis (claim and constraints in the analyst's
words, prior and posterior mass, Bayes factor against the encompassing model with its Monte Carlo
error, posterior probability, its probability with the encompassing prior widened and narrowed),
the overlap warnings, the method note and the encompassing prior in the analyst's terms.

The headline of both is worded by forecast.stats.wording.two_comparisons: never stronger than the
weaker of the two, and it says when they disagree. A Bayes factor whose region held no posterior
draw is shown as a bound ("< x"; the leader against such a runner-up as "> x"), never as zero or
infinity. A file of another shape is a note in the section, never an error.
"""

from __future__ import annotations

import dataclasses
import math

from forecast.reports.report.priors import DISTRIBUTION, STATEMENT, prior_row
from forecast.reports.report.records import (
    ComparisonBox,
    ConstraintRow,
    ConstraintSection,
    Headline,
    HypothesisPriors,
    PriorRow,
    RobustnessSection,
    Summary,
)
from forecast.reports.report.statistics import num
from forecast.spec.study import Study
from forecast.stats.wording import (
    ROBUSTNESS_NOT_CHECKED,
    Side,
    confidence,
    favours,
    likelihood_word,
    mc_error_can_flip,
    strength_phrase,
    two_comparisons,
)

SHAPE_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError)
ENCOMPASSING_COLOUR = "#6b6b6b"
COMMAND = "forecast update"
PRIORS_TITLE = "Hypotheses stated as sets of priors"
CONSTRAINTS_TITLE = "The claims stated as constraints on one model"


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "—" if x is None or not math.isfinite(x) else format(x, spec)


def _mass(m: dict) -> str:
    value, se, upper = num(m.get("value")), num(m.get("se")), m.get("upper")
    if value == 0 and upper is not None:
        return f"< {num(upper):.2g} (no draw inside)"
    how = " (stepwise)" if m.get("method") == "stepwise" else ""
    return f"{value:.3g} ± {se:.2g}{how}"


def _bf_text(value: float, bound: str | None) -> str:
    """A Bayes factor as shown: "6.1", "1/8.2", and "< x" / "> x" for bounds (never 0 or infinity)."""
    sign = {"upper": "< ", "lower": "> "}.get(bound or "", "")
    if value <= 0 or not math.isfinite(value):
        return sign + f"{value:.3g}"
    return sign + (f"{value:.3g}" if value >= 1 else f"1/{1 / value:.3g}")


def _scale_label(factor: float) -> str:
    return f"×{factor:.3g} wider" if factor >= 1 else f"÷{1 / factor:.3g} narrower"


# --- the section ---------------------------------------------------------------------------------------


def constraint_section(data: dict | None, study: Study, latest: str | None = None) -> ConstraintSection:
    """Section 1b from constraints.json; not available (with what adds it) when the run lacks it."""
    if data is None:
        if study.constraints is None:
            return ConstraintSection(False, "")
        return ConstraintSection(
            False,
            "The study states constraint hypotheses, but this run holds no comparison of them "
            f"(constraints.json): `{COMMAND}` adds it.",
        )
    try:
        return _section(data, study, latest)
    except SHAPE_ERRORS as e:
        return ConstraintSection(
            False, f"constraints.json could not be read ({type(e).__name__}: {e}); run `{COMMAND}` again."
        )


def _section(data: dict, study: Study, latest: str | None) -> ConstraintSection:
    hyps = data["hypotheses"]
    labels = {str(h["id"]): str(h["label"]) for h in hyps}
    robustness = [r for r in data.get("robustness") or [] if isinstance(r, dict)]
    factors = [float(r["factor"]) for r in robustness]
    ranked = sorted(hyps, key=lambda h: num(h["posterior_probability"]), reverse=True)
    leader = str(data.get("leader") or ranked[0]["id"])
    top = next(h for h in hyps if str(h["id"]) == leader)
    runner = next((h for h in ranked if str(h["id"]) != leader), None)
    rows = []
    for h in hyps:
        bf = h["bayes_factor"]
        bound = bf.get("bound")
        log_bf = num(bf.get("log_bf"))
        value = math.exp(log_bf) if math.isfinite(log_bf) else float("nan")
        p, se, upper = (
            num(h["posterior_probability"]),
            num(h["posterior_probability_se"]),
            num(h.get("posterior_probability_upper", h["posterior_probability"])),
        )
        rows.append(
            ConstraintRow(
                id=str(h["id"]),
                label=str(h["label"]),
                claim=" ".join(str(h.get("claim", "")).split()),
                constraints=[str(c) for c in h.get("constraints") or []],
                complement=bool(h.get("complement")),
                prior_probability=num(h["prior_probability"]),
                prior_mass=_mass(h["prior_mass"]),
                posterior_mass=_mass(h["posterior_mass"]),
                bayes_factor=value if math.isfinite(value) else None,
                bayes_factor_text=_bf_text(value, bound) if math.isfinite(value) else "—",
                bayes_factor_bound=None if bound is None else str(bound),
                log_bayes_factor=log_bf if math.isfinite(log_bf) else None,
                log_bayes_factor_se=None if bound else num(bf.get("log_bf_se")),
                posterior_probability=p,
                posterior_probability_se=se,
                posterior_probability_upper=upper,
                posterior_text=f"< {upper:.3f}" if bound else f"{p:.3f} ± {se:.3f}",
                scaled=[num((r.get("probabilities") or {}).get(h["id"])) for r in robustness],
                leader=str(h["id"]) == leader,
            )
        )
    # The leader against the runner-up: a ratio of two Bayes factors against the encompassing model.
    versus, bf_lr, strength, can_flip = "", None, "", True
    if runner is not None:
        a, b = top["bayes_factor"], runner["bayes_factor"]
        log_lr = num(a["log_bf"]) - num(b["log_bf"])
        bf_lr = math.exp(log_lr)
        bound = None
        if b.get("bound") and not a.get("bound"):
            bound = "lower"  # the runner-up's is an upper bound: the ratio is at least this
        elif a.get("bound") and not b.get("bound"):
            bound = "upper"
        elif a.get("bound"):
            bound = "unknown"
        se = math.hypot(num(a.get("log_bf_se")), num(b.get("log_bf_se")))
        can_flip = False if bound == "lower" else mc_error_can_flip(log_lr, se)
        if bound == "unknown":
            versus = f"unknown against '{labels[str(runner['id'])]}' (no posterior draw in either region)"
            bf_lr = None
        else:
            versus = f"{_bf_text(bf_lr, bound)} against '{labels[str(runner['id'])]}'"
            strength = strength_phrase(bf_lr)
    # Robustness: the leader over the encompassing prior widened and narrowed.
    base_p = num(top["posterior_probability"])
    stable, leader_range, notes = None, None, []
    if robustness:
        leads = []
        ps = [base_p]
        for r in robustness:
            probs = {str(k): num(v) for k, v in (r.get("probabilities") or {}).items()}
            leads.append(max(probs, key=lambda k: probs[k]) if probs else leader)
            ps.append(probs.get(leader, float("nan")))
            if not r.get("reliable", True):
                notes.append(
                    f"{_scale_label(float(r['factor']))}: Pareto k {num(r.get('pareto_k')):.2f} > 0.7, so the "
                    "reweighted probabilities are unreliable; "
                    + (
                        "the refit of the encompassing model with that prior failed its convergence checks."
                        if r.get("method") == "refit failed"
                        else "a refit of the encompassing model with that prior would check them."
                    )
                )
        # The rule of forecast.workflows.constraints.constraint_leader_stable: False when the lead changes
        # under a scaling; None (not shown) when it holds but a scaling's reweighting is unreliable.
        held = all(x == leader for x in leads)
        unreliable = [float(r["factor"]) for r in robustness if not r.get("reliable", True)]
        stable = (None if unreliable else True) if held else False
        finite = [x for x in ps if math.isfinite(x)]
        leader_range = (min(finite), max(finite)) if finite else None
        span = f" ({_fmt(leader_range[0])} to {_fmt(leader_range[1])})" if leader_range else ""
        widths = ", ".join(_scale_label(f) for f in factors)
        if stable:
            robust_text = f"Robust: '{labels[leader]}' leads with the encompassing prior as stated and {widths}{span}."
        elif held:
            robust_text = (
                f"Not shown robust: '{labels[leader]}' leads with the encompassing prior as stated and {widths}{span}, "
                f"but the reweighting with it {', '.join(_scale_label(f) for f in unreliable)} is unreliable "
                "(Pareto k above 0.7) and no converged refit replaced it."
            )
        else:
            other = next(x for x in leads if x != leader)
            k = leads.index(other)
            robust_text = (
                f"Not robust: '{labels.get(other, other)}' leads with the encompassing prior "
                f"{_scale_label(factors[k])}; '{labels[leader]}' ranges{span}."
            )
    else:
        robust_text = "Not evaluated: constraints.json holds no scaled encompassing prior."
    converged = bool(data.get("converged", True))
    conf = confidence(
        bayes_factor=bf_lr if bf_lr is not None else 1.0,
        mc_can_flip=can_flip,
        leader_stable=stable,
        leader_range=leader_range,
        loo=None,
        converged=converged,
    )
    word = likelihood_word(min(max(base_p, 0.0), 1.0)) if math.isfinite(base_p) else None
    opening = f"Through {latest}, on" if latest else "On"
    if runner is None:
        headline = f"{opening} one encompassing model '{labels[leader]}' is the only constraint hypothesis."
    elif bf_lr is None:
        headline = (
            f"{opening} one encompassing model '{labels[leader]}' leads ({_fmt(base_p)}, {word}); its Bayes factor "
            f"against '{labels[str(runner['id'])]}' is unknown (no posterior draw in either region)."
        )
    elif bf_lr >= 1:
        headline = (
            f"{opening} one encompassing model the evidence {favours(bf_lr)} '{labels[leader]}' ({_fmt(base_p)}, "
            f"{word}; Bayes factor {versus}, {strength})."
        )
    else:
        headline = (
            f"{opening} one encompassing model '{labels[leader]}' is the most probable constraint hypothesis "
            f"({_fmt(base_p)}, {word}) on its prior probability alone (Bayes factor {versus})."
        )
    headline += f" {robust_text}"
    not_shown = "its robustness to a wider or narrower encompassing prior is not shown (the reweighting is unreliable)"
    reasons = [not_shown if r == ROBUSTNESS_NOT_CHECKED and robustness else r for r in conf.reasons]
    headline += f" Confidence: {conf.level}" + (", because " + "; ".join(reasons) if reasons else "") + "."
    warning = None
    if not converged:
        problems = "; ".join(str(p) for p in (data.get("diagnostics") or {}).get("problems") or [])
        warning = (
            "UNRELIABLE: the encompassing model's fit failed its convergence checks"
            + (f" ({problems})" if problems else "")
            + "; every constraint figure is unreliable until it is refitted with more --tune/--draws."
        )
        headline = f"{warning} {headline}"
    overlaps = []
    for o in data.get("overlaps") or []:
        a, b = (labels.get(str(x), str(x)) for x in o["hypotheses"][:2])
        overlaps.append(
            f"'{a}' and '{b}' overlap: {num(o.get('prior_fraction_in_both')):.1%} of the prior draws lie in both, "
            f"so their probabilities are not exclusive. {o.get('advice', '')}".strip()
        )
    groups = {g.id: g.label for g in study.groups}
    predictive = [
        f"{groups.get(str(g), str(g))}: {num(q[0]):.2f} / {num(q[1]):.2f} / {num(q[2]):.2f}"
        for g, q in (data.get("prior_predictive") or {}).items()
    ]
    encompassing, enc_note = _encompassing(data, study)
    n_groups = len(study.groups)
    same = bool(encompassing.rows) and len(encompassing.rows) == n_groups * len(study.parameters)
    for i in range(0, len(encompassing.rows) if same else 0, n_groups):
        block = encompassing.rows[i : i + n_groups]
        same = same and len({(r.fitted, r.stated_as, r.says, r.mass) for r in block}) == 1
    if same and n_groups > 1:
        enc_note += (
            f" Every counterpart group has the same prior: each is shown once, as stated for '{study.groups[0].label}'."
        )

    n_prior, n_post = data.get("prior_draws"), data.get("posterior_draws")
    note = (
        "From constraints.json (`forecast update`): each hypothesis is a region of ONE shared encompassing model "
        "(the claims as constraints on interpretable quantities), so every hypothesis has the same priors and their "
        "widths largely cancel. Bayes factors are against the encompassing model (posterior mass over prior mass; "
        f"{n_prior} prior draws, {n_post} posterior draws), ± their Monte Carlo error; posterior probabilities "
        "include the complement, 'none of these'. This comparison is kept apart from section 1's: the two answer "
        "the question with the hypotheses stated in two different ways."
    )
    return ConstraintSection(
        available=True,
        note=note,
        rows=rows,
        leader=leader,
        runner_up=None if runner is None else str(runner["id"]),
        versus=versus,
        bayes_factor=bf_lr,
        strength=strength,
        likelihood=word,
        confidence=conf.level,
        confidence_reasons=reasons,
        robust=stable,
        robustness=robust_text,
        factors=[_scale_label(f) for f in factors],
        robustness_notes=notes,
        overlaps=overlaps,
        method=str(data.get("method", "")),
        encompassing=encompassing,
        encompassing_note=enc_note,
        encompassing_same=same and n_groups > 1,
        prior_predictive=predictive,
        converged=converged,
        warning=warning,
        agreement=data.get("agreement") if isinstance(data.get("agreement"), dict) else None,
        headline=headline,
        n_prior_draws=None if n_prior is None else int(n_prior),
        n_posterior_draws=None if n_post is None else int(n_post),
    )


def _encompassing(data: dict, study: Study) -> tuple[HypothesisPriors, str]:
    """The encompassing prior in the analyst's terms: from the run's own study copy (its statements and
    the analyst's words), else as constraints.json lists it (the fitted distributions only)."""
    groups = {g.id: g.label for g in study.groups}
    spec = study.constraints
    if spec is not None and all(slot in spec.priors for slot in study.slots):
        rows = [prior_row(param, groups.get(group, group), spec.priors[(param, group)]) for param, group in study.slots]
        source = "from the run's own copy of the study"
    else:
        rows = [
            PriorRow(str(p["parameter"]), groups.get(str(p["group"]), str(p["group"])), str(p["prior"]), DISTRIBUTION)
            for p in data.get("encompassing_priors") or []
        ]
        source = "as constraints.json lists it (the run's study copy does not state it)"
    n = sum(r.stated_as == STATEMENT for r in rows)
    prior = HypothesisPriors("encompassing", "Encompassing prior", ENCOMPASSING_COLOUR, 1.0, rows, n)
    note = (
        f"The one prior every constraint hypothesis shares, {source}: each hypothesis's prior is this prior "
        "restricted to its region. "
        + (
            f"{n} of its {len(rows)} priors are stated in the analyst's terms, the fitted distribution beside each."
            if n
            else "Its priors are stated as distributions on the model's scale."
        )
    )
    return prior, note


def with_evidence(c: ConstraintSection, evidence: dict | None, shown: int = 5) -> ConstraintSection:
    """Section 1b with what `forecast evidence` found for the constraint hypotheses (critical items)."""
    if not c.available:
        return c
    part = (evidence or {}).get("constraints")
    if evidence is None:
        text = "`forecast evidence` adds which observations are critical to the constraint comparison."
    elif not part:
        text = "evidence.json holds no constraint comparison (run `forecast evidence` again to add it)."
    else:
        try:
            labels = {str(k): str(v) for k, v in (part.get("labels") or {}).items()}
            critical = [str(x) for x in part.get("critical") or []]
            n = len(part.get("observations") or [])
            groups = sorted(part.get("groups") or [], key=lambda g: -num(g.get("max_shift")))
            if critical:
                listed = ", ".join(critical[:shown]) + (
                    f" and {len(critical) - shown} more" if len(critical) > shown else ""
                )
                text = (
                    f"{len(critical)} of {n} observations are critical to the constraint comparison (removing or "
                    f"reversing one changes the leading constraint hypothesis): {listed} (evidence.json)."
                )
            else:
                text = (
                    f"No single observation is critical to the constraint comparison: removing or reversing any one "
                    f"of the {n} leaves '{labels.get(c.leader or '', c.leader)}' in the lead (evidence.json)."
                )
            if groups:
                g = groups[0]
                text += (
                    f" The evidence group that moves it most: {g.get('label', g.get('id'))} (the largest change of "
                    f"a probability without it: {num(g.get('max_shift')):.2f})."
                )
            if part.get("n_unreliable"):
                text += f" {int(part['n_unreliable'])} estimate(s) have Pareto k above the threshold (not refitted)."
        except SHAPE_ERRORS as e:
            text = f"evidence.json's constraint comparison could not be read ({type(e).__name__})."
    return dataclasses.replace(c, evidence=text)


# --- the summary and the headline: both comparisons, kept apart ------------------------------------------


def priors_box(
    head: Headline, summary: Summary, robustness: RobustnessSection, judgement: dict | None
) -> ComparisonBox:
    """The prior-specified comparison's answer (summary.json's judgement, else its support table)."""
    labels = {r.id: r.label for r in head.rows}
    top = head.rows[0]
    j = judgement if isinstance(judgement, dict) and judgement.get("leader") in labels else None
    if j is not None:
        p = num(j.get("posterior_probability"))
        bf = num(j.get("bayes_factor"))
        runner = labels.get(str(j.get("runner_up")), str(j.get("runner_up")))
        evidence = (
            f"Bayes factor {_bf_text(bf, None)} against '{runner}', {strength_phrase(bf)}" if math.isfinite(bf) else ""
        )
        return ComparisonBox(
            "priors",
            PRIORS_TITLE,
            labels[j["leader"]],
            p,
            str(j.get("likelihood")) if j.get("likelihood") else None,
            evidence,
            summary.robustness,
            summary.robust,
            None if j.get("confidence") is None else str(j["confidence"]),
            [str(r) for r in j.get("confidence_reasons") or []],
            "summary.json (`forecast update`)",
        )
    p = top.posterior_probability
    bf = top.bayes_factor
    evidence = f"Bayes factor {top.bayes_factor_text}, {top.jeffreys}" if bf is not None else ""
    return ComparisonBox(
        "priors",
        PRIORS_TITLE,
        top.label,
        p,
        likelihood_word(min(max(p, 0.0), 1.0)) if math.isfinite(p) else None,
        evidence,
        summary.robustness,
        summary.robust,
        None,
        [],
        "summary.json (`forecast update`); this run states no confidence (an older update)",
    )


def constraints_box(c: ConstraintSection) -> ComparisonBox:
    top = next(r for r in c.rows if r.id == c.leader)
    return ComparisonBox(
        "constraints",
        CONSTRAINTS_TITLE,
        top.label,
        top.posterior_probability,
        c.likelihood,
        f"Bayes factor {c.versus}, {c.strength}" if c.strength else (f"Bayes factor {c.versus}" if c.versus else ""),
        c.robustness,
        c.robust,
        c.confidence,
        list(c.confidence_reasons),
        "constraints.json (`forecast update`)",
    )


def _agree(c: ConstraintSection, head: Headline) -> bool | None:
    a = c.agreement or {}
    if isinstance(a.get("agree"), bool):
        return a["agree"]
    if head.constraint_only or not head.rows:
        return None
    return head.leader == c.leader  # no agreement stored: the same id is the same claim


def with_constraints(head: Headline, summary: Summary, c: ConstraintSection, pbox: ComparisonBox | None):
    """The headline and the summary when the run holds constraint hypotheses: both comparisons kept
    apart, the agreement sentence, and a headline no stronger than the weaker of the two."""
    if not c.available:
        return head, summary
    cbox = constraints_box(c)
    sentence = (c.agreement or {}).get("sentence")
    sentence = None if sentence is None else str(sentence)
    if pbox is None:  # a constraint-only run
        answer = (
            f"Most probable answer: '{cbox.leader}', {cbox.likelihood} ({_fmt(cbox.probability)}), "
            f"with {cbox.confidence} confidence."
        )
        head = dataclasses.replace(head, conclusion=c.headline, prior_conclusion="")
        summary = dataclasses.replace(
            summary,
            answer=answer,
            likelihood=cbox.likelihood,
            confidence=cbox.confidence,
            confidence_reasons=list(cbox.confidence_reasons),
            conclusion=c.headline,
            robustness=c.robustness,
            robust=c.robust,
            comparisons=[cbox],
            agreement=sentence,
            agree=None,
        )
        return head, summary
    agree = _agree(c, head)
    both = two_comparisons(
        Side(pbox.leader or "", num(pbox.probability), _leader_bf(head, pbox), pbox.confidence),
        Side(cbox.leader or "", num(cbox.probability), c.bayes_factor, cbox.confidence),
        bool(agree) if agree is not None else pbox.leader == cbox.leader,
    )
    if both.agree:
        answer = (
            f"Most probable answer: '{pbox.leader}' stated as priors, '{cbox.leader}' stated as constraints; "
            f"{both.likelihood}, with {both.confidence} confidence (the weaker of the two comparisons)."
        )
    else:
        answer = (
            f"No single answer: the two comparisons disagree ('{pbox.leader}' stated as priors, '{cbox.leader}' "
            f"stated as constraints); {both.confidence} confidence."
        )
    conclusion = both.sentence
    if sentence and sentence not in conclusion:
        conclusion += f" {sentence}"
    if both.reasons and both.agree:  # a disagreement's first sentence already says why confidence is low
        conclusion += " Confidence " + both.confidence + " because " + "; ".join(both.reasons) + "."
    if not head.converged or not c.converged:
        conclusion = "UNRELIABLE (a fit failed its checks): " + conclusion
    head = dataclasses.replace(head, conclusion=conclusion, prior_conclusion=head.conclusion)
    summary = dataclasses.replace(
        summary,
        answer=answer,
        likelihood=both.likelihood,
        confidence=both.confidence,
        confidence_reasons=list(both.reasons),
        conclusion=conclusion,
        comparisons=[pbox, cbox],
        agreement=sentence,
        agree=both.agree,
    )
    return head, summary


def _leader_bf(head: Headline, box: ComparisonBox) -> float | None:
    top = head.rows[0]
    return top.bayes_factor if top.bayes_factor is not None and math.isfinite(top.bayes_factor) else None


__all__ = ["constraint_section", "constraints_box", "priors_box", "with_constraints", "with_evidence"]
