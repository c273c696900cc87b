"""The priors in the analyst's terms: each hypothesis's statements beside the fitted priors.

Read from the run's own copy of the study (what the run was fitted on), never from the current
file. A prior elicited from a statement (forecast.spec.elicitation: ``share_between``,
``share_moves_at_most``, ...) keeps it as ``Prior.statement``; the report shows the analyst's own
words (``says``), the statement in plain language, and the distribution it was fitted to. A prior
written as ``{ dist, kwargs }`` is shown as the fitted prior, said to be stated as a distribution.
This is the report's own small listing (the report does not import forecast.workflows, whose
``priors.describe_priors`` lists the same for `forecast priors`).
"""

from __future__ import annotations

import dataclasses

from forecast.reports.report.records import HypothesisPriors, PriorRow, StatedPriorsSection
from forecast.spec.study import Study

STATEMENT = "statement"
DISTRIBUTION = "distribution"


def stated_priors(study: Study, colours: dict[str, str], units: dict[str, str] | None = None) -> StatedPriorsSection:
    """Per hypothesis and (hyperparameter, counterpart group): the prior as stated and as fitted.

    Rows are in the study's order of slots (per hyperparameter, every counterpart group), so a
    renderer can lay them out as a hyperparameter x group table. ``units``: each hyperparameter's
    scale in words.
    """
    groups = {g.id: g.label for g in study.groups}
    hypotheses = []
    for h in study.hypotheses:
        rows = [prior_row(param, groups.get(group, group), h.priors[(param, group)]) for param, group in study.slots]
        n = sum(r.stated_as == STATEMENT for r in rows)
        hypotheses.append(HypothesisPriors(h.id, h.label, colours[h.id], float(h.prior_probability), rows, n))
    total = sum(h.n_statements for h in hypotheses)
    n_rows = sum(len(h.rows) for h in hypotheses)
    if total == 0:
        how = (
            "Every prior of this study is stated as a distribution on the model's scale (`{ dist, kwargs }`); "
            "a study can state them in the analyst's terms instead (e.g. `share_between = [0.6, 0.9], mass = 0.9`: "
            '90% sure that 60% to 90% of interactions are cooperative), see the README, "Priors in your own terms".'
        )
    elif total == n_rows:
        how = "Every prior of this study is stated in the analyst's terms; the fitted distribution is beside it."
    else:
        how = (
            f"{total} of the {n_rows} priors {'is' if total == 1 else 'are'} stated in the analyst's terms (the fitted "
            "distribution beside each); "
            "the others are stated as a distribution on the model's scale (`{ dist, kwargs }`)."
        )
    note = (
        "What each hypothesis assumes, from the run's own copy of the study: per hyperparameter and counterpart "
        "group, the prior as the analyst stated it and the distribution the model uses. " + how
    )
    return StatedPriorsSection(
        note,
        hypotheses,
        total,
        list(study.parameters),
        [g.label for g in study.groups],
        {p: (units or {}).get(p, "") for p in study.parameters},
    )


def prior_row(parameter: str, group: str, prior) -> PriorRow:
    """One prior as stated (statement and the analyst's words, if any) and as fitted."""
    fitted = prior.describe()
    elicited = prior.statement
    statement = getattr(elicited, "statement", None)
    if elicited is None or statement is None or not hasattr(elicited, "text"):
        return PriorRow(parameter, group, fitted, DISTRIBUTION)
    says = getattr(statement, "says", None) or None
    plain = elicited
    if says:  # the plain-language statement without the analyst's words (they get their own line)
        plain = dataclasses.replace(elicited, statement=dataclasses.replace(statement, says=None))
    return PriorRow(
        parameter,
        group,
        fitted,
        STATEMENT,
        statement=plain.text(),
        says=says,
        model_interval=[float(elicited.lower), float(elicited.upper)],
        mass=float(statement.mass),
        fitted_mass=float(elicited.fitted_mass),
    )
