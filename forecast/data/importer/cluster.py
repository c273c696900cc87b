"""Repeated reports of one event become one event: clustering the mapped rows of an import.

A machine-coded feed reports one consultation, one delivery, one strike many times: every article,
every outlet, often on the next day too, sometimes under another CAMEO code. Counted as they come,
a single meeting repeated 1,951 times outweighs two hundred hand-coded events. So the rows an
import maps are grouped before anything is written:

- **one event**: rows with the same dyad (counterpart) and initiator, a compatible event family
  (the same outcome: a consultation coded 03 by one outlet and 04 by another is one event; a
  cooperation and a conflict never are) and, with ``[cluster] same_domain``, the same domain,
  whose dates lie within ``[cluster] window_days`` of the cluster's first date;
- **its representative**: the best-attested row: most sources (GDELT's NumSources), then most
  mentions (NumMentions), then a root event (IsRootEvent) before a non-root one, then the
  earliest date and the file's order;
- **its grade** rises with the number of *independent* sources: the larger of the most sources
  any one report names and the number of distinct sites (URL hosts, else publishers) among its
  reports; ``[mapping] by_sources`` turns that number into a grade (e.g. 3 -> B3, 10 -> B2), the
  other reports keep the grade of their own number of sources;
- **the others** are kept as corroborating reports (``origin_id`` = the representative's id;
  the model counts an event once, through its best report), or skipped with the reason
  ``repeat`` when ``[cluster] reports = "skip"``.

An event already in the observation file (same counterpart, outcome and initiator, or a joint
one, dated within the window of the cluster) is the cluster's event: ``on_match`` then skips the
cluster (``matches_existing``), adds all its rows as reports of that event (``corroborate``) or
keeps it as a new event (``keep``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Candidate:
    """A mapped row waiting for its cluster: the observation and what clustering compares."""

    obs: dict
    line: int
    source_id: str
    date: dt.date
    counterpart: str
    initiator: str
    family: str
    domain: str
    n_sources: int | None
    n_mentions: int | None
    is_root: bool | None
    site: str
    grade: str  # the grade of the row's own number of sources
    order: int = 0

    def attestation(self) -> tuple:
        """Sort key: the best-attested row first."""
        return (
            -(self.n_sources or 0),
            -(self.n_mentions or 0),
            0 if self.is_root else 1,
            self.date,
            self.order,
        )


@dataclass
class Cluster:
    """Rows reporting one event, the best-attested first."""

    rows: list[Candidate] = field(default_factory=list)
    matches: str | None = None  # the id of an event already in the observation file

    @property
    def representative(self) -> Candidate:
        return self.rows[0]

    def independent_sources(self) -> int:
        """The larger of the most sources one report names and the number of distinct sites."""
        most = max((r.n_sources or 0 for r in self.rows), default=0)
        sites = len({r.site for r in self.rows if r.site})
        return max(most, sites, 1)


def _key(c: Candidate, same_domain: bool) -> tuple:
    return (c.counterpart, c.initiator, c.family, c.domain if same_domain else "")


def cluster(candidates: list[Candidate], window_days: int, *, same_domain: bool = False) -> list[Cluster]:
    """Group candidates into events (see the module docstring); clusters in the order of their first row."""
    for i, c in enumerate(candidates):
        c.order = i
    by_key: dict[tuple, list[Candidate]] = {}
    for c in candidates:
        by_key.setdefault(_key(c, same_domain), []).append(c)
    window = dt.timedelta(days=window_days)
    out: list[Cluster] = []
    for rows in by_key.values():
        rows.sort(key=lambda c: (c.date, c.order))
        current: Cluster | None = None
        start: dt.date | None = None
        for c in rows:
            if current is None or start is None or c.date - start > window:
                current, start = Cluster(), c.date
                out.append(current)
            current.rows.append(c)
    for cl in out:
        cl.rows.sort(key=Candidate.attestation)
    out.sort(key=lambda cl: min(r.order for r in cl.rows))
    return out


def match_existing(
    clusters: list[Cluster], existing: pd.DataFrame, window_days: int, *, same_domain: bool = False
) -> None:
    """Set ``matches`` of each cluster that reports an event already in the observation file: same
    counterpart and outcome, the same initiator (a joint event matches either), within the window
    of one of the cluster's dates; the nearest in time is taken (then the file's order)."""
    if not len(existing):
        return
    e = existing
    if "origin_id" in e:
        e = e[e["origin_id"].fillna("").astype(str) == ""]
    dates = pd.to_datetime(e["event_date"]).dt.date.to_numpy()
    window = dt.timedelta(days=window_days)
    index: dict[tuple, list[int]] = {}
    outcomes = e["outcome"].map(lambda v: "cooperative" if bool(v) else "conflictual").to_numpy()
    initiators = e["initiator"].to_numpy() if "initiator" in e else ["joint"] * len(e)
    domains = e["domain"].to_numpy()
    ids = e["id"].to_numpy()
    counterparts = e["counterpart"].to_numpy()
    for i in range(len(e)):
        index.setdefault((counterparts[i], outcomes[i]), []).append(i)
    for cl in clusters:
        rep = cl.representative
        first = min(r.date for r in cl.rows)
        last = max(r.date for r in cl.rows)
        best: tuple | None = None
        for i in index.get((rep.counterpart, rep.family), []):
            if initiators[i] not in (rep.initiator, "joint"):
                continue
            if same_domain and domains[i] != rep.domain:
                continue
            if not first - window <= dates[i] <= last + window:
                continue
            gap = min(abs((dates[i] - r.date).days) for r in cl.rows)
            if best is None or (gap, i) < best:
                best = (gap, i)
        if best is not None:
            cl.matches = str(ids[best[1]])
