"""forecast.stats.loo's PSIS-LOO: the same numbers as arviz-stats' loo, by pattern and in blocks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import xarray as xr
from arviz_stats import ess, loo

from forecast.data.cells import CellData
from forecast.stats import loo as comparison
from forecast.stats.loo import pattern_loglik, psis_loo_cells

CHAINS, DRAWS = 4, 500


def _cells(rng: np.random.Generator, n_cells: int, n_patterns: int) -> CellData:
    cell = np.sort(rng.integers(0, n_cells, size=n_patterns))
    zeros = np.zeros(n_cells, dtype=np.int64)
    return CellData(
        group=zeros,
        domain=zeros,
        quarter=zeros,
        w_coop=np.zeros(n_cells),
        w_conf=np.zeros(n_cells),
        n_events=zeros,
        pattern_cell=cell,
        pattern_coop=rng.random(n_patterns) < 0.6,
        pattern_weight=rng.choice([1.0, 0.9, 0.675, 0.5], size=n_patterns),
        pattern_count=rng.integers(1, 30, size=n_patterns),
        event_pattern=np.arange(n_patterns),
    )


def _eta(rng: np.random.Generator, n_cells: int) -> np.ndarray:
    """Correlated draws (an AR(1) along each chain) of the cells' log-odds: (chains * draws, cells)."""
    centre = rng.normal(0.0, 1.5, size=n_cells)
    steps = rng.normal(0.0, 0.4, size=(CHAINS, DRAWS, n_cells))
    path = np.empty_like(steps)
    path[:, 0] = steps[:, 0]
    for t in range(1, DRAWS):
        path[:, t] = 0.8 * path[:, t - 1] + steps[:, t]
    return (centre + path).reshape(CHAINS * DRAWS, n_cells)


def test_psis_loo_matches_arviz_loo_with_the_relative_efficiency_of_the_likelihood() -> None:
    rng = np.random.default_rng(11)
    cells = replace(_cells(rng, n_cells=12, n_patterns=40), pattern_count=np.ones(40, dtype=np.int64))
    eta = _eta(rng, 12)
    loglik = pattern_loglik(eta, cells).reshape(CHAINS, DRAWS, -1)

    ours = psis_loo_cells(eta, cells, CHAINS)

    # loo's r_eff: the mean relative ESS of the likelihood (the R package's convention).
    likelihood = xr.DataArray(np.exp(loglik), dims=("chain", "draw", "obs"))
    r_eff = float(ess(likelihood, method="mean", relative=True).mean())
    tree = xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset({"mu": (("chain", "draw"), rng.normal(size=(CHAINS, DRAWS)))}),
            "log_likelihood": xr.Dataset({"y": (("chain", "draw", "obs"), loglik)}),
        }
    )
    expected = loo(tree, pointwise=True, reff=r_eff)

    assert ours.elpd == pytest.approx(expected.elpd, rel=1e-10)
    assert ours.se == pytest.approx(expected.se, rel=1e-10)
    assert ours.p_loo == pytest.approx(expected.p, rel=1e-8)
    np.testing.assert_allclose(ours.pointwise, expected.elpd_i.values, rtol=1e-10)
    np.testing.assert_allclose(ours.pareto_k, expected.pareto_k.values, rtol=1e-9)


def test_a_pattern_counted_c_times_counts_as_c_events() -> None:
    rng = np.random.default_rng(12)
    cells = _cells(rng, n_cells=5, n_patterns=8)
    eta = _eta(rng, 5)
    counts = cells.pattern_count
    grouped = psis_loo_cells(eta, cells, CHAINS)
    one_each = psis_loo_cells(eta, replace(cells, pattern_count=np.ones_like(counts)), CHAINS)

    np.testing.assert_array_equal(grouped.pointwise, one_each.pointwise)
    assert grouped.elpd == pytest.approx((one_each.pointwise * counts).sum(), rel=1e-12)
    per_event = np.repeat(grouped.pointwise, counts)
    n = per_event.size
    assert grouped.se == pytest.approx(np.sqrt(n * per_event.var(ddof=1)), rel=1e-10)


def test_loo_in_blocks_gives_the_same_numbers_as_in_one_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(13)
    cells = _cells(rng, n_cells=30, n_patterns=300)
    eta = _eta(rng, 30)
    whole = psis_loo_cells(eta, cells, CHAINS)  # 300 patterns in one block
    assert comparison._BLOCK_ELEMENTS >= 300 * CHAINS * DRAWS
    # Blocks of 7 patterns: the last block is partial; blocks on one thread and on several.
    monkeypatch.setattr(comparison, "_BLOCK_ELEMENTS", 7 * CHAINS * DRAWS)
    for workers in (1, 3):
        monkeypatch.setattr(comparison, "LOO_WORKERS", workers)
        blocked = psis_loo_cells(eta, cells, CHAINS)

        assert blocked.elpd == whole.elpd
        assert blocked.se == whole.se
        assert blocked.p_loo == whole.p_loo
        np.testing.assert_array_equal(blocked.pointwise, whole.pointwise)
        np.testing.assert_array_equal(blocked.pareto_k, whole.pareto_k)


def test_pattern_loglik_is_the_weighted_bernoulli_log_likelihood() -> None:
    rng = np.random.default_rng(14)
    cells = _cells(rng, n_cells=4, n_patterns=10)
    eta = _eta(rng, 4)
    p = 1 / (1 + np.exp(-eta[:, cells.pattern_cell]))
    expected = cells.pattern_weight * np.where(cells.pattern_coop, np.log(p), np.log1p(-p))
    np.testing.assert_allclose(pattern_loglik(eta, cells), expected, rtol=1e-12, atol=1e-14)


