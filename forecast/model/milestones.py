"""Milestones: which cell's next quarter of observations would move the balance of evidence most.

For each (counterpart group, domain) cell, take the two leading hypotheses' posterior
predictive distributions for the next quarter: the number of events N (the count model of
``predictive.EventRates``, shared by both) and, given N, the number k of cooperative ones,
``p(k | N, H) = E_H[Binomial(k; N, share)]`` over H's posterior draws. Observing (N, k) changes
the log Bayes factor between the two by

    delta(N, k) = log p(k | N, H1) - log p(k | N, H2)

(the count term is common to both and cancels). Averaging over the predictive that mixes the
two hypotheses by their current posterior probabilities gives the *expected absolute change
of the log Bayes factor*, and the mutual information between the hypothesis and (N, k) gives
the *expected information gain* (nats). Both are exact sums over N = 0..n_max and k = 0..N for
the given draws; nothing is simulated. Observations are taken at full weight (grade A1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from scipy.special import logsumexp

from forecast.model.predictive import EventRates, Predictive
from forecast.spec.study import Study, quarter_label


@dataclass(frozen=True)
class Milestone:
    group: str
    domain: str
    quarter: str
    expected_events: float
    expected_abs_log_bf_change: float  # per quarter of observations
    expected_information_gain: float  # nats, per quarter
    abs_log_bf_change_per_event: float  # expected |change| from a single event
    log_bf_if_cooperative: float  # change from one cooperative event (> 0 favours the leader)
    log_bf_if_conflictual: float

    def to_dict(self) -> dict:
        return asdict(self)


def _log_binomial_mixture(share: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """log sum_s w_s Binomial(k; n, share_s) for k = 0..n."""
    k = np.arange(n + 1)
    logpmf = stats.binom.logpmf(k[None, :], n, share[:, None])
    return logsumexp(logpmf, axis=0, b=weights[:, None])


def cell_diagnosticity(
    share1: np.ndarray, w1: np.ndarray, share2: np.ndarray, w2: np.ndarray, prob1: float, count_pmf: np.ndarray
) -> tuple[float, float, float, float, float]:
    """(E|delta|, information gain, E|delta| for one event, delta if cooperative, delta if conflictual).

    ``share1``/``share2`` are the two hypotheses' draws of the cell's share next quarter with
    weights ``w1``/``w2``; ``prob1`` is hypothesis 1's probability among the two; ``count_pmf``
    is P(N = n), n = 0..n_max.
    """
    pi = np.array([prob1, 1.0 - prob1])
    abs_change = 0.0
    info = 0.0
    per_event = (0.0, 0.0, 0.0)
    for n in range(1, len(count_pmf)):
        l1 = _log_binomial_mixture(share1, w1, n)
        l2 = _log_binomial_mixture(share2, w2, n)
        delta = l1 - l2
        log_mix = np.logaddexp(np.log(pi[0]) + l1, np.log(pi[1]) + l2)
        mix = np.exp(log_mix)
        e_abs = float(mix @ np.abs(delta))
        mi = float(pi[0] * np.exp(l1) @ (l1 - log_mix) + pi[1] * np.exp(l2) @ (l2 - log_mix))
        abs_change += count_pmf[n] * e_abs
        info += count_pmf[n] * mi
        if n == 1:
            per_event = (e_abs, float(delta[1]), float(delta[0]))
    return abs_change, info, *per_event


def milestones(
    preds: dict[str, Predictive],
    probabilities: dict[str, float],
    rates: EventRates,
    study: Study,
    quarter: int,
) -> tuple[list[Milestone], tuple[str, str] | None]:
    """Cells ranked by how much next quarter's observations are expected to move the log Bayes
    factor between the two most probable hypotheses (most diagnostic first).

    Returns the ranked list and the pair (leader, runner-up); empty with ``None`` when the study
    has fewer than two hypotheses.
    """
    ranked: Sequence[str] = sorted(probabilities, key=lambda h: probabilities[h], reverse=True)
    if len(ranked) < 2:
        return [], None
    h1, h2 = ranked[0], ranked[1]
    total = probabilities[h1] + probabilities[h2]
    prob1 = probabilities[h1] / total if total > 0 else 0.5
    prob1 = float(np.clip(prob1, 1e-12, 1 - 1e-12))
    p1, p2 = preds[h1], preds[h2]
    expected = rates.expected()
    out = []
    for gi, g in enumerate(study.groups):
        for di, d in enumerate(study.domains):
            values = cell_diagnosticity(
                p1.cell(gi, di, quarter),
                p1.weights,
                p2.cell(gi, di, quarter),
                p2.weights,
                prob1,
                rates.count_pmf(gi, di),
            )
            out.append(Milestone(g.id, d.id, quarter_label(quarter), float(expected[gi, di]), *values))
    out.sort(key=lambda m: m.expected_abs_log_bf_change, reverse=True)
    return out, (h1, h2)
