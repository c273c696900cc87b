"""forecast.stats.convergence must reproduce arviz_stats' R-hat and ESS, not approximate them.

Every case compares against ``arviz_stats.base.array_stats`` on the same (k, chain, draw)
array. The cases aim at the places where a vectorized rewrite could diverge: Geyer's
stopping rule (strong and negative autocorrelation, short chains), ties in the ranks
(rounded and binary draws), the split of an odd number of draws, and ArviZ's edge cases
(constant, NaN and infinite draws, too few chains or draws).
"""

import warnings

import numpy as np
import pytest
from arviz_stats.base import array_stats
from scipy.signal import lfilter

from forecast.stats.convergence import ess_bulk, ess_mean, ess_tail, rhat_rank

TOL = {"rtol": 1e-10, "atol": 1e-12, "equal_nan": True}


def arviz_reference(a: np.ndarray) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        # ArviZ warns on 0/0 for constant variables; the values are what is compared.
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "rhat": array_stats.rhat(a, method="rank"),
            "ess_bulk": array_stats.ess(a, method="bulk"),
            "ess_tail": array_stats.ess(a, method="tail", prob=(0.05, 0.95)),
            "ess_mean": array_stats.ess(a, method="mean"),
            "ess_mean_relative": array_stats.ess(a, method="mean", relative=True),
        }


def vectorized(a: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "rhat": rhat_rank(a),
        "ess_bulk": ess_bulk(a),
        "ess_tail": ess_tail(a),
        "ess_mean": ess_mean(a),
        "ess_mean_relative": ess_mean(a, relative=True),
    }


def assert_matches_arviz(a: np.ndarray) -> dict[str, np.ndarray]:
    expected = arviz_reference(a)
    got = vectorized(a)
    for name, value in expected.items():
        assert got[name].shape == value.shape, name
        np.testing.assert_allclose(got[name], value, err_msg=name, **TOL)
    return got


