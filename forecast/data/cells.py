"""Sufficient statistics: observations collapsed to weighted counts per model cell.

A cell is one (counterpart group, domain, quarter). The likelihood needs only each cell's
weighted number of cooperative and conflictual events, so fitting costs O(cells), not O(events).
LOO needs per-event terms, but events that share a cell, an outcome and a weight have identical
terms, so they are kept once as a *pattern* with a count: exact, and still O(cells).

Corroboration: several reports of one underlying event are not independent evidence. A row whose
``origin_id`` names another row reports the same event; following ``origin_id`` links to their end
gives each row its *root event*. The likelihood counts each root event once, through its
best-corroborated report: the row with the highest reliability weight (ties go to the root's own
row, then to the first in file order). The other reports are kept but not counted; their
``event_pattern`` is the pattern of the report that is counted for their event, and
``event_counted`` says which rows count.

Direction: the study's ``[evidence] initiators`` chooses whose acts count as evidence of the
actor's alignment (the ``initiator`` column: the actor's, the counterpart's, or joint acts). Only
the rows whose initiator is chosen enter the cells, the patterns and the corroboration above;
the others are left out exactly as if they were not in the file. The per-row arrays of
``CellData`` (``event_*``) describe the chosen rows, in file order: ``event_row`` gives their
positions in the table that was passed in (with the default, all three initiators, every row is
chosen and ``event_row`` is ``0..n-1``). A table without an ``initiator`` column (one built in
code, e.g. simulated data) has every row chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecast.data.observations import lookup
from forecast.spec.study import INITIATORS, Study


@dataclass(frozen=True)
class CellData:
    """Per-cell weighted counts, indices into the model's (group, domain, quarter) grid."""

    group: np.ndarray  # int, index into study.groups
    domain: np.ndarray  # int, index into study.domains
    quarter: np.ndarray  # int, 0 = study.time.start
    w_coop: np.ndarray  # summed weights of cooperative events
    w_conf: np.ndarray  # summed weights of conflictual events
    n_events: np.ndarray  # counted events (one per corroborated event; see corroboration)
    # Patterns: distinct (cell, outcome, weight) with their event counts.
    pattern_cell: np.ndarray  # int, index into the cell arrays above
    pattern_coop: np.ndarray  # bool
    pattern_weight: np.ndarray
    pattern_count: np.ndarray
    event_pattern: np.ndarray  # int per observation row: its pattern (a corroborating report: its event's)
    # Corroboration, per observation row: whether the likelihood counts it, and its root event id.
    event_counted: np.ndarray | None = None  # bool
    event_root: np.ndarray | None = None  # str
    # Position of each chosen row (see "Direction" above) in the table given to ``cell_data``.
    event_row: np.ndarray | None = None  # int

    @property
    def n_cells(self) -> int:
        return len(self.group)

    def as_model_data(self) -> dict[str, np.ndarray]:
        """The arrays the compiled model reads, keyed by their pm.Data names."""
        return {
            "cell_index": np.stack([self.group, self.domain, self.quarter], axis=1).astype(np.int64),
            "cell_weights": np.stack([self.w_coop, self.w_conf], axis=1).astype(np.float64),
        }


