"""The overdispersed (Polya) cell likelihood: its digamma, its value against the beta-binomial
sequence formula and the plain likelihood's limit, exact gradients in NumPy and Numba, LOO that
leaves one event out of its cell, simulation from the Beta, and the study option."""

from __future__ import annotations

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from builders_likelihood import random_parameters_and_cells
from numeric_gradients import assert_gradients_match_central_differences
from scipy.special import betaln, gammaln
from scipy.special import digamma as sp_digamma

from forecast.errors import InputError
from forecast.model.likelihood import cell_loglik_numpy
from forecast.model.overdispersion import (
    CellPolyaLoglik,
    cell_polya_loglik_numpy,
    digamma,
    effective_events,
    polya_cell,
    polya_cells_numpy,
)
from forecast.model.predictive import draw_cell_shares

G, D, Q = 3, 4, 9
NAMES = ("tilt", "spread", "z", "trend", "volatility", "steps", "concentration")


def _case(seed: int, n_cells: int = 40, ref: int = 5, scale: float = 1.0, phi: float = 7.5):
    rng = np.random.default_rng(seed)
    params, years, index, weights = random_parameters_and_cells(rng, (G, D, Q), n_cells, ref, scale)
    params["concentration"] = np.array(phi)
    weights[rng.random(n_cells) < 0.2, 0] = 0.0
    weights[:3] *= 400.0  # a few heavy cells
    return params, years, index, weights, ref


def _args(params, years, index, weights):
    return (*(params[k] for k in NAMES), years, index, weights)


def _graph(ref: int):
    inputs = [pt.dvector("tilt"), pt.dvector("spread"), pt.dmatrix("z"), pt.dvector("trend")]
    inputs += [pt.dvector("volatility"), pt.dmatrix("steps"), pt.dscalar("concentration")]
    inputs += [pt.dvector("years"), pt.lmatrix("index"), pt.dmatrix("weights")]
    loglik = CellPolyaLoglik(ref)(*inputs)[0]
    grads = pt.grad(loglik, inputs[:7])
    return inputs, [loglik, *grads]


# --- digamma --------------------------------------------------------------------------------


def test_numba_digamma_matches_scipy_to_1e_12():
    x = np.concatenate([np.geomspace(1e-12, 1e-3, 50), np.linspace(1e-3, 30, 3001), np.geomspace(30, 1e12, 100)])
    ours = np.array([digamma(v) for v in x])
    np.testing.assert_allclose(ours, sp_digamma(x), rtol=1e-12, atol=1e-12)
    # Near its root (x = 1.4616...) digamma is small: the absolute error is what matters there.
    assert abs(digamma(1.4616321449683622)) < 1e-13


# --- the value --------------------------------------------------------------------------------


def test_loglik_is_the_beta_binomial_sequence_likelihood_per_cell():
    params, years, index, weights, ref = _case(0)
    base = cell_loglik_numpy(*_args({**params}, years, index, weights)[:6], years, index, weights, ref=ref)
    assert np.isfinite(base[0])
    from forecast.model.likelihood import cell_eta_numpy

    eta, _ = cell_eta_numpy(*(params[k] for k in NAMES[:6]), years, index, ref)
    p = 1.0 / (1.0 + np.exp(-eta))
    phi = float(params["concentration"])
    a, b = p * phi, (1 - p) * phi
    expected = np.sum(betaln(a + weights[:, 0], b + weights[:, 1]) - betaln(a, b))
    value = cell_polya_loglik_numpy(*_args(params, years, index, weights), ref=ref)[0]
    assert value == pytest.approx(expected, rel=1e-11)


def test_integer_counts_give_the_polya_urn_probability_of_the_sequence():
    # Two cooperative then one conflictual event: (a / phi) ((a + 1) / (phi + 1)) (b / (phi + 2)).
    phi, p = 3.0, 0.3
    a, b = p * phi, (1 - p) * phi
    expected = math.log(a / phi * (a + 1) / (phi + 1) * b / (phi + 2))
    eta = math.log(p / (1 - p))
    assert polya_cell(eta, phi, math.log(phi), 2.0, 1.0)[0] == pytest.approx(expected, rel=1e-13)


def test_large_concentration_recovers_the_plain_likelihood():
    """Value and gradients tend to the plain (Bernoulli sequence) ones like 1 / phi."""
    params, years, index, weights, ref = _case(1)
    plain = cell_loglik_numpy(*(params[k] for k in NAMES[:6]), years, index, weights, ref=ref)
    gaps = []
    for phi in (1e8, 1e9):
        got = cell_polya_loglik_numpy(
            *_args({**params, "concentration": np.array(phi)}, years, index, weights), ref=ref
        )
        gaps.append(got[0] - plain[0])
        for g, e in zip(got[1:7], plain[1:], strict=True):
            np.testing.assert_allclose(g, e, atol=2e7 / phi)
        assert abs(got[7]) < 1e3 / phi**1.5  # d/dphi: O(1 / phi^2)
    assert abs(gaps[1]) < 0.01
    assert gaps[0] / gaps[1] == pytest.approx(10.0, rel=0.05)


