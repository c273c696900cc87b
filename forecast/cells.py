"""Sufficient statistics: observations collapsed to weighted counts per model cell.

A cell is one (counterpart group, domain, quarter). The likelihood needs only each cell's
weighted number of cooperative and conflictual events, so fitting costs O(cells), not O(events).
LOO needs per-event terms, but events that share a cell, an outcome and a weight have identical
terms, so they are kept once as a *pattern* with a count: exact, and still O(cells).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecast.study import Study


@dataclass(frozen=True)
class CellData:
    """Per-cell weighted counts, indices into the model's (group, domain, quarter) grid."""

    group: np.ndarray  # int, index into study.groups
    domain: np.ndarray  # int, index into study.domains
    quarter: np.ndarray  # int, 0 = study.time.start
    w_coop: np.ndarray  # summed weights of cooperative events
    w_conf: np.ndarray  # summed weights of conflictual events
    n_events: np.ndarray  # raw event counts
    # Patterns: distinct (cell, outcome, weight) with their event counts.
    pattern_cell: np.ndarray  # int, index into the cell arrays above
    pattern_coop: np.ndarray  # bool
    pattern_weight: np.ndarray
    pattern_count: np.ndarray
    event_pattern: np.ndarray  # int per observation row: its pattern

    @property
    def n_cells(self) -> int:
        return len(self.group)

    def as_model_data(self) -> dict[str, np.ndarray]:
        """The arrays the compiled model reads, keyed by their pm.Data names."""
        return {
            "cell_index": np.stack([self.group, self.domain, self.quarter], axis=1).astype(np.int64),
            "cell_weights": np.stack([self.w_coop, self.w_conf], axis=1).astype(np.float64),
        }


def cell_data(table: pd.DataFrame, study: Study) -> CellData:
    """Collapse validated observations into cell counts and LOO patterns."""
    gidx = {g.id: i for i, g in enumerate(study.groups)}
    didx = {d.id: i for i, d in enumerate(study.domains)}
    frame = pd.DataFrame(
        {
            "g": table["group"].map(gidx).to_numpy(dtype=np.int64),
            "d": table["domain"].map(didx).to_numpy(dtype=np.int64),
            "t": (table["quarter"].to_numpy(dtype=np.int64) - study.time.start),
            "coop": table["cooperative"].to_numpy(dtype=bool),
            "w": table["weight"].to_numpy(dtype=np.float64),
        }
    )
    frame["wc"] = frame["w"] * frame["coop"]
    frame["wf"] = frame["w"] * ~frame["coop"]
    cells = frame.groupby(["g", "d", "t"], sort=True).agg(w_coop=("wc", "sum"), w_conf=("wf", "sum"), n=("w", "size"))
    # ngroup numbers groups in the same sorted order as the aggregations above.
    frame["cell"] = frame.groupby(["g", "d", "t"], sort=True).ngroup()
    by_pattern = frame.groupby(["cell", "coop", "w"], sort=True)
    patterns = by_pattern.size().rename("count").reset_index()
    event_pattern = by_pattern.ngroup().to_numpy()
    idx = cells.index
    return CellData(
        group=idx.get_level_values("g").to_numpy(),
        domain=idx.get_level_values("d").to_numpy(),
        quarter=idx.get_level_values("t").to_numpy(),
        w_coop=cells["w_coop"].to_numpy(),
        w_conf=cells["w_conf"].to_numpy(),
        n_events=cells["n"].to_numpy(),
        pattern_cell=patterns["cell"].to_numpy(dtype=np.int64),
        pattern_coop=patterns["coop"].to_numpy(dtype=bool),
        pattern_weight=patterns["w"].to_numpy(dtype=np.float64),
        pattern_count=patterns["count"].to_numpy(dtype=np.int64),
        event_pattern=event_pattern,
    )