def ar1(rng: np.random.Generator, shape: tuple[int, int, int], phi: float) -> np.ndarray:
    noise = rng.standard_normal(shape)
    noise[..., 0] /= np.sqrt(1.0 - phi**2)  # start in the stationary distribution
    return lfilter([1.0], [1.0, -phi], noise, axis=-1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


def test_independent_normal_draws_match_arviz(rng):
    assert_matches_arviz(rng.standard_normal((12, 4, 400)))


@pytest.mark.parametrize("phi", [0.5, 0.95, -0.3])
def test_autocorrelated_chains_match_arviz(rng, phi):
    # phi = 0.95 sums many lags before the pair sums turn negative; phi = -0.3 makes
    # odd lags negative, so pair sums and the even/odd handling decide the result.
    got = assert_matches_arviz(ar1(rng, (12, 4, 500), phi))
    if phi == 0.95:
        assert np.all(got["ess_bulk"] < 0.2 * 4 * 500)


def test_strong_autocorrelation_on_short_chains_stops_at_the_lag_bound(rng):
    # With 30 draws the split chains have 15, and Geyer's sequence runs out of lags
    # (t < n_draw - 3) before the pair sums become negative.
    assert_matches_arviz(ar1(rng, (12, 4, 30), 0.99))


def test_chains_with_different_means_have_rhat_above_threshold(rng):
    a = rng.standard_normal((6, 4, 300)) + np.array([0.0, 0.0, 0.5, 1.0])[:, None]
    got = assert_matches_arviz(a)
    assert np.all(got["rhat"] > 1.01)


def test_heavy_tailed_draws_match_arviz(rng):
    assert_matches_arviz(rng.standard_t(df=2, size=(10, 4, 400)))


def test_rounded_draws_with_many_ties_match_arviz(rng):
    assert_matches_arviz(np.round(ar1(rng, (10, 4, 300), 0.5), 1))


def test_binary_draws_match_arviz(rng):
    a = (rng.random((10, 4, 300)) < np.linspace(0.02, 0.6, 10)[:, None, None]).astype(float)
    assert_matches_arviz(a)


def test_constant_variable_gives_nan_rhat_and_ess_equal_to_split_draws(rng):
    a = rng.standard_normal((3, 4, 101))
    a[1] = 2.5
    got = assert_matches_arviz(a)
    assert np.isnan(got["rhat"][1])
    # ArviZ returns the size of the split array, which drops the middle draw.
    assert got["ess_bulk"][1] == got["ess_tail"][1] == 4 * 2 * 50
    assert np.isfinite(got["rhat"][[0, 2]]).all()


def test_nan_draw_makes_only_its_variable_nan(rng):
    a = rng.standard_normal((3, 4, 100))
    a[1, 2, 17] = np.nan
    got = assert_matches_arviz(a)
    for value in got.values():
        assert np.isnan(value[1])
        assert np.isfinite(value[[0, 2]]).all()


def test_infinite_draws_are_ranked_not_rejected_like_arviz(rng):
    a = rng.standard_normal((3, 4, 100))
    a[0, 1, 5] = np.inf
    a[1, :, :60] = -np.inf  # more than half infinite: the fold computes inf - inf
    a[2, 0, :3] = np.inf
    assert_matches_arviz(a)


def test_float32_draws_match_arviz_which_ranks_them_in_float32(rng):
    assert_matches_arviz(ar1(rng, (10, 4, 300), 0.7).astype(np.float32))


def test_integer_draws_match_arviz(rng):
    assert_matches_arviz(np.round(3 * ar1(rng, (10, 4, 300), 0.7)).astype(np.int64))


def test_single_chain_gives_nan_rhat_and_arviz_ess(rng):
    got = assert_matches_arviz(ar1(rng, (8, 1, 300), 0.5))
    assert np.isnan(got["rhat"]).all()
    assert np.isfinite(got["ess_bulk"]).all()


@pytest.mark.parametrize("n_draw", [4, 5, 7, 10, 11, 50, 51])
def test_short_and_odd_draw_counts_match_arviz(rng, n_draw):
    # Many short variables: with 10 or 11 draws Geyer's loop stops at the lag bound,
    # often with a written last pair whose even lag is negative, which ArviZ keeps.
    assert_matches_arviz(ar1(rng, (40, 3, n_draw), 0.3))


def test_fewer_than_four_draws_gives_nan_everywhere(rng):
    got = assert_matches_arviz(rng.standard_normal((4, 4, 3)))
    for value in got.values():
        assert np.isnan(value).all()


def test_many_variables_equal_one_variable_at_a_time(rng):
    a = np.concatenate(
        [
            ar1(rng, (3, 4, 200), 0.9),
            ar1(rng, (3, 4, 200), -0.3),
            np.round(rng.standard_normal((2, 4, 200)), 1),
            np.full((1, 4, 200), 1.0),
        ]
    )
    together = vectorized(a)
    for i in range(a.shape[0]):
        alone = vectorized(a[i : i + 1])
        for name in together:
            np.testing.assert_array_equal(together[name][i], alone[name][0], err_msg=f"{name}[{i}]")


def test_leading_dimensions_are_kept(rng):
    a = rng.standard_normal((2, 3, 4, 60))
    got = assert_matches_arviz(a)
    assert got["rhat"].shape == (2, 3)


def test_scalar_prob_for_tail_ess_means_symmetric_tails(rng):
    a = ar1(rng, (5, 4, 200), 0.5)
    np.testing.assert_allclose(ess_tail(a, prob=0.1), ess_tail(a, prob=(0.1, 0.9)), **TOL)
    np.testing.assert_allclose(ess_tail(a, prob=0.1), array_stats.ess(a, method="tail", prob=0.1), **TOL)


@pytest.mark.parametrize("n_chain", [1, 4, 8])
def test_rhat_and_bulk_ess_from_one_ranking_equal_the_two_calls(rng, n_chain):
    from forecast.stats.convergence import rhat_and_ess_bulk

    a = rng.standard_normal((6, n_chain, 301)).cumsum(axis=-1) * 0.1 + rng.standard_normal((6, n_chain, 301))
    a[1] = np.round(a[1], 1)  # ties
    a[2, 0, 5] = np.nan  # one invalid variable
    a[3] = 2.0  # constant
    rhat, bulk = rhat_and_ess_bulk(a)
    np.testing.assert_array_equal(rhat, rhat_rank(a))
    np.testing.assert_array_equal(bulk, ess_bulk(a))
