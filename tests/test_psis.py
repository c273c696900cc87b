"""forecast.stats.psis.psislw: the same Pareto-smoothed log weights and Pareto k as arviz-stats' psislw.

Every case is compared against ``arviz_stats.base.array_stats.psislw(x, r_eff=..., axis=-1)`` on
the same input (the log-likelihood: both smooth weights proportional to exp(-x)).
"""

from __future__ import annotations

import numpy as np
import pytest
from arviz_stats.base import array_stats
from scipy.special import logsumexp

from forecast.stats.psis import psislw

RTOL = 1e-9
ATOL = 1e-12


def _assert_matches_arviz(x: np.ndarray, r_eff: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    expected_lw, expected_k = array_stats.psislw(x, r_eff=r_eff, axis=-1)
    lw, k = psislw(x, r_eff)
    assert lw.shape == np.shape(expected_lw)
    assert np.shape(k) == np.shape(expected_k)
    np.testing.assert_allclose(lw, expected_lw, rtol=RTOL, atol=ATOL, equal_nan=True)
    np.testing.assert_allclose(k, expected_k, rtol=RTOL, atol=ATOL, equal_nan=True)
    return lw, k


def _normal_model_loglik(rng: np.random.Generator, n_obs: int, n_draws: int) -> np.ndarray:
    """Pointwise log-likelihood of y_i ~ N(mu, 1) under posterior draws of mu: the usual LOO case."""
    y = rng.normal(0.0, 1.0, size=(n_obs, 1))
    mu = rng.normal(y.mean(), 1.0 / np.sqrt(n_obs), size=n_draws)
    return -0.5 * (y - mu) ** 2 - 0.5 * np.log(2 * np.pi)


def _pareto_log_ratios(rng: np.random.Generator, shape: float, size: tuple[int, ...]) -> np.ndarray:
    """Log of importance ratios whose upper tail is generalized Pareto with shape k = `shape`."""
    return np.log1p(rng.pareto(1.0 / shape, size=size))


def test_normal_model_loglik_matches_arviz_with_small_k() -> None:
    loglik = _normal_model_loglik(np.random.default_rng(0), n_obs=150, n_draws=2000)
    _, k = _assert_matches_arviz(loglik)
    assert np.all(k < 0.5)


@pytest.mark.parametrize("shape", [0.8, 1.3])
def test_heavy_tailed_ratios_match_arviz_with_k_above_0_7(shape: float) -> None:
    log_ratios = _pareto_log_ratios(np.random.default_rng(1), shape, (40, 3000))
    # arviz-stats' psislw negates its input: pass minus the log ratios to smooth exp(log_ratios).
    _, k = _assert_matches_arviz(-log_ratios)
    assert np.median(k) > 0.7


def test_student_t_ratios_match_arviz() -> None:
    log_ratios = np.random.default_rng(2).standard_t(df=2.0, size=(30, 3000))
    _assert_matches_arviz(-log_ratios)


@pytest.mark.parametrize("shape", [0.3, 0.7, 1.1])
def test_k_estimates_the_known_pareto_shape_for_many_draws(shape: float) -> None:
    log_ratios = _pareto_log_ratios(np.random.default_rng(3), shape, (1, 40_000))
    _, k = psislw(-log_ratios)
    assert abs(k[0] - shape) < 0.2


def test_weights_are_normalised_and_largest_where_loglik_is_smallest() -> None:
    loglik = _normal_model_loglik(np.random.default_rng(4), n_obs=5, n_draws=1000)
    lw, _ = psislw(loglik)
    np.testing.assert_allclose(logsumexp(lw, axis=-1), 0.0, atol=1e-12)
    # exp(-loglik) is the raw weight: the draw with the smallest log-likelihood gets the largest
    # weight (possibly tied with others capped at it by the smoothing).
    lowest = np.argmin(loglik, axis=-1)
    np.testing.assert_array_equal(lw[np.arange(5), lowest], lw.max(axis=-1))


def test_single_row_and_1d_input_match_arviz() -> None:
    loglik = _normal_model_loglik(np.random.default_rng(5), n_obs=1, n_draws=1500)
    _, k = _assert_matches_arviz(loglik)
    assert k.shape == (1,)
    lw_1d, k_1d = _assert_matches_arviz(loglik[0])
    assert lw_1d.shape == (1500,)
    assert k_1d.shape == ()


def test_leading_dimensions_are_kept_like_arviz() -> None:
    rng = np.random.default_rng(6)
    lw, k = _assert_matches_arviz(rng.normal(size=(3, 4, 800)))
    assert lw.shape == (3, 4, 800)
    assert k.shape == (3, 4)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_rows_of_mixed_kinds_in_one_call_match_arviz() -> None:
    rng = np.random.default_rng(7)
    n_draws = 2000
    normal = _normal_model_loglik(rng, n_obs=3, n_draws=n_draws)
    heavy = -_pareto_log_ratios(rng, 1.0, (3, n_draws))
    tied = rng.integers(0, 400, size=(3, n_draws)) / 50.0
    # A tail whose lowest third equals the cutoff: the first quartile is not above the minimum,
    # so the fit is abandoned (k = nan) and the row is left unsmoothed.
    flat_start = np.concatenate([rng.normal(-3.0, 0.5, 1800), np.full(100, 1.0), rng.uniform(2.0, 5.0, 100)])
    nan_row = np.full(n_draws, np.nan)
    rows = np.vstack([normal, heavy, tied, -flat_start, nan_row])
    _, k = _assert_matches_arviz(rows)
    assert np.isnan(k[9])
    assert k[10] == np.inf


@pytest.mark.parametrize("n_draws", [25, 28, 30, 50, 100, 226])
def test_short_rows_match_arviz(n_draws: int) -> None:
    _, k = _assert_matches_arviz(np.random.default_rng(n_draws).normal(size=(60, n_draws)))
    if n_draws < 30:
        # A tail of 5 draws puts the first quartile on the minimum: arviz-stats never fits it.
        assert np.all(np.isnan(k))


def test_fewer_than_25_draws_raises_like_arviz() -> None:
    x = np.random.default_rng(8).normal(size=(2, 24))
    with pytest.raises(ValueError, match="at least 5"):
        array_stats.psislw(x, r_eff=1.0, axis=-1)
    with pytest.raises(ValueError, match="at least 5"):
        psislw(x)


@pytest.mark.parametrize("r_eff", [0.3, 1.7])
@pytest.mark.parametrize("n_draws", [500, 4000])
def test_r_eff_other_than_one_matches_arviz(r_eff: float, n_draws: int) -> None:
    # n_draws * r_eff on both sides of 225 selects either tail-length rule.
    _assert_matches_arviz(_normal_model_loglik(np.random.default_rng(9), n_obs=40, n_draws=n_draws), r_eff)


def test_per_row_r_eff_equals_arviz_row_by_row() -> None:
    loglik = _normal_model_loglik(np.random.default_rng(10), n_obs=6, n_draws=1000)
    r_eff = np.array([0.3, 1.7, 0.3, 1.0, 0.05, 1.7])
    lw, k = psislw(loglik, r_eff)
    for i, r in enumerate(r_eff):
        expected_lw, expected_k = array_stats.psislw(loglik[i], r_eff=float(r), axis=-1)
        np.testing.assert_allclose(lw[i], expected_lw, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(k[i], expected_k, rtol=RTOL, atol=ATOL)


def test_r_eff_of_the_wrong_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match="r_eff"):
        psislw(np.zeros((3, 100)), np.ones(2))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_constant_row_raises_like_arviz() -> None:
    x = np.random.default_rng(11).normal(size=(3, 500))
    x[1] = -2.5
    with pytest.raises(ValueError, match="All tail values are the same"):
        array_stats.psislw(x, r_eff=1.0, axis=-1)
    with pytest.raises(ValueError, match="All tail values are the same"):
        psislw(x)


def test_tied_draws_in_the_tail_get_arviz_smoothed_values() -> None:
    # Discrete log-likelihoods: many ties inside the tail, where the smoothed value each tied draw
    # receives depends on how the sort orders them.
    x = np.random.default_rng(12).integers(0, 300, size=(40, 2000)) / 30.0
    _, k = _assert_matches_arviz(x)
    assert np.isfinite(k).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_infinite_and_nan_entries_match_arviz() -> None:
    rng = np.random.default_rng(13)
    x = rng.normal(size=(8, 1000))
    x[0, :3] = -np.inf  # zero likelihood: infinite raw weight
    x[1, 10] = np.inf
    x[2, :600] = np.inf  # most weights zero
    x[3, 7] = np.nan
    x[4] = -np.inf
    _assert_matches_arviz(x)


def test_rows_computed_together_equal_rows_computed_one_at_a_time() -> None:
    rng = np.random.default_rng(14)
    rows = np.vstack(
        [
            _normal_model_loglik(rng, n_obs=100, n_draws=2000),
            -_pareto_log_ratios(rng, 0.9, (60, 2000)),
            rng.integers(0, 300, size=(40, 2000)) / 30.0,
        ]
    )
    lw, k = psislw(rows, 0.8)
    for i in range(rows.shape[0]):
        lw_i, k_i = psislw(rows[i : i + 1], 0.8)
        np.testing.assert_array_equal(lw_i[0], lw[i])
        np.testing.assert_array_equal(k_i[0], k[i])


def test_non_contiguous_input_matches_arviz() -> None:
    draws_by_obs = _normal_model_loglik(np.random.default_rng(15), n_obs=30, n_draws=1200).T.copy()
    _assert_matches_arviz(draws_by_obs.T)


def test_rows_sharing_their_order_by_label_give_the_same_numbers_as_sorted_apart() -> None:
    """LOO terms of events that differ only in weight are multiples of one row: one partial sort
    serves them (``same_order``), with identical results, ties and mixed tail lengths included."""
    rng = np.random.default_rng(11)
    base = rng.normal(size=(5, 3000)) - 2.0
    weights = np.array([1.0, 0.25, 0.5625, 0.81, 3.0, 1e-7])
    rows = (weights[None, :, None] * base[:, None, :]).reshape(-1, 3000)
    labels = np.repeat(np.arange(5), weights.size)
    for r_eff in (1.0, np.linspace(0.3, 1.0, rows.shape[0])):
        expected = psislw(rows, r_eff=r_eff)
        got = psislw(rows, r_eff=r_eff, same_order=labels)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    # Coarse values: scaling creates and keeps ties; the labelled rows still match arviz.
    coarse = np.round(rng.normal(size=3000), 1)[None, :] * np.array([[1.0], [0.3], [7.0]])
    got = psislw(coarse, same_order=np.zeros(3, dtype=int))
    for i in range(3):
        want = array_stats.psislw(coarse[i], r_eff=1.0)
        np.testing.assert_allclose(got[0][i], want[0], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="same_order"):
        psislw(rows, same_order=labels[:-1])