def corroboration(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each row's root event id and whether the likelihood counts the row (see the module docstring).

    A table without ``id`` or ``origin_id`` columns has no corroborating reports: every row is its
    own event and counts. An ``origin_id`` that names no row of the table (e.g. its row was left out
    for a sensitivity analysis) still names the event, so the reports that share it stay together.
    A cycle of ``origin_id`` links is one event, rooted at the smallest id in the cycle.
    """
    n = len(table)
    ids = table["id"].astype(str).to_numpy() if "id" in table else np.arange(n).astype(str)
    if "origin_id" not in table or n == 0:
        return ids.astype(object), np.ones(n, dtype=bool)
    origin = table["origin_id"].fillna("").astype(str).str.strip().to_numpy()
    linked = origin != ""
    if not linked.any():
        return ids.astype(object), np.ones(n, dtype=bool)
    parent = {i: o for i, o in zip(ids[linked], origin[linked], strict=True) if o != i}
    cache: dict[str, str] = {}

    def root_of(start: str) -> str:
        path, seen, x = [], set(), start
        while x in parent and x not in cache:
            if x in seen:  # a cycle: one event, rooted at its smallest id
                cycle = path[path.index(x) :]
                root = min(cycle)
                for y in path:
                    cache[y] = root
                return root
            seen.add(x)
            path.append(x)
            x = parent[x]
        root = cache.get(x, x)
        for y in path:
            cache[y] = root
        return root

    roots = np.array([root_of(i) if i in parent else i for i in ids], dtype=object)
    weight = table["weight"].to_numpy(dtype=np.float64)
    order = pd.DataFrame({"root": roots, "w": weight, "not_root": ids != roots, "pos": np.arange(n)})
    best = order.sort_values(["root", "w", "not_root", "pos"], ascending=[True, False, True, True], kind="stable")
    counted = np.zeros(n, dtype=bool)
    counted[best.drop_duplicates("root")["pos"].to_numpy()] = True
    return roots, counted


def evidence_rows(table: pd.DataFrame, study: Study) -> np.ndarray:
    """Whether each row counts as evidence: its initiator is one of the study's chosen initiators."""
    if "initiator" not in table or set(study.evidence_initiators) == set(INITIATORS):
        return np.ones(len(table), dtype=bool)
    return table["initiator"].isin(study.evidence_initiators).to_numpy(dtype=bool)


def evidence_table(table: pd.DataFrame, study: Study) -> pd.DataFrame:
    """The rows of ``table`` that count as evidence (all of them under the default study)."""
    keep = evidence_rows(table, study)
    return table if keep.all() else table[keep]


def cell_data(table: pd.DataFrame, study: Study) -> CellData:
    """Collapse validated observations into cell counts and LOO patterns.

    Only the rows whose initiator the study counts as evidence are used (see "Direction" in the
    module docstring), and of those, only the counted report of each event enters the cells and
    patterns (see ``corroboration``).
    """
    keep = evidence_rows(table, study)
    rows = np.flatnonzero(keep)
    if not keep.all():
        table = table.iloc[rows]
    roots, counted = corroboration(table)
    gidx = {g.id: i for i, g in enumerate(study.groups)}
    didx = {d.id: i for i, d in enumerate(study.domains)}
    frame = pd.DataFrame(
        {
            "g": lookup(table["group"], gidx).to_numpy(dtype=np.int64)[counted],
            "d": lookup(table["domain"], didx).to_numpy(dtype=np.int64)[counted],
            "t": (table["quarter"].to_numpy(dtype=np.int64) - study.time.start)[counted],
            "coop": table["cooperative"].to_numpy(dtype=bool)[counted],
            "w": table["weight"].to_numpy(dtype=np.float64)[counted],
        }
    )
    frame["wc"] = frame["w"] * frame["coop"]
    frame["wf"] = frame["w"] * ~frame["coop"]
    cells = frame.groupby(["g", "d", "t"], sort=True).agg(w_coop=("wc", "sum"), w_conf=("wf", "sum"), n=("w", "size"))
    # ngroup numbers groups in the same sorted order as the aggregations above.
    frame["cell"] = frame.groupby(["g", "d", "t"], sort=True).ngroup()
    by_pattern = frame.groupby(["cell", "coop", "w"], sort=True)
    patterns = by_pattern.size().rename("count").reset_index()
    counted_pattern = by_pattern.ngroup().to_numpy()
    if counted.all():
        event_pattern = counted_pattern
    else:
        # A corroborating report that is not counted shows its event's counted pattern.
        pattern_of_root = dict(zip(roots[counted], counted_pattern, strict=True))
        event_pattern = np.array([pattern_of_root[r] for r in roots], dtype=np.int64)
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
        event_counted=counted,
        event_root=roots,
        event_row=rows,
    )
