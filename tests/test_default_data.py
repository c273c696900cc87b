"""The default data file obeys its codebook (data/CODEBOOK.md): grades, direction, signs, coverage."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from source_families import lookup  # noqa: E402

DATA = REPO / "data" / "turkey_nato_events.csv"
PARTY = {
    "russia": "russia",
    "united_states": "united_states",
    "nato": "nato",
    "eu": "eu",
    "ukraine": "ukraine",
    "georgia": "georgia",
}
GROUPS = {
    "russia": "russia",
    "united_states": "nato",
    "nato": "nato",
    "eu": "nato",
    "ukraine": "balancing",
    "georgia": "balancing",
}


def _rows() -> list[dict]:
    with DATA.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def highest_grade(row: dict) -> str:
    """The highest Admiralty grade section 7.1 allows for a row's listed sources."""
    sources = [lookup(s.strip()) for s in row["source"].split(";") if s.strip()]
    acting = {"actor": {"turkey"}, "counterpart": {PARTY[row["counterpart"]]}}.get(row["initiator"])
    for _family, party, kind in sources:
        if kind == "official" and party is not None and (acting is None or party in acting):
            return "A1"
    families = {family for family, _, kind in sources if kind != "agg"}
    if len(families) >= 2:
        return "A1"
    return "B2" if families else "C3"


def _at_most(grade: str, ceiling: str) -> bool:
    return grade[0] >= ceiling[0] and int(grade[1]) >= int(ceiling[1])


def test_no_row_is_graded_above_what_its_sources_allow():
    over = [
        (r["id"], r["reliability"], highest_grade(r), r["source"])
        for r in _rows()
        if not _at_most(r["reliability"], highest_grade(r))
    ]
    assert not over, "graded above the codebook's rule (id, grade, allowed, sources):\n" + "\n".join(map(str, over))


def test_the_grade_rule_itself():
    base = {"counterpart": "russia", "initiator": "counterpart"}
    assert highest_grade({**base, "source": "Reuters"}) == "B2"
    assert highest_grade({**base, "source": "Reuters; AFP"}) == "A1"
    assert highest_grade({**base, "source": "TASS; RIA Novosti"}) == "B2"  # one family
    assert highest_grade({**base, "source": "Kremlin.ru"}) == "A1"  # the acting party's own record
    assert highest_grade({**base, "initiator": "actor", "source": "Kremlin.ru"}) == "B2"  # the recipient's record
    assert highest_grade({**base, "source": "Wikipedia"}) == "C3"


def test_every_row_says_who_acted_and_joint_acts_are_cooperative():
    rows = _rows()
    assert {r["initiator"] for r in rows} <= {"actor", "counterpart", "joint"}
    assert not [r["id"] for r in rows if r["initiator"] == "joint" and r["outcome"] != "cooperative"]


@pytest.mark.parametrize("group", ["russia", "nato", "balancing"])
def test_every_group_has_at_least_five_events_in_every_full_year(group):
    counts: dict[int, int] = {}
    for r in _rows():
        if GROUPS[r["counterpart"]] == group:
            year = int(r["event_date"][:4])
            counts[year] = counts.get(year, 0) + 1
    thin = {y: counts.get(y, 0) for y in range(2015, 2026) if counts.get(y, 0) < 5}
    assert not thin, f"{group}: fewer than 5 events in {thin}"