# --- overdispersed (Polya) LOO: each event given the rest of its cell ------------------------------


def _consistent_cells(rng: np.random.Generator, n_cells: int, n_patterns: int) -> CellData:
    """Cells whose summed weights are those of their patterns (as cells.cell_data makes them)."""
    c = _cells(rng, n_cells, n_patterns)
    w = c.pattern_weight * c.pattern_count
    w_coop = np.bincount(c.pattern_cell, weights=w * c.pattern_coop, minlength=n_cells)
    w_conf = np.bincount(c.pattern_cell, weights=w * ~c.pattern_coop, minlength=n_cells)
    return replace(c, w_coop=w_coop, w_conf=w_conf)


def test_polya_terms_are_the_cell_likelihood_with_and_without_the_event():
    from forecast.model.overdispersion import polya_cells_numpy

    rng = np.random.default_rng(11)
    cells = _consistent_cells(rng, 12, 30)
    eta = rng.normal(0, 2, size=(7, 12))
    phi = rng.uniform(0.5, 40, size=7)
    got = pattern_loglik(eta, cells, concentration=phi)
    c, w = cells.pattern_cell, cells.pattern_weight
    full = polya_cells_numpy(eta[:, c], phi[:, None], cells.w_coop[c], cells.w_conf[c])[0]
    rest_coop = cells.w_coop[c] - w * cells.pattern_coop
    rest_conf = cells.w_conf[c] - w * ~cells.pattern_coop
    rest = polya_cells_numpy(eta[:, c], phi[:, None], np.maximum(rest_coop, 0), np.maximum(rest_conf, 0))[0]
    np.testing.assert_allclose(got, full - rest, rtol=1e-9, atol=1e-9)


def test_polya_term_of_a_unit_event_is_the_urn_predictive():
    """(alpha + cooperative weight of the others) / (phi + weight of the others)."""
    cells = CellData(
        group=np.zeros(1, dtype=np.int64),
        domain=np.zeros(1, dtype=np.int64),
        quarter=np.zeros(1, dtype=np.int64),
        w_coop=np.array([5.0]),
        w_conf=np.array([3.0]),
        n_events=np.array([8]),
        pattern_cell=np.array([0, 0]),
        pattern_coop=np.array([False, True]),
        pattern_weight=np.array([1.0, 1.0]),
        pattern_count=np.array([3, 5]),
        event_pattern=np.arange(2),
    )
    eta, phi = np.array([[0.4]]), np.array([6.0])
    p = 1 / (1 + np.exp(-0.4))
    got = pattern_loglik(eta, cells, concentration=phi)[0]
    assert got[1] == pytest.approx(np.log((p * 6 + 4) / (6 + 7)), rel=1e-12)
    assert got[0] == pytest.approx(np.log(((1 - p) * 6 + 2) / (6 + 7)), rel=1e-12)


def test_polya_loo_tends_to_the_plain_loo_as_the_concentration_grows():
    rng = np.random.default_rng(12)
    cells = _consistent_cells(rng, 20, 60)
    eta = _eta(rng, 20)
    plain = psis_loo_cells(eta, cells, CHAINS)
    big = psis_loo_cells(eta, cells, CHAINS, concentration=np.full(len(eta), 1e9))
    assert big.elpd == pytest.approx(plain.elpd, abs=1e-3)
    np.testing.assert_allclose(big.pareto_k, plain.pareto_k, atol=1e-3)


def test_polya_terms_stay_finite_at_extreme_log_odds_and_lone_events():
    rng = np.random.default_rng(13)
    cells = _consistent_cells(rng, 5, 9)
    eta = np.array([[-800.0] * 5, [800.0] * 5, [0.0] * 5])
    got = pattern_loglik(eta, cells, concentration=np.array([0.01, 1e4, 3.0]))
    assert np.all(np.isfinite(got)) and np.all(got <= 1e-12)


def test_concentration_draws_must_match_the_log_odds_draws():
    rng = np.random.default_rng(14)
    cells = _consistent_cells(rng, 4, 6)
    with pytest.raises(ValueError, match="concentration draws"):
        pattern_loglik(rng.normal(size=(5, 4)), cells, concentration=np.ones(3))


def test_cell_loglik_is_the_plain_or_the_polya_cell_likelihood():
    from forecast.model.overdispersion import polya_cells_numpy
    from forecast.stats.loo import cell_loglik

    rng = np.random.default_rng(15)
    cells = _consistent_cells(rng, 10, 25)
    eta = rng.normal(0, 3, size=(6, 10))
    eta[0, :3] = [-800.0, 800.0, 0.0]
    phi = rng.uniform(0.1, 50, size=6)
    expected = polya_cells_numpy(eta, phi[:, None], cells.w_coop, cells.w_conf)[0]
    np.testing.assert_allclose(cell_loglik(eta, cells, concentration=phi), expected, rtol=1e-10, atol=1e-10)
    plain = cells.w_coop * -np.logaddexp(0, -eta) + cells.w_conf * -np.logaddexp(0, eta)
    np.testing.assert_allclose(cell_loglik(eta, cells), plain, rtol=1e-12)
    # The plain patterns' terms sum to the plain cell likelihood; the Polya conditionals do not.
    per_pattern = pattern_loglik(eta, cells) * cells.pattern_count
    np.testing.assert_allclose(per_pattern.sum(axis=-1), plain.sum(axis=-1), rtol=1e-10)
