"""What a fit's likelihood was, from its draws: the concentration draws of an overdispersed fit
and the model record `update --json`, summary.json and the report show.

Light on purpose (NumPy and the study spec only): the report builds the same record from stored
draws without loading the sampler or any workflow.
"""

from __future__ import annotations

import numpy as np

from forecast.spec.study import CONCENTRATION, Study

OVERDISPERSION_INTERVAL = 0.9  # the concentration's central interval, in `update` and the report


def concentration_draws(posterior, study: Study) -> np.ndarray | None:
    """The overdispersed model's concentration draws (a fit's or a stored one's), flattened over
    (chain, draw) as ``model.build.draws_as_arrays`` flattens; None for a study without
    overdispersion."""
    if not study.overdispersed:
        return None
    if CONCENTRATION not in posterior:
        raise ValueError(f"the fit of an overdispersed study has no '{CONCENTRATION}' draws")
    return np.asarray(posterior[CONCENTRATION].values, dtype=np.float64).reshape(-1)


def central(prior_or_draws) -> dict:
    """Median and central 90% interval of a prior (``spec.priors.Prior``) or of draws."""
    lo, hi = (1 - OVERDISPERSION_INTERVAL) / 2, (1 + OVERDISPERSION_INTERVAL) / 2
    if isinstance(prior_or_draws, np.ndarray):
        med, low, high = np.quantile(prior_or_draws, [0.5, lo, hi])
    else:
        med, low, high = prior_or_draws.ppf(np.array([0.5, lo, hi]))
    return {"median": float(med), "interval_90": [float(low), float(high)]}


def model_record(study: Study, concentrations: dict[str, np.ndarray | None], labels: dict[str, str]) -> dict:
    """The likelihood a run was fitted with, for `update --json` ("model"), summary.json and the
    report (forecast.reports.text.update.overdispersion_sentence words it).

    Plain study: ``{"overdispersion": "none"}``. Overdispersed: the option, what it means, the
    concentration's prior (family, parameters, median and central 90%) and, per fitted hypothesis
    (``concentrations``: its draws; None are skipped), the posterior median and central 90%.
    """
    if not study.overdispersed:
        return {"overdispersion": study.overdispersion}
    prior = study.concentration
    assert prior is not None  # an overdispersed study always has one (DEFAULT_CONCENTRATION)
    return {
        "overdispersion": study.overdispersion,
        "meaning": (
            "each cell's cooperative share is Beta(p * concentration, (1 - p) * concentration) around the "
            "model's probability p, so one cell carries at most about concentration + 1 events' worth of evidence"
        ),
        "concentration_prior": {**prior.to_dict(), "description": prior.describe(), **central(prior)},
        "concentration": {
            hid: {"label": labels.get(hid, hid), **central(np.asarray(draws, dtype=float))}
            for hid, draws in concentrations.items()
            if draws is not None and np.size(draws)
        },
    }


__all__ = ["OVERDISPERSION_INTERVAL", "central", "concentration_draws", "model_record"]