def test_one_cell_carries_bounded_information():
    """The curvature in eta of one cell's likelihood at its own share stays below phi p (1 - p)
    (phi + 1 events' worth), however many events it holds; the plain one grows with n."""
    phi, p = 20.0, 0.6
    eta0 = math.log(p / (1 - p))
    h = 1e-4
    for n in (10.0, 1000.0, 100000.0):
        wc, wf = p * n, (1 - p) * n

        def f(e, wc=wc, wf=wf):
            return polya_cell(e, phi, math.log(phi), wc, wf)[0]

        info = -(f(eta0 + h) - 2 * f(eta0) + f(eta0 - h)) / h**2
        assert info <= (phi + 1) * p * (1 - p) * 1.01
        assert info == pytest.approx(effective_events(n, phi) * p * (1 - p), rel=0.35)


# --- the gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [2, 3])
def test_gradients_match_central_finite_differences(seed):
    params, years, index, weights, ref = _case(seed)

    def loglik(p):
        return cell_polya_loglik_numpy(*_args(p, years, index, weights), ref=ref)

    assert_gradients_match_central_differences(loglik, params, NAMES, h=1e-6, tol=1e-5)


def test_cell_terms_match_between_numba_scalar_and_numpy_arrays_at_extremes():
    eta = np.array([-800.0, -40.0, -5.0, -1e-3, 0.0, 2.0, 37.0, 800.0])
    for phi in (0.05, 3.0, 1e4):
        for wc, wf in ((0.0, 2.5), (1.5, 0.0), (3.0, 4.0), (2000.0, 0.0)):
            ref = polya_cells_numpy(eta, phi, wc, wf)
            for k, e in enumerate(eta):
                got = polya_cell(float(e), phi, math.log(phi), wc, wf)
                assert all(np.isfinite(got)), (e, phi, wc, wf)
                for j in range(3):
                    assert got[j] == pytest.approx(ref[j][k], rel=1e-10, abs=1e-10), (e, phi, wc, wf, j)


@pytest.mark.slow
@pytest.mark.parametrize("ref", [0, 4, Q - 1])
def test_numba_implementation_equals_numpy_reference_and_pullback(ref):
    params, years, index, weights, _ = _case(4, ref=ref, scale=8.0)
    args = _args(params, years, index, weights)
    expected = cell_polya_loglik_numpy(*args, ref=ref)
    inputs, outputs = _graph(ref)
    for mode in ("NUMBA", "FAST_COMPILE"):
        got = pytensor.function(inputs, outputs, mode=mode)(*args)
        for e, g in zip(expected, got, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-10)


def test_second_derivatives_are_refused():
    inputs, outputs = _graph(2)
    with pytest.raises(NotImplementedError, match="second derivatives"):
        pt.grad(outputs[1].sum(), inputs[0])


# --- simulation ------------------------------------------------------------------------------


def test_cell_shares_are_drawn_from_the_beta_around_p():
    rng = np.random.default_rng(0)
    p, phi = np.full(200_000, 0.3), 9.0
    theta = draw_cell_shares(p, phi, rng)
    assert theta.mean() == pytest.approx(0.3, abs=0.003)
    assert theta.var() == pytest.approx(0.3 * 0.7 / (phi + 1), rel=0.03)


def test_gammaln_reference_is_what_the_value_uses():
    # Guards the reference's use of scipy's gammaln on the large-count branch.
    assert gammaln(2001.0) == pytest.approx(math.lgamma(2001.0), rel=1e-14)


def _studies(tmp_path):
    from helpers import static_study, write_study

    from forecast.spec.study import load_study

    plain = static_study("plain", {"h": 0.4}, domains=("d", "e"))
    over = static_study("over", {"h": 0.4}, domains=("d", "e"), extra={"model": {"overdispersion": "cell"}})
    return load_study(write_study(tmp_path / "a", plain)), load_study(write_study(tmp_path / "b", over))


