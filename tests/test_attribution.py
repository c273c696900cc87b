"""What moved it (forecast.workflows.history.attribution): the change of the log Bayes factor per
interval, split over its new events by the chain rule and importance sampling.

Fast: the importance-sampling estimator against closed forms (a Gaussian conjugate model, where
every sequential predictive density is exact, from both ends of an interval) and against exact
quadrature (tests/exact.py) from prior draws; the events an interval adds (a better-corroborated
report swaps its event's term); the renderer and the plot on a hand-written history.
Slow (they sample): on a tiny static study the events' contributions sum to the change of the
bridge-sampled log Bayes factor within Monte Carlo error, and the importance-weighted density of
the next quarter's events from a fit matches exact quadrature.
"""

from __future__ import annotations

import json
from pathlib import Path

import exact
import numpy as np
import pytest
from builders_history import evidence_between
from helpers import base_study, event, hypothesis, prior, quarterly_events, write_mini
from scipy import stats

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.fit.sampler import SamplerSettings, StudyModel
from forecast.model.build import draws_as_arrays
from forecast.model.predictive import prior_draws
from forecast.runs.layout import HISTORY
from forecast.spec.study import load_study
from forecast.workflows.history import (
    Attribution,
    EventContribution,
    History,
    HistoryPoint,
    IntervalAttribution,
    compute_history,
    decompose,
    known_quarter,
    load_history,
    psis_log_means,
)
from forecast.workflows.history.attribution import (
    counted_reports,
    interval_evidence,
    k_threshold,
    parts_of,
)

SETTINGS = SamplerSettings(draws=500, tune=300, chains=4, seed=5)
SE_MULTIPLE = 4.0  # agreement required, in combined Monte Carlo standard errors
SLACK = 0.02  # nats, on top of the standard errors (quadrature and rounding)


# --- the estimator on closed forms -----------------------------------------------------------------


def test_psis_log_mean_of_lognormal_ratios_is_exact_within_its_error_and_k_flags_heavy_tails():
    """E[exp(aX)] = exp(a^2 / 2) for X ~ N(0, 1): light tails are estimated within their MC error,
    heavy ones get a Pareto k above the threshold."""
    x = np.random.default_rng(1).standard_normal(20_000)
    est = psis_log_means(np.stack([0.3 * x, 1.0 * x, 4.0 * x]), chains=None)
    for a, value, se, k in zip((0.3, 1.0), est.value, est.se, est.pareto_k, strict=False):
        assert abs(value - a * a / 2) <= SE_MULTIPLE * se + 1e-3, (a, value, se)
        assert k < 0.5
    assert est.pareto_k[2] > k_threshold(20_000)
    constant = psis_log_means(np.full((1, 100), -1.5), chains=4)
    assert constant.value[0] == -1.5 and constant.se[0] == 0 and constant.pareto_k[0] == 0


