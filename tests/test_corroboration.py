"""Corroboration: several reports of one event count once, through the best-corroborated report.

The cell tests are pure (no model); one end-to-end `update` on a static one-group study checks
that the likelihood counts a corroborated event once, against exact log marginal likelihoods
from quadrature (tests/exact.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from exact import log_ml_group, pymc_prior
from helpers import event, static_study, write_mini, write_study

from forecast.data.cells import cell_data, corroboration
from forecast.data.observations import load_observations
from forecast.spec.study import load_study, quarter_index
from forecast.workflows.update import run_update


@pytest.fixture
def mini(tmp_path):
    study_path, _ = write_mini(tmp_path, [event(1)])
    return load_study(study_path)


def table(rows: list[tuple[str, str, bool, float]], origin: list[str] | None = None) -> pd.DataFrame:
    """Rows of (id, group, cooperative, weight) in west/defence/2020Q1 unless the group says otherwise."""
    t = pd.DataFrame(rows, columns=["id", "group", "cooperative", "weight"])
    t["domain"] = "defence"
    t["quarter"] = pd.array([quarter_index("2020Q1")] * len(t), dtype="Int64")
    if origin is not None:
        t["origin_id"] = origin
    return t


def test_without_origin_ids_every_row_counts(mini):
    t = table([("a", "west", True, 1.0), ("b", "west", True, 1.0), ("c", "east", False, 0.5)])
    roots, counted = corroboration(t)
    assert roots.tolist() == ["a", "b", "c"] and counted.all()
    with_empty = cell_data(t.assign(origin_id=""), mini)
    without = cell_data(t, mini)
    assert with_empty.w_coop.tolist() == without.w_coop.tolist() == [2.0, 0.0]
    assert with_empty.event_counted.all()


def test_a_corroborating_report_is_not_counted_again(mini):
    t = table([("a", "west", True, 1.0), ("b", "west", True, 0.56)], origin=["", "a"])
    cells = cell_data(t, mini)
    assert cells.w_coop.tolist() == [1.0]  # not 1.56
    assert cells.n_events.tolist() == [1]
    assert cells.event_counted.tolist() == [True, False]
    assert cells.event_root.tolist() == ["a", "a"]
    # the report that is not counted shows its event's counted pattern
    assert cells.event_pattern.tolist() == [0, 0]
    assert cells.pattern_count.tolist() == [1]


def test_the_best_corroborated_report_counts_even_if_it_is_not_the_first(mini):
    t = table([("a", "west", True, 0.25), ("b", "west", True, 0.9), ("c", "west", True, 0.5)], origin=["", "a", "a"])
    cells = cell_data(t, mini)
    assert cells.event_counted.tolist() == [False, True, False]
    assert cells.w_coop.tolist() == [0.9]


def test_a_tie_goes_to_the_root_report(mini):
    t = table([("b", "west", True, 0.9), ("a", "west", True, 0.9)], origin=["a", ""])
    assert corroboration(t)[1].tolist() == [False, True]


def test_chains_of_origin_ids_resolve_to_one_event(mini):
    t = table(
        [("a", "west", True, 0.5), ("b", "west", True, 0.75), ("c", "west", True, 1.0), ("d", "west", False, 1.0)],
        origin=["", "a", "b", ""],
    )
    roots, counted = corroboration(t)
    assert roots.tolist() == ["a", "a", "a", "d"]
    assert counted.tolist() == [False, False, True, True]
    cells = cell_data(t, mini)
    assert (cells.w_coop.tolist(), cells.w_conf.tolist()) == ([1.0], [1.0])


def test_reports_of_a_left_out_event_still_count_once(mini):
    """Leaving out an event's root row (a sensitivity analysis) keeps its other reports together."""
    t = table([("b", "west", True, 0.5), ("c", "west", True, 0.75)], origin=["a", "a"])
    roots, counted = corroboration(t)
    assert roots.tolist() == ["a", "a"] and counted.tolist() == [False, True]


def test_a_cycle_of_origin_ids_is_one_event(mini):
    t = table([("a", "west", True, 0.5), ("b", "west", True, 0.75), ("x", "west", True, 1.0)], origin=["b", "a", "a"])
    roots, counted = corroboration(t)
    assert roots.tolist() == ["a", "a", "a"]
    assert counted.tolist() == [False, False, True]


