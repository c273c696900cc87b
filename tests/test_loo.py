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
    # Blocks of 7 patterns: the last block is partial and the buffer is reused between blocks.
    monkeypatch.setattr(comparison, "_BLOCK_ELEMENTS", 7 * CHAINS * DRAWS)
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
