"""Direction of action: the observations' `initiator` column and the study's `[evidence] initiators`.

Issue 16: a row says who acted (the study's actor, the counterpart, or both together); a study
chooses whose acts count as evidence of the actor's alignment; the cells then hold exactly the
chosen rows. Files without the column read as if every row were a joint act, so they give the
same numbers as before the column existed.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from helpers import COLUMNS, DIRECTED_COLUMNS, base_study, event, problem_with, write_events, write_study

from forecast.data.cells import cell_data, evidence_rows, evidence_table
from forecast.data.observations import COLUMNS as OBSERVATION_COLUMNS
from forecast.data.observations import load_observations
from forecast.errors import ObservationError, StudyError
from forecast.runs.stored import fitting_content
from forecast.spec.study import INITIATORS, load_study
from forecast.workflows.init import init_study
from forecast.workflows.validate import run_validate

TODAY = dt.date(2024, 6, 30)
FILE = "events.csv"


def study_with(tmp_path, initiators: list[str] | None = None, name: str = "mini.toml"):
    data = base_study()
    if initiators is not None:
        data["evidence"] = {"initiators": initiators}
    return load_study(write_study(tmp_path, data, name=name))


def load_rows(tmp_path, rows, *, initiators=None, columns=DIRECTED_COLUMNS):
    study = study_with(tmp_path, initiators)
    write_events(tmp_path / FILE, rows, columns)
    return study, load_observations(study, today=TODAY)


def obs_error(tmp_path, rows, **kwargs) -> ObservationError:
    with pytest.raises(ObservationError) as info:
        load_rows(tmp_path, rows, **kwargs)
    return info.value


# --- the column ----------------------------------------------------------------------------


def test_init_order_of_columns_puts_initiator_after_outcome():
    assert OBSERVATION_COLUMNS == DIRECTED_COLUMNS
    assert OBSERVATION_COLUMNS.index("initiator") == OBSERVATION_COLUMNS.index("outcome") + 1


@pytest.mark.parametrize("value", INITIATORS)
def test_each_initiator_is_accepted(tmp_path, value):
    _, obs = load_rows(tmp_path, [event(1, initiator=value)])
    assert obs.table["initiator"].tolist() == [value]


def test_initiator_is_read_case_insensitively_and_stripped(tmp_path):
    _, obs = load_rows(tmp_path, [event(1, initiator=" Actor "), event(2, initiator="JOINT")])
    assert obs.table["initiator"].tolist() == ["actor", "joint"]


@pytest.mark.parametrize("bad", ["turkey", "both", "actors", "1"])
def test_unknown_initiator_names_file_line_column_and_what_is_allowed(tmp_path, bad):
    err = obs_error(tmp_path, [event(1, initiator="joint"), event(2, initiator=bad)])
    problem_with(
        err, f"{FILE}: line 3, column 'initiator': '{bad}' is not an initiator", "'actor', 'counterpart', 'joint'"
    )
    assert len(err.problems) == 1


def test_misspelt_initiator_suggests_the_nearest(tmp_path):
    err = obs_error(tmp_path, [event(1, initiator="counterpar")])
    problem_with(err, "'counterpar' is not an initiator (did you mean 'counterpart'?)")


def test_empty_initiator_in_a_file_with_the_column_is_an_error(tmp_path):
    err = obs_error(tmp_path, [event(1, initiator="actor"), event(2, initiator="")])
    problem_with(err, f"{FILE}: line 3, column 'initiator': is empty", "'actor', 'counterpart', 'joint'")


def test_a_file_without_the_column_reads_every_row_as_joint(tmp_path):
    _, obs = load_rows(tmp_path, [event(1), event(2)], columns=COLUMNS)
    assert obs.table["initiator"].tolist() == ["joint", "joint"]


def test_a_file_without_the_column_is_refused_when_the_study_counts_no_joint_acts(tmp_path):
    err = obs_error(tmp_path, [event(1)], columns=COLUMNS, initiators=["actor"])
    problem_with(err, "no 'initiator' column", "every row is read as 'joint'", "[evidence] initiators")


# --- the study option ------------------------------------------------------------------------


def test_the_default_study_counts_every_initiator(tmp_path):
    assert study_with(tmp_path).evidence_initiators == INITIATORS == ("actor", "counterpart", "joint")


def test_initiators_are_kept_in_canonical_order(tmp_path):
    assert study_with(tmp_path, ["joint", "actor"]).evidence_initiators == ("actor", "joint")


def test_unknown_initiator_in_the_study_suggests_the_nearest(tmp_path):
    with pytest.raises(StudyError) as info:
        study_with(tmp_path, ["actor", "jiont"])
    problem_with(
        info.value, "evidence.initiators[1]: unknown initiator 'jiont' (did you mean 'joint'?)", "allowed: 'actor'"
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ([], "list at least one"),
        (["actor", "actor"], "listed twice"),
        ("actor", "evidence.initiators"),
    ],
)
def test_bad_initiator_lists_are_refused(tmp_path, value, fragment):
    with pytest.raises(StudyError) as info:
        study_with(tmp_path, value)
    problem_with(info.value, fragment)


def test_unknown_key_in_the_evidence_table_is_refused(tmp_path):
    data = base_study()
    data["evidence"] = {"initiator": ["actor"]}
    with pytest.raises(StudyError) as info:
        load_study(write_study(tmp_path, data))
    problem_with(info.value, "evidence.initiator: unknown key (did you mean 'initiators'?)")


def test_the_option_is_part_of_what_a_run_depends_on(tmp_path):
    default = study_with(tmp_path)
    explicit = study_with(tmp_path, ["counterpart", "joint", "actor"], name="explicit.toml")
    actor_only = study_with(tmp_path, ["actor"], name="actor.toml")
    assert fitting_content(default) == fitting_content(explicit)
    assert fitting_content(default) != fitting_content(actor_only)


# --- cells use exactly the chosen rows -----------------------------------------------------------

# A hand-made file: (initiator, counterpart, domain, outcome, reliability, event_date).
# us and eu are group 'west' (index 0), russia 'east' (1); defence 0, energy 1; 2020Q1 is quarter 0.
HAND_MADE = [
    ("actor", "us", "defence", "cooperative", "A1", "2020-02-01"),  # w 1.0
    ("counterpart", "us", "defence", "conflictual", "A1", "2020-02-02"),  # w 1.0
    ("joint", "eu", "defence", "cooperative", "B2", "2020-03-01"),  # w 0.81
    ("actor", "us", "defence", "conflictual", "C3", "2020-03-02"),  # w 0.5625
    ("counterpart", "russia", "energy", "conflictual", "A1", "2020-08-01"),  # w 1.0
    ("actor", "russia", "energy", "cooperative", "B2", "2020-08-02"),  # w 0.81
    ("joint", "russia", "energy", "cooperative", "A1", "2021-11-01"),  # w 1.0
    ("counterpart", "eu", "energy", "cooperative", "B2", "2021-01-05"),  # w 0.81
]


def hand_made_rows():
    return [
        event(
            n,
            initiator=who,
            counterpart=c,
            domain=d,
            outcome=o,
            intensity="3" if o == "cooperative" else "-3",
            reliability=r,
            event_date=date,
        )
        for n, (who, c, d, o, r, date) in enumerate(HAND_MADE, start=1)
    ]


def cells_of(tmp_path, initiators):
    study, obs = load_rows(tmp_path, hand_made_rows(), initiators=initiators)
    return obs.table, cell_data(obs.table, study)


def cell_stats(cells) -> dict:
    """(group, domain, quarter) -> (w_coop, w_conf, n_events), rounded."""
    return {
        (int(g), int(d), int(t)): (round(float(c), 10), round(float(f), 10), int(n))
        for g, d, t, c, f, n in zip(
            cells.group, cells.domain, cells.quarter, cells.w_coop, cells.w_conf, cells.n_events, strict=True
        )
    }


def test_all_initiators_count_every_row_of_the_hand_made_file(tmp_path):
    _, cells = cells_of(tmp_path, None)
    assert cell_stats(cells) == {
        (0, 0, 0): (1.0 + 0.81, 1.0 + 0.5625, 4),
        (0, 1, 4): (0.81, 0.0, 1),
        (1, 1, 2): (0.81, 1.0, 2),
        (1, 1, 7): (1.0, 0.0, 1),
    }
    assert cells.event_row.tolist() == list(range(len(HAND_MADE)))


def test_actor_only_keeps_exactly_the_actors_rows(tmp_path):
    _, cells = cells_of(tmp_path, ["actor"])
    assert cell_stats(cells) == {
        (0, 0, 0): (1.0, 0.5625, 2),
        (1, 1, 2): (0.81, 0.0, 1),
    }
    assert cells.event_row.tolist() == [0, 3, 5]
    assert len(cells.event_pattern) == len(cells.event_counted) == 3


def test_actor_and_joint_drop_exactly_the_counterparts_rows(tmp_path):
    _, cells = cells_of(tmp_path, ["actor", "joint"])
    assert cell_stats(cells) == {
        (0, 0, 0): (1.0 + 0.81, 0.5625, 3),
        (1, 1, 2): (0.81, 0.0, 1),
        (1, 1, 7): (1.0, 0.0, 1),
    }
    assert cells.event_row.tolist() == [0, 2, 3, 5, 6]


def test_counterpart_only_keeps_exactly_the_counterparts_rows(tmp_path):
    _, cells = cells_of(tmp_path, ["counterpart"])
    assert cell_stats(cells) == {
        (0, 0, 0): (0.0, 1.0, 1),
        (0, 1, 4): (0.81, 0.0, 1),
        (1, 1, 2): (0.0, 1.0, 1),
    }


def test_the_chosen_rows_give_the_cells_of_a_file_holding_only_them(tmp_path):
    table, cells = cells_of(tmp_path / "a", ["actor", "joint"])
    chosen = [r for r in hand_made_rows() if r["initiator"] != "counterpart"]
    study, obs = load_rows(tmp_path / "b", chosen)
    alone = cell_data(obs.table, study)
    for name in ("group", "domain", "quarter", "w_coop", "w_conf", "n_events", "pattern_cell", "pattern_count"):
        np.testing.assert_array_equal(getattr(cells, name), getattr(alone, name), err_msg=name)
    np.testing.assert_array_equal(cells.event_pattern, alone.event_pattern)
    assert table["id"].to_numpy()[cells.event_row].tolist() == obs.table["id"].tolist()


def test_evidence_rows_and_table_select_the_chosen_rows(tmp_path):
    study, obs = load_rows(tmp_path, hand_made_rows(), initiators=["actor"])
    assert evidence_rows(obs.table, study).tolist() == [w == "actor" for w, *_ in HAND_MADE]
    assert evidence_table(obs.table, study)["initiator"].tolist() == ["actor"] * 3


def test_a_table_without_the_column_counts_every_row(tmp_path):
    study, obs = load_rows(tmp_path, hand_made_rows(), initiators=["actor"])
    table = obs.table.drop(columns="initiator")
    assert evidence_rows(table, study).all()
    assert cell_data(table, study).n_events.sum() == len(HAND_MADE)


def test_a_report_left_out_by_its_initiator_no_longer_carries_its_event(tmp_path):
    # E2 (counterpart, A1) corroborates E1 (actor, C3) and is the better report; with actor-only
    # evidence E2 is not in the data, so E1 counts for the event, with its own weight.
    rows = [
        event(1, initiator="actor", reliability="C3"),
        event(2, initiator="counterpart", reliability="A1", origin_id="E1"),
    ]
    study, obs = load_rows(tmp_path / "all", rows)
    everyone = cell_data(obs.table, study)
    assert everyone.event_counted.tolist() == [False, True]
    assert everyone.w_coop.tolist() == [1.0]
    study, obs = load_rows(tmp_path / "actor", rows, initiators=["actor"])
    actor = cell_data(obs.table, study)
    assert actor.event_counted.tolist() == [True]
    assert actor.w_coop.tolist() == [0.5625]


# --- old files give the same numbers ---------------------------------------------------------------


def test_the_default_study_gives_the_same_cells_with_or_without_the_column(tmp_path):
    rows = hand_made_rows()
    study, directed = load_rows(tmp_path / "new", rows)
    _, old = load_rows(tmp_path / "old", rows, columns=COLUMNS)
    a, b = cell_data(directed.table, study), cell_data(old.table, study)
    for name in a.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert directed.table.drop(columns="initiator").equals(old.table.drop(columns="initiator"))


# --- init and validate ------------------------------------------------------------------------------


def test_init_writes_the_initiator_column_and_the_evidence_option(tmp_path):
    study_path, data_path = init_study("gulf", tmp_path)
    assert data_path.read_text(encoding="utf-8") == ",".join(OBSERVATION_COLUMNS) + "\n"
    assert "[evidence]" in study_path.read_text(encoding="utf-8")
    study = load_study(study_path)
    assert study.evidence_initiators == INITIATORS
    assert load_observations(study).n == 0


def test_validate_counts_rows_by_initiator_and_as_evidence(tmp_path):
    from forecast.reports.text.validate import render_validate

    data = base_study()
    data["evidence"] = {"initiators": ["actor", "joint"]}
    path = write_study(tmp_path, data)
    write_events(tmp_path / FILE, hand_made_rows(), DIRECTED_COLUMNS)
    result = run_validate(path)
    assert result.by_initiator == {"actor": 3, "counterpart": 3, "joint": 2}
    assert result.evidence_initiators == ["actor", "joint"]
    assert result.n_evidence == 5
    text = render_validate(result)
    assert "by initiator: actor 3, counterpart 3, joint 2" in text
    assert "only rows with initiator actor or joint count (5 of 8" in text