def test_reports_in_different_cells_count_once_in_the_best_reports_cell(mini):
    """Reports may disagree on the counterpart group; the counted report's cell gets the event."""
    t = table([("a", "west", True, 0.5), ("b", "east", False, 0.9)], origin=["", "a"])
    cells = cell_data(t, mini)
    assert cells.group.tolist() == [1]  # east only
    assert (cells.w_coop.tolist(), cells.w_conf.tolist()) == ([0.0], [0.9])
    assert cells.event_pattern.tolist() == [0, 0]


def test_counted_rows_alone_give_the_same_cells(mini):
    rng = np.random.default_rng(1)
    n = 300
    ids = [f"e{i}" for i in range(n)]
    origin = ["" if i < 100 or rng.random() < 0.3 else ids[rng.integers(0, i)] for i in range(n)]
    t = table(
        [
            (ids[i], rng.choice(["west", "east"]), bool(rng.random() < 0.6), float(rng.choice([0.25, 0.5, 1.0])))
            for i in range(n)
        ],
        origin=origin,
    )
    cells = cell_data(t, mini)
    only = cell_data(t[cells.event_counted].drop(columns="origin_id"), mini)
    for name in ("group", "domain", "quarter", "w_coop", "w_conf", "n_events", "pattern_count", "pattern_weight"):
        np.testing.assert_array_equal(getattr(cells, name), getattr(only, name))
    # one counted report per event, and it carries the event's highest weight
    frame = pd.DataFrame({"root": cells.event_root, "w": t["weight"], "counted": cells.event_counted})
    assert (frame.groupby("root")["counted"].sum() == 1).all()
    best = frame.groupby("root")["w"].max()
    assert (frame[frame.counted].set_index("root")["w"] == best.loc[frame[frame.counted].root]).all()
    np.testing.assert_array_equal(np.bincount(cells.event_pattern[cells.event_counted]), cells.pattern_count)


# --- end to end: `update` counts a corroborated event once ------------------------------------------

STATIC = static_study("corroborated", {"up": 1.0, "down": -1.0})


@pytest.mark.slow
def test_update_counts_a_corroborated_event_once(tmp_path):
    write_study(tmp_path, STATIC, "s.toml")
    rows = "id,event_date,counterpart,domain,outcome,reliability,description,source,origin_id\n"
    rows += "".join(f"e{i},2020-03-0{1 + i % 5},c,d,cooperative,A1,event {i},wire,\n" for i in range(6))
    rows += "".join(f"e{i},2020-05-0{1 + i % 5},c,d,conflictual,A1,event {i},wire,\n" for i in range(6, 8))
    # three more reports of e0 (one through r1), all graded below e0's A1, and one report of e6
    rows += "r1,2020-03-02,c,d,cooperative,B2,report of e0,paper,e0\nr2,2020-03-03,c,d,cooperative,C3,report,tv,r1\n"
    rows += "r3,2020-03-03,c,d,cooperative,0.5,report,blog,e0\nr4,2020-05-02,c,d,conflictual,B2,report of e6,paper,e6\n"
    (tmp_path / "events.csv").write_text(rows)
    result = run_update(tmp_path / "s.toml", runs_root=tmp_path / "runs", progress=None)
    assert result.converged and result.n_observations == 12
    once, twice = {}, {}
    for h, mu in (("up", 1.0), ("down", -1.0)):
        tp, sp = pymc_prior("Normal", mu=mu, sigma=0.5), pymc_prior("HalfNormal", sigma=0.3)
        once[h] = log_ml_group(tp, sp, [(6.0, 2.0)])
        twice[h] = log_ml_group(tp, sp, [(6.0 + 0.81 + 0.5625 + 0.5, 2.0 + 0.81)])
    for row in result.hypotheses:
        err = abs(row.log_marginal_likelihood - once[row.id])
        assert err < 4 * row.log_marginal_likelihood_se + 0.02, (row.id, row.log_marginal_likelihood, once[row.id])
        assert abs(row.log_marginal_likelihood - twice[row.id]) > 1.0
    # every report keeps its line in the pointwise table; reports of e0 show e0's terms
    run = Path(result.run_dir)
    pointwise = pd.read_csv(run / "loo_pointwise.csv")
    assert len(pointwise) == 12
    by_id = pointwise.set_index("id")
    for r in ("r1", "r2", "r3"):
        assert by_id.loc[r, "elpd_loo__up"] == by_id.loc["e0", "elpd_loo__up"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_observations"] == 12
    obs = load_observations(load_study(tmp_path / "s.toml"))
    assert obs.table["origin_id"].tolist()[-4:] == ["e0", "r1", "e0", "e6"]