def _conjugate(n_events: int, sd: float, seed: int):
    """theta ~ N(0, 1) before the interval; events y_k ~ N(theta, sd^2). Draws from both ends of
    the interval and the exact sequential log predictive densities log p(y_k | y_<k)."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0.8, sd, n_events)
    mean, var, exact_terms = 0.0, 1.0, []
    for yk in y:
        exact_terms.append(stats.norm.logpdf(yk, mean, np.sqrt(var + sd * sd)))
        var_new = 1.0 / (1.0 / var + 1.0 / sd**2)
        mean, var = var_new * (mean / var + yk / sd**2), var_new
    draws = 8_000
    before = rng.standard_normal(draws)
    after = rng.normal(mean, np.sqrt(var), draws)
    terms = lambda theta: stats.norm.logpdf(y[:, None], theta[None, :], sd)  # noqa: E731
    return terms(before), terms(after), np.array(exact_terms)


def test_contributions_are_the_exact_sequential_predictive_densities_and_telescope():
    earlier, later, truth = _conjugate(6, sd=1.5, seed=2)
    forward = decompose(earlier, later, None, None)
    assert forward.from_earlier == 6 and forward.reliable  # light tails: the earlier draws alone
    assert forward.contributions.sum() == pytest.approx(forward.total, abs=1e-12)
    assert forward.total == pytest.approx(truth.sum(), abs=SE_MULTIPLE * forward.se + SLACK)
    np.testing.assert_allclose(forward.contributions, truth, atol=SE_MULTIPLE * forward.se + SLACK)
    # Carried from the later draws, wholly or from any split, the chain gives the same numbers.
    for m in (0, 2, 5):
        split = decompose(earlier, later, None, None, split=m)
        assert split.from_earlier == m
        assert split.contributions.sum() == pytest.approx(split.total, abs=1e-12)
        np.testing.assert_allclose(split.contributions, truth, atol=SE_MULTIPLE * split.se + SLACK)


def test_heavy_tailed_forward_weights_are_split_between_both_ends_of_the_interval():
    """Many sharp events: the earlier draws alone cannot weight them all (k far above the
    threshold); the later draws carry the rest of the chain, the split keeps k low, and the
    densities are still the exact ones."""
    earlier, later, truth = _conjugate(100, sd=0.12, seed=4)
    alone = decompose(earlier, None, None, None)
    assert not alone.reliable and alone.pareto_k > alone.threshold
    both = decompose(earlier, later, None, None)
    assert 0 < both.from_earlier < 100 and both.reliable
    assert both.contributions.sum() == pytest.approx(both.total, abs=1e-9)
    assert both.total == pytest.approx(truth.sum(), abs=SE_MULTIPLE * both.se + SLACK)
    np.testing.assert_allclose(both.contributions, truth, atol=SE_MULTIPLE * both.se + SLACK)


# --- the evidence of an interval ---------------------------------------------------------------------


def static_study(tmp_path: Path, rows: list[dict]) -> Path:
    study = base_study()
    study["time"] = {"step": "quarter", "start": "2020Q1", "end": "2020Q4", "components": []}
    warm = {"tilt": {"all": prior("Normal", mu=0.5, sigma=1.0)}, "spread": {"all": prior("HalfNormal", sigma=0.7)}}
    cold = {"tilt": {"all": prior("Normal", mu=-0.5, sigma=1.0)}, "spread": {"all": prior("HalfNormal", sigma=0.7)}}
    study["hypotheses"] = [hypothesis("warm", 0.5, warm), hypothesis("cold", 0.5, cold)]
    path, _ = write_mini(tmp_path, rows, study)
    return path


def _cell_loglik(parts, cells) -> np.ndarray:
    a, b = parts
    eta = a[:, cells.group, cells.domain] + b[:, cells.group, cells.quarter]
    return (-cells.w_coop * np.logaddexp(0.0, -eta) - cells.w_conf * np.logaddexp(0.0, eta)).sum(axis=1)


def test_an_interval_adds_its_new_events_and_swaps_a_better_corroborated_report(tmp_path):
    rows = [
        event(1, event_date="2020-01-10", counterpart="russia", reliability="C3"),
        event(2, event_date="2020-02-10", counterpart="us", domain="energy", outcome="conflictual", intensity="-2"),
        event(3, event_date="2020-05-01", counterpart="eu"),
        # A better report (A1) of event 1, known in Q2: from Q2 on it counts instead of E1.
        event(
            4, event_date="2020-01-10", report_date="2020-05-20", counterpart="russia", reliability="A1", origin_id="E1"
        ),
        event(5, event_date="2020-04-02", counterpart="russia", outcome="conflictual", intensity="-1"),
        event(6, event_date="2020-06-01", counterpart="eu", reliability="C3"),
    ]
    study = load_study(static_study(tmp_path, rows))
    table = load_observations(study).table
    known = known_quarter(table)
    q1, q2 = int(known.min()), int(known.max())
    _, ev = evidence_between(table, known, q1, q2, study)
    # Chained by report date: E5 (04-02), E3 (05-01), E4 (05-20, replacing E1), E6 (06-01).
    assert [table["id"].iloc[r] for r in ev.rows] == ["E5", "E3", "E4", "E6"]
    assert [[table["id"].iloc[p] for p in r] for r in ev.replaced] == [[], [], ["E1"], []]
    # Exactly the change of the likelihood: log p(y_Q2 | theta) - log p(y_Q1 | theta), draw by draw.
    draws = prior_draws(study, study.hypotheses[0], 50, np.random.default_rng(0))
    parts = parts_of(draws, study)
    by_event = ev.loglik(parts)
    full = _cell_loglik(parts, cell_data(table[known <= q2], study))
    first = _cell_loglik(parts, cell_data(table[known <= q1], study))
    np.testing.assert_allclose(by_event.sum(axis=0), full - first, atol=1e-10)
    # An interval with too many events is chained in blocks of one counterpart, domain and
    # outcome: E3 and E6 (eu, defence, cooperative) become one, with the same likelihood.
    blocked = ev.blocks(table)
    assert [table["id"].iloc[r] for r in blocked.rows] == ["E5", "E3", "E4"] and list(blocked.count) == [1, 2, 1]
    assert blocked.n_events == 4 and blocked.replaced == ev.replaced[:3]
    np.testing.assert_allclose(blocked.loglik(parts).sum(axis=0), full - first, atol=1e-10)
    np.testing.assert_allclose(blocked.loglik(parts)[[0, 2]], by_event[[0, 2]], atol=1e-12)
    np.testing.assert_allclose(blocked.added_weight, [0.81, 0.81 + 0.5625, 1.0])  # B2, B2 + C3, A1


def _exact_log_ml(study, table, rows, h) -> float:
    """log p(rows | h) by quadrature (tests/exact.py), tallied from the rows as written."""
    sub = table.iloc[list(rows)]
    total = 0.0
    for g in study.groups:
        counts = []
        for d in study.domains:
            s = sub[(sub["group"] == g.id) & (sub["domain"] == d.id)]
            counts.append(
                (float((s["weight"] * s["cooperative"]).sum()), float((s["weight"] * ~s["cooperative"]).sum()))
            )
        tilt, spread = h.priors[("tilt", g.id)], h.priors[("spread", g.id)]
        total += exact.log_ml_group(
            exact.pymc_prior(tilt.dist, **tilt.kwargs), exact.pymc_prior(spread.dist, **spread.kwargs), counts
        )
    return total


FIRST_QUARTER = [
    ("us", "defence", "cooperative", "2", "A1"),
    ("russia", "energy", "conflictual", "-2", "B2"),
    ("eu", "energy", "cooperative", "3", "C3"),
    ("russia", "defence", "cooperative", "1", "A1"),
]
SECOND_QUARTER = [
    ("us", "defence", "conflictual", "-1", "B2"),
    ("russia", "energy", "conflictual", "-3", "A1"),
    ("russia", "defence", "cooperative", "2", "B2"),
]


def exact_rows() -> list[dict]:
    rows = []
    for n, (c, d, o, i, r) in enumerate(FIRST_QUARTER, start=1):
        rows.append(
            event(n, event_date=f"2020-02-{n:02d}", counterpart=c, domain=d, outcome=o, intensity=i, reliability=r)
        )
    for n, (c, d, o, i, r) in enumerate(SECOND_QUARTER, start=len(rows) + 1):
        rows.append(
            event(n, event_date=f"2020-05-{n:02d}", counterpart=c, domain=d, outcome=o, intensity=i, reliability=r)
        )
    return rows


def test_sequential_densities_from_prior_draws_match_exact_quadrature(tmp_path):
    """The first interval is weighted from the prior: each event's log p(e_k | e_<k, H) equals the
    difference of exact log marginal likelihoods (quadrature) within its Monte Carlo error."""
    study = load_study(static_study(tmp_path, exact_rows()))
    table = load_observations(study).table
    known = known_quarter(table)
    after, roots = counted_reports(table, known, int(known.min()), study)
    ev = interval_evidence(table, study, set(), after, roots)
    h = study.hypotheses[0]
    draws = prior_draws(study, h, 16_000, np.random.default_rng(3))
    dec = decompose(ev.loglik(parts_of(draws, study)), None, None, None)
    log_ml = [_exact_log_ml(study, table, ev.rows[:k], h) for k in range(ev.n_events + 1)]
    assert dec.reliable
    np.testing.assert_allclose(np.cumsum(dec.contributions), np.array(log_ml[1:]), atol=SE_MULTIPLE * dec.se + SLACK)


# --- slow: sampling ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_importance_weighted_density_from_a_fit_matches_exact_quadrature(tmp_path):
    """Fit the first quarter; the next quarter's events weighted from that fit's draws give
    log p(y_Q2 | y_Q1, H) = log p(y_Q1, y_Q2 | H) - log p(y_Q1 | H), as quadrature has it."""
    study = load_study(static_study(tmp_path, exact_rows()))
    table = load_observations(study).table
    known = known_quarter(table)
    q1, q2 = int(known.min()), int(known.max())
    h = study.hypotheses[1]
    model = StudyModel(study, cell_data(table, study))
    fit = model.fit(h, SETTINGS, cells=cell_data(table[known <= q1], study))
    before, ev = evidence_between(table, known, q1, q2, study)
    terms = ev.loglik(parts_of(draws_as_arrays(fit.trace.posterior, study), study))
    dec = decompose(terms, None, SETTINGS.chains, None)
    first = sorted(before)
    log_ml = [_exact_log_ml(study, table, first + list(ev.rows[:k]), h) for k in range(ev.n_events + 1)]
    assert dec.reliable
    np.testing.assert_allclose(
        np.cumsum(dec.contributions), np.array(log_ml[1:]) - log_ml[0], atol=SE_MULTIPLE * dec.se + SLACK
    )


def tiny_study(tmp_path: Path) -> Path:
    """Two groups, two domains, 2020Q1..2020Q4, no time components; evidence in Q1, Q2, Q3 and Q4."""
    rows = quarterly_events(((1, 6), (4, 6), (7, 2), (10, 8)))
    return static_study(tmp_path, rows)


@pytest.mark.slow
def test_attributions_sum_to_the_change_of_the_log_bayes_factor_within_monte_carlo_error(tmp_path):
    study = load_study(tiny_study(tmp_path))
    obs = load_observations(study)
    history = compute_history(study, obs, StudyModel(study, cell_data(obs.table, study)), SETTINGS)
    a = history.attribution
    assert a is not None and a.hypotheses[0] == max(
        history.points[-1].probabilities, key=history.points[-1].probabilities.get
    )
    assert [i.label for i in a.intervals] == ["2019Q4..2020Q1", "2020Q1..2020Q2", "2020Q2..2020Q3", "2020Q3..2020Q4"]
    assert [i.n_events for i in a.intervals] == [6, 6, 2, 8]
    for i in a.intervals:
        assert i.attributed, i.note
        # The events' contributions sum exactly to the importance-sampled change of the interval ...
        shares = sum(e.contribution for e in i.top_events) + i.other_contribution
        assert shares == pytest.approx(i.importance_change, abs=1e-9)
        # ... which is the change of the bridge-sampled log Bayes factor within Monte Carlo error.
        assert abs(i.importance_change - i.change) <= SE_MULTIPLE * np.hypot(i.importance_change_se, i.change_se)
        assert i.change == pytest.approx(i.log_bf_after - i.log_bf_before)
    # The whole window: the changes add up to the log Bayes factor at the end (from 0 before any evidence).
    assert a.intervals[0].log_bf_before == 0.0
    assert sum(i.change for i in a.intervals) == pytest.approx(a.log_bf)
    assert a.top_events and abs(a.top_events[0].contribution) == max(abs(e.contribution) for e in a.top_events)


# --- the renderer and the plot on a hand-written history -------------------------------------------


def _event(eid: str, date: str, contribution: float, interval: str) -> EventContribution:
    return EventContribution(
        id=eid,
        event_date=date,
        report_date=date,
        counterpart="russia",
        domain="energy",
        outcome="cooperative",
        description=f"Pipeline deal {eid} " + "with a long description " * 6,
        weight=1.0,
        contribution=contribution,
        interval=interval,
    )


def _point(quarter: str, as_of: str, p: float, source: str = "fit", lml: float | None = -5.0) -> HistoryPoint:
    return HistoryPoint(
        quarter=quarter,
        as_of=as_of,
        n_observations=6,
        new_observations=3,
        source=source,
        probabilities={"warm": p, "cold": 1 - p},
        probabilities_se={"warm": 0.02, "cold": 0.02},
        log_marginal_likelihood={"warm": lml, "cold": lml},
        log_marginal_likelihood_se={"warm": 0.1, "cold": 0.1},
        converged=True,
    )


def written_history() -> History:
    split = IntervalAttribution(
        start="2019Q4",
        end="2020Q2",
        start_date="2019-12-31",
        end_date="2020-06-30",
        new_observations=7,
        n_events=7,
        log_bf_before=0.0,
        log_bf_after=1.4,
        change=1.4,
        change_se=0.2,
        importance_change=1.3,
        importance_change_se=0.05,
        agreement_z=-0.5,
        pareto_k={"warm": 0.3, "cold": 0.4},
        pareto_k_threshold=0.7,
        from_earlier_fit={"warm": 7, "cold": 7},
        attributed=True,
        note=None,
        top_events=[
            _event("R1", "2020-02-03", 0.9, "2019Q4..2020Q2"),
            _event("R2", "2020-05-11", -0.4, "2019Q4..2020Q2"),
            _event("R3", "2020-05-12", 0.3, "2019Q4..2020Q2"),
            _event("R4", "2020-06-01", 0.2, "2019Q4..2020Q2"),
        ],
        other_events=3,
        other_contribution=0.3,
    )
    unsplit = IntervalAttribution(
        start="2020Q2",
        end="2020Q4",
        start_date="2020-06-30",
        end_date="2020-12-31",
        new_observations=30,
        n_events=30,
        log_bf_before=1.4,
        log_bf_after=0.6,
        change=-0.8,
        change_se=0.25,
        importance_change=-0.7,
        importance_change_se=0.4,
        agreement_z=0.2,
        pareto_k={"warm": 0.9, "cold": 0.5},
        pareto_k_threshold=0.7,
        from_earlier_fit={"warm": 12, "cold": 30},
        attributed=False,
        note="Pareto k 0.90 > 0.70: too heavy-tailed to split",
        top_events=[],
        other_events=30,
        other_contribution=None,
    )
    attribution = Attribution(
        hypotheses=["warm", "cold"],
        log_bf=0.6,
        log_bf_se=0.2,
        intervals=[split, unsplit],
        top_events=[split.top_events[0], split.top_events[1]],
        attributed_change=1.3,
        unattributed_change=-0.8,
    )
    return History(
        "mini",
        [
            {"id": "warm", "label": "Warm ties", "prior_probability": 0.5},
            {"id": "cold", "label": "Cold shoulder", "prior_probability": 0.5},
        ],
        2,
        SETTINGS.to_dict(),
        [
            _point("2019Q4", "2019-12-31", 0.5, "prior", None),
            _point("2020Q2", "2020-06-30", 0.8),
            _point("2020Q4", "2020-12-31", 0.65, "run"),
        ],
        3.0,
        attribution=attribution,
    )


def test_attribution_round_trips_through_history_json(tmp_path):
    history = written_history()
    (tmp_path / HISTORY).write_text(json.dumps(history.to_dict()))
    back = load_history(tmp_path)
    assert back.attribution == history.attribution
    assert back.to_dict() == json.loads(json.dumps(history.to_dict()))
    # A history.json written before attributions existed still reads (without one).
    old = history.to_dict()
    del old["attribution"]
    (tmp_path / HISTORY).write_text(json.dumps(old))
    assert load_history(tmp_path).attribution is None


def test_the_renderer_names_the_events_that_moved_each_interval_and_the_window():
    from forecast.reports.text.history import render_history

    text = render_history(written_history())
    assert "log Bayes factor of 'Warm ties' against 'Cold shoulder'" in text and "+0.60 ± 0.20" in text
    split = text.index("2019Q4..2020Q2: +1.40 ± 0.20 from 7 new event(s); moved most by:")
    # Three events named per interval, the rest summed (one named event left over + three others).
    assert text.index("+0.90  2020-02-03  R1  russia / energy, cooperative: Pipeline deal R1") > split
    assert "-0.40  2020-05-11  R2" in text and "+0.30  2020-05-12  R3" in text
    assert "+0.50  4 other event(s) together" in text
    assert "2020Q2..2020Q4: -0.80 ± 0.25 from 30 new event(s); not split by event: Pareto k 0.90 > 0.70" in text
    window = text.index("Events that moved it most over the whole window (1 interval(s) split by event):")
    assert text.index("+0.90  2020-02-03  R1", window) < text.index("-0.40  2020-05-11  R2", window)
    assert "1 interval(s) could not be split by event; together they moved it by -0.80" in text
    assert max(len(line) for line in text.splitlines() if "R1" in line or "R2" in line) <= 120


def test_the_plot_draws_support_what_moved_it_and_the_key_events():
    from forecast.reports.plots.history import history_png

    d = written_history().to_dict()
    png = history_png(d, reference=("reference quarter 2020Q3", "2020-09-30"))
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    del d["attribution"]  # a history without attribution: support only
    plain = history_png(d)
    assert plain.startswith(b"\x89PNG") and len(plain) < len(png)
