"""Random inputs for the cell likelihoods' tests: parameters of every group and distinct cells."""

from __future__ import annotations

import numpy as np


def random_parameters_and_cells(
    rng: np.random.Generator, shape: tuple[int, int, int], n_cells: int, ref: int, scale: float
) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """(params, years, index, weights) for ``shape`` = (groups, domains, quarters): tilt, spread,
    domain effects z, trend, volatility and walk steps drawn from ``rng`` (tilt and trend wider
    with ``scale``); years from quarter ``ref``; ``n_cells`` distinct (group, domain, quarter)
    cells, as cells.cell_data produces them, with cooperative and conflictual weights in [0, 3),
    about 30% of them with only cooperative events."""
    g, d, q = shape
    params = {
        "tilt": rng.normal(0, scale, g),
        "spread": rng.uniform(0.2, 1.5, g),
        "z": rng.normal(0, 1, (g, d)),
        "trend": rng.normal(0, 0.3 * scale, g),
        "volatility": rng.uniform(0.05, 0.8, g),
        "steps": rng.normal(0, 1, (g, q - 1)),
    }
    years = (np.arange(q) - ref) / 4.0
    flat = rng.choice(g * d * q, size=n_cells, replace=False)
    index = np.stack(np.unravel_index(flat, shape), axis=1).astype(np.int64)
    weights = rng.uniform(0, 3, (n_cells, 2))
    weights[rng.random(n_cells) < 0.3, 1] = 0.0
    return params, years, index, weights