def test_simulated_events_of_one_cell_share_a_beta_share(tmp_path):
    """Counts per cell vary as binomial without overdispersion and as beta-binomial with it:
    variance n p q (n + phi) / (1 + phi), the same mean."""
    import pandas as pd

    from forecast.model.predictive import cooperation_probability, one_prior_draw, simulate_outcomes

    plain, over = _studies(tmp_path)
    n, phi = 200, 9.0
    cells = [(d, date) for d in ("d", "e") for date in ("2020-02-01", "2020-05-01", "2020-08-01", "2020-11-01")]
    design = pd.DataFrame(
        {
            "counterpart": "c",
            "domain": [d for d, _ in cells for _ in range(n)],
            "event_date": [x for _, x in cells for _ in range(n)],
        }
    )
    rng = np.random.default_rng(3)
    params = one_prior_draw(plain, plain.hypotheses[0], rng)
    p = cooperation_probability(plain, params, design).reshape(len(cells), n)[:, 0]
    ratio = {}
    for name, study, extra in (("plain", plain, {}), ("over", over, {"concentration": np.array(phi)})):
        counts = np.array(
            [
                simulate_outcomes(study, {**params, **extra}, design, rng).reshape(len(cells), n).sum(axis=1)
                for _ in range(60)
            ]
        )
        assert counts.mean() == pytest.approx(n * p.mean(), rel=0.05)
        ratio[name] = np.mean((counts - n * p) ** 2 / (n * p * (1 - p)))
    assert ratio["plain"] == pytest.approx(1.0, rel=0.25)
    assert ratio["over"] == pytest.approx((n + phi) / (1 + phi), rel=0.25)
    with pytest.raises(InputError, match="concentration"):
        simulate_outcomes(over, params, design, rng)


def test_prior_draws_add_the_concentration_last(tmp_path):
    from forecast.model.predictive import prior_draws

    plain, over = _studies(tmp_path)
    a = prior_draws(plain, plain.hypotheses[0], 500, np.random.default_rng(1))
    b = prior_draws(over, over.hypotheses[0], 500, np.random.default_rng(1))
    assert set(b) - set(a) == {"concentration"}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert np.median(b["concentration"]) == pytest.approx(20.0, rel=0.15)


def test_default_concentration_prior_implies_bounded_cell_evidence():
    """What the default prior says (README): a cell carries at most phi + 1 events' worth; the
    prior's median is 20 and its central 90% 3.9-104, so 2,000 repeats of one event weigh as
    ~21 (4.9-99) events, while a cell of 3 events keeps 2.1-2.9 of its 3 (median 2.7)."""
    from forecast.spec.study import DEFAULT_CONCENTRATION

    q = DEFAULT_CONCENTRATION.ppf(np.array([0.05, 0.5, 0.95]))
    np.testing.assert_allclose(q, [3.86, 20.0, 103.7], rtol=0.01)
    np.testing.assert_allclose(effective_events(2000.0, q), [4.85, 20.8, 99.4], rtol=0.01)
    np.testing.assert_allclose(effective_events(3.0, q), [2.13, 2.74, 2.94], rtol=0.01)


def _question(kind: str, threshold: float | None, group: str, domain: str):
    import datetime as dt

    from forecast.spec.questions import Question

    day = dt.date(2020, 1, 1)
    return Question("q", "q?", group, domain, 8081, kind, threshold, day, day)


@pytest.mark.parametrize(
    ("kind", "threshold"),
    [("any_conflictual", None), ("any_cooperative", None), ("share_above", 0.5), ("share_below", 0.5)],
)
def test_questions_about_several_events_use_the_beta_share(tmp_path, kind, threshold):
    """Large phi: the plain (binomial) answer; small phi: the Monte Carlo answer of events that
    share a Beta share, with the negative-binomial count."""
    from forecast.model.predictive import EventRates, Predictive, question_draws

    _, over = _studies(tmp_path)
    rates = EventRates(np.array([[6.0]]), 2)  # about 3 events a quarter
    q = _question(kind, threshold, over.groups[0].id, over.domains[0].id)
    p = np.array([0.3, 0.7])
    share = p.reshape(2, 1, 1, 1)
    plain = Predictive(share, np.full(2, 0.5), (8081,))
    huge = Predictive(share, np.full(2, 0.5), (8081,), np.full(2, 1e9))
    study = over
    np.testing.assert_allclose(question_draws(q, huge, rates, study), question_draws(q, plain, rates, study), atol=1e-6)
    phi = 2.0
    got = question_draws(q, Predictive(share, np.full(2, 0.5), (8081,), np.full(2, phi)), rates, study)
    rng = np.random.default_rng(5)
    pmf = rates.count_pmf(0, 0)
    m = 400_000
    for i, pi in enumerate(p):
        n = rng.choice(len(pmf), size=m, p=pmf / pmf.sum())
        theta = rng.beta(pi * phi, (1 - pi) * phi, size=m)
        k = rng.binomial(n, theta)
        if kind == "any_conflictual":
            yes, valid = k < n, np.ones(m, bool)
        elif kind == "any_cooperative":
            yes, valid = k > 0, np.ones(m, bool)
        else:
            valid = n > 0
            yes = k > threshold * n if kind == "share_above" else k < threshold * n
        assert got[i] == pytest.approx(yes[valid].mean(), abs=0.005), (kind, pi)
