"""Observation-file validation (one test per rule) and the collapse to model cells."""

from __future__ import annotations

import datetime as dt
import io
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import (
    COLUMNS,
    DEFAULT_STUDY,
    base_study,
    event,
    events,
    problem_with,
    write_events,
    write_mini,
    write_study,
)

from forecast.data.cells import cell_data
from forecast.data.observations import MAX_REPORTED_PER_RULE, load_observations, read_with_arrow
from forecast.errors import ObservationError
from forecast.spec.study import load_study, quarter_index

TODAY = dt.date(2024, 6, 30)
FILE = "events.csv"


def load(tmp_path, rows, *, columns=COLUMNS, study=None, today=TODAY):
    study_path, csv_path = write_mini(tmp_path, (), study)
    write_events(csv_path, rows, columns)
    return load_observations(load_study(study_path), today=today)


def obs_error(tmp_path, rows, **kwargs) -> ObservationError:
    with pytest.raises(ObservationError) as info:
        load(tmp_path, rows, **kwargs)
    return info.value


def bad_second_row(tmp_path, **overrides) -> ObservationError:
    """A file whose second data row (line 3) carries ``overrides``; the others are valid."""
    return obs_error(tmp_path, [event(1), event(2, **overrides), event(3)])


def raw_error(tmp_path, content: bytes) -> ObservationError:
    study_path, csv_path = write_mini(tmp_path)
    csv_path.write_bytes(content)
    with pytest.raises(ObservationError) as info:
        load_observations(load_study(study_path), today=TODAY)
    return info.value


# --- dates ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["2020-13-01", "2020-02-30", "01/02/2020", "yesterday", "2020-02-01T10:00"])
def test_unparseable_event_date_names_file_line_and_column(tmp_path, bad):
    err = bad_second_row(tmp_path, event_date=bad)
    problem_with(err, f"{FILE}: line 3, column 'event_date': '{bad}' is not a date", "YYYY-MM-DD")
    assert len(err.problems) == 1


def test_empty_event_date_is_reported(tmp_path):
    err = bad_second_row(tmp_path, event_date="")
    problem_with(err, f"{FILE}: line 3, column 'event_date': is empty", "2019-07-12")


def test_future_event_date_is_reported(tmp_path):
    err = obs_error(
        tmp_path, [event(1, event_date="2020-06-30"), event(2, event_date="2020-07-01")], today=dt.date(2020, 6, 30)
    )
    problem_with(err, f"{FILE}: line 3, column 'event_date': '2020-07-01' is in the future (today is 2020-06-30)")
    assert len(err.problems) == 1  # today itself is not the future


def test_future_report_date_is_reported(tmp_path):
    err = obs_error(tmp_path, [event(1, report_date="2020-07-01")], today=dt.date(2020, 6, 30))
    problem_with(err, f"{FILE}: line 2, column 'report_date': '2020-07-01' is in the future")


def test_event_outside_the_study_window_is_reported(tmp_path):
    rows = [
        event(1, event_date="2020-01-01"),  # first day of 2020Q1: inside
        event(2, event_date="2019-12-31"),
        event(3, event_date="2021-12-31"),  # last day of 2021Q4: inside
        event(4, event_date="2022-01-01"),
    ]
    err = obs_error(tmp_path, rows)
    problem_with(err, f"{FILE}: line 3, column 'event_date': '2019-12-31' lies outside", "2020Q1..2021Q4")
    problem_with(err, f"{FILE}: line 5, column 'event_date': '2022-01-01' lies outside")
    assert len(err.problems) == 2


def test_report_date_before_event_date_is_reported(tmp_path):
    err = bad_second_row(tmp_path, event_date="2020-03-10", report_date="2020-03-09")
    problem_with(err, f"{FILE}: line 3, column 'report_date'", "before the event_date")


def test_missing_report_date_defaults_to_event_date(tmp_path):
    obs = load(
        tmp_path, [event(1, event_date="2020-03-10"), event(2, event_date="2020-03-10", report_date="2020-04-01")]
    )
    assert list(obs.table["report_date"].dt.strftime("%Y-%m-%d")) == ["2020-03-10", "2020-04-01"]


# --- categories -----------------------------------------------------------------------------


def test_unknown_counterpart_lists_the_known_ones(tmp_path):
    err = bad_second_row(tmp_path, counterpart="turkey")
    problem_with(
        err, f"{FILE}: line 3, column 'counterpart': 'turkey' is not a counterpart", "known: 'us', 'eu', 'russia'"
    )


def test_unknown_domain_lists_the_known_ones(tmp_path):
    err = bad_second_row(tmp_path, domain="space")
    problem_with(err, f"{FILE}: line 3, column 'domain': 'space' is not a domain", "known: 'defence', 'energy'")


@pytest.mark.parametrize("bad", ["neutral", "coop", ""])
def test_bad_outcome_lists_the_allowed_values(tmp_path, bad):
    err = bad_second_row(tmp_path, outcome=bad)
    problem_with(err, f"{FILE}: line 3, column 'outcome': '{bad}' must be 'cooperative', 'conflictual'")


def test_outcome_is_case_insensitive(tmp_path):
    obs = load(tmp_path, [event(1, outcome="Cooperative"), event(2, outcome="CONFLICTUAL", intensity="-2")])
    assert list(obs.table["cooperative"]) == [True, False]


# --- intensity ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["11", "-10.5", "100"])
def test_intensity_out_of_range_is_reported(tmp_path, bad):
    outcome = "conflictual" if bad.startswith("-") else "cooperative"
    err = bad_second_row(tmp_path, intensity=bad, outcome=outcome)
    problem_with(err, f"{FILE}: line 3, column 'intensity': '{bad}' must lie in -10..10")


@pytest.mark.parametrize("bad", ["high", "3;4", "1,5"])
def test_intensity_that_is_not_a_number_is_reported(tmp_path, bad):
    err = bad_second_row(tmp_path, intensity=bad)
    problem_with(err, f"{FILE}: line 3, column 'intensity': '{bad}' is not a number")


@pytest.mark.parametrize(("outcome", "intensity"), [("cooperative", "-2"), ("conflictual", "4")])
def test_intensity_with_the_wrong_sign_for_the_outcome_is_reported(tmp_path, outcome, intensity):
    err = bad_second_row(tmp_path, outcome=outcome, intensity=intensity)
    problem_with(err, f"{FILE}: line 3, column 'intensity': '{intensity}' has the wrong sign", "cooperative >= 0")


def test_intensity_at_the_limits_zero_or_empty_is_valid(tmp_path):
    rows = [
        event(1, intensity="10"),
        event(2, intensity="-10", outcome="conflictual"),
        event(3, intensity="0", outcome="conflictual"),
        event(4, intensity=""),
    ]
    obs = load(tmp_path, rows)
    assert obs.table["intensity"].tolist()[:3] == [10, -10, 0]
    assert pd.isna(obs.table["intensity"].iloc[3])


# --- reliability ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["G1", "B7", "B", "high", ""])
def test_reliability_that_is_neither_grade_nor_weight_is_reported(tmp_path, bad):
    err = bad_second_row(tmp_path, reliability=bad)
    problem_with(
        err, f"{FILE}: line 3, column 'reliability'", "must be an Admiralty grade", "'B2'", "or a weight in (0, 1]"
    )


@pytest.mark.parametrize("bad", ["0", "1.5", "-0.2"])
def test_reliability_weight_outside_zero_one_is_reported(tmp_path, bad):
    err = bad_second_row(tmp_path, reliability=bad)
    problem_with(err, f"{FILE}: line 3, column 'reliability': '{bad}' as a plain weight must lie in (0, 1]")


def test_admiralty_weight_is_source_times_credibility_weight(tmp_path):
    rows = [
        event(1, reliability="A1"),
        event(2, reliability="C3"),
        event(3, reliability="b2"),
        event(4, reliability="F6"),
    ]
    obs = load(tmp_path, rows)
    assert obs.table["weight"].tolist() == pytest.approx([1.0, 0.75 * 0.75, 0.9 * 0.9, 0.5 * 0.5])


def test_admiralty_weights_come_from_the_study_reliability_table(tmp_path):
    study = base_study()
    study["reliability"] = {
        "source": {"A": 1.0, "B": 0.8, "C": 0.6, "D": 0.4, "E": 0.2, "F": 0.1},
        "credibility": {"1": 1.0, "2": 0.7, "3": 0.5, "4": 0.3, "5": 0.2, "6": 0.1},
    }
    obs = load(
        tmp_path, [event(1, reliability="A1"), event(2, reliability="C3"), event(3, reliability="B2")], study=study
    )
    assert obs.table["weight"].tolist() == pytest.approx([1.0, 0.6 * 0.5, 0.8 * 0.7])


def test_plain_reliability_weights_pass_through(tmp_path):
    obs = load(tmp_path, [event(1, reliability="0.8"), event(2, reliability="1"), event(3, reliability="0.05")])
    assert obs.table["weight"].tolist() == pytest.approx([0.8, 1.0, 0.05])


# --- ids, required text and origin ----------------------------------------------------------


def test_duplicate_ids_name_both_lines(tmp_path):
    err = obs_error(tmp_path, [event(1), event(2), event(1, description="again")])
    problem_with(err, f"{FILE}: column 'id': 'E1' is used on more than one line (2, 4)")
    assert len(err.problems) == 1


@pytest.mark.parametrize("column", ["id", "description", "source"])
def test_empty_required_text_is_reported(tmp_path, column):
    err = bad_second_row(tmp_path, **{column: "  "})
    problem_with(err, f"{FILE}: line 3, column '{column}': is empty")


def test_origin_id_naming_no_row_is_reported(tmp_path):
    err = bad_second_row(tmp_path, origin_id="E99")
    problem_with(err, f"{FILE}: line 3, column 'origin_id': 'E99' names no id in this file")


def test_origin_id_naming_its_own_row_is_reported(tmp_path):
    err = bad_second_row(tmp_path, origin_id="E2")
    problem_with(err, f"{FILE}: line 3, column 'origin_id': names its own row")


def test_origin_id_naming_another_row_is_valid(tmp_path):
    obs = load(tmp_path, [event(1), event(2, origin_id="E1")])
    assert obs.table["origin_id"].tolist() == ["", "E1"]


# --- columns and whole-file problems --------------------------------------------------------


def test_missing_required_columns_are_listed(tmp_path):
    columns = [c for c in COLUMNS if c not in ("outcome", "source")]
    err = obs_error(tmp_path, [event(1)], columns=columns)
    problem_with(err, f"{FILE}: missing column(s) 'outcome', 'source'", "the header must include id,event_date")


def test_unknown_column_suggests_the_close_name(tmp_path):
    columns = [("intesity" if c == "intensity" else c) for c in COLUMNS]
    rows = [{**event(1), "intesity": "3"}]
    err = obs_error(tmp_path, rows, columns=columns)
    problem_with(err, f"{FILE}: unknown column 'intesity' (did you mean 'intensity'?)", "allowed: 'id'", "'note'")


def test_note_columns_are_allowed_and_kept(tmp_path):
    rows = [{**event(1), "note_coder": "AB", "note_link": "http://x"}]
    obs = load(tmp_path, rows, columns=[*COLUMNS, "note_coder", "note_link"])
    assert obs.table["note_coder"].tolist() == ["AB"]
    assert obs.table["note_link"].tolist() == ["http://x"]


def test_optional_columns_may_be_left_out(tmp_path):
    columns = [c for c in COLUMNS if c not in ("report_date", "intensity", "origin_id")]
    obs = load(tmp_path, [event(1)], columns=columns)
    assert obs.n == 1


def test_empty_file_is_reported(tmp_path):
    err = raw_error(tmp_path, b"")
    assert "events.csv: the file is empty" in str(err)
    assert "id,event_date,report_date,counterpart,domain,outcome,initiator," in str(err)


def test_header_only_file_is_valid_with_no_observations(tmp_path):
    obs = load(tmp_path, [])
    assert obs.n == 0
    assert obs.latest_date is None


def test_mixed_encodings_name_the_offending_line(tmp_path):
    study_path, csv_path = write_mini(tmp_path, [event(1), event(2), event(3)])
    lines = csv_path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"Event number 2", b"Caf\xe9 event")  # line 3 in Latin-1
    err = raw_error(tmp_path, b"\n".join(lines))
    msg = problem_with(err, f"{FILE}: mixed encodings: line(s) 3 are not valid UTF-8", "save the whole file as UTF-8")
    assert "line(s) 3 " in msg  # only line 3, not the UTF-8 lines around it


def test_utf8_text_and_byte_order_mark_are_accepted(tmp_path):
    study_path, csv_path = write_mini(tmp_path, [event(1, description="Café talks in Türkiye")])
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    obs = load_observations(load_study(study_path), today=TODAY)
    assert obs.table["description"].tolist() == ["Café talks in Türkiye"]
    assert obs.table["id"].tolist() == ["E1"]


def test_line_numbers_count_blank_lines(tmp_path):
    study_path, csv_path = write_mini(tmp_path, [event(1), event(2, domain="space")])
    text = csv_path.read_text(encoding="utf-8").splitlines()
    csv_path.write_text("\n".join([text[0], text[1], "", text[2]]) + "\n", encoding="utf-8")  # bad row on line 4
    with pytest.raises(ObservationError) as info:
        load_observations(load_study(study_path), today=TODAY)
    problem_with(info.value, f"{FILE}: line 4, column 'domain'")


def test_line_numbers_count_line_breaks_inside_quoted_fields(tmp_path):
    rows = [event(1, description="two\nlines"), event(2, domain="space")]  # row 2 starts on line 4
    err = obs_error(tmp_path, rows)
    problem_with(err, f"{FILE}: line 4, column 'domain'")


def test_row_with_too_many_fields_is_reported_as_such(tmp_path):
    rows = [event(1, description="Talks, then a deal"), event(2)]
    study_path, csv_path = write_mini(tmp_path, rows)
    csv_path.write_text(csv_path.read_text(encoding="utf-8").replace('"Talks, then a deal"', "Talks, then a deal"))
    with pytest.raises(ObservationError) as info:
        load_observations(load_study(study_path), today=TODAY)
    problem_with(info.value, f"{FILE}: line 2", "12 fields", "header has 11")
    assert not any("column 'event_date'" in p for p in info.value.problems)


def test_row_with_too_many_fields_after_the_first_is_reported(tmp_path):
    rows = [event(1), event(2, description="Talks, then a deal")]
    study_path, csv_path = write_mini(tmp_path, rows)
    csv_path.write_text(csv_path.read_text(encoding="utf-8").replace('"Talks, then a deal"', "Talks, then a deal"))
    with pytest.raises(ObservationError) as info:
        load_observations(load_study(study_path), today=TODAY)
    assert "line 3" in str(info.value)
    assert "12" in str(info.value)


def test_missing_observation_file_is_reported(tmp_path):
    study = load_study(write_study(tmp_path))
    with pytest.raises(ObservationError, match=r"events\.csv: observation file not found \(named by mini\.toml"):
        load_observations(study)


# --- many problems --------------------------------------------------------------------------


def test_many_problems_are_reported_together(tmp_path):
    rows = [event(1, counterpart="turkey"), event(2, domain="space"), event(3, reliability="Z9"), event(4)]
    err = obs_error(tmp_path, rows)
    assert len(err.problems) == 3
    assert str(err).startswith(f"{tmp_path / FILE}: 3 problem(s) in the observations:")
    problem_with(err, "line 2, column 'counterpart'")
    problem_with(err, "line 3, column 'domain'")
    problem_with(err, "line 4, column 'reliability'")


def test_the_report_for_a_thousand_bad_rows_is_capped(tmp_path):
    err = obs_error(tmp_path, events(1000, counterpart="turkey"))
    about_counterpart = [p for p in err.problems if "column 'counterpart'" in p]
    assert len(about_counterpart) == MAX_REPORTED_PER_RULE + 1
    problem_with(err, f"... and {1000 - MAX_REPORTED_PER_RULE} more rows with the same problem in column 'counterpart'")
    assert len(str(err)) < 20_000


# --- the shipped data -----------------------------------------------------------------------


def test_default_data_file_validates_and_covers_the_study():
    study = load_study(DEFAULT_STUDY)
    obs = load_observations(study)
    t = obs.table
    assert obs.n >= 150
    assert t["event_date"].min().year == 2015
    assert t["event_date"].max().year >= 2025
    assert t["quarter"].min() >= study.time.start and t["quarter"].max() <= study.time.end
    assert set(t["counterpart"]) == set(study.counterpart_group)
    assert set(t["domain"]) == {d.id for d in study.domains}
    assert t["weight"].between(0, 1, inclusive="right").all()
    assert t["id"].is_unique
    assert len(obs.sha256) == 64


# --- cells ----------------------------------------------------------------------------------


def hand_made_table(study) -> pd.DataFrame:
    q = quarter_index
    rows = [
        # group, domain, quarter, cooperative, weight
        ("west", "defence", q("2020Q1"), True, 1.0),
        ("east", "energy", q("2020Q3"), True, 0.81),
        ("west", "defence", q("2020Q1"), True, 1.0),  # same pattern as row 0
        ("west", "defence", q("2020Q1"), False, 0.5),
        ("west", "defence", q("2020Q1"), True, 0.81),  # same cell as row 0, other weight
        ("east", "energy", q("2020Q3"), False, 0.25),
        ("east", "defence", q("2021Q4"), True, 1.0),
    ]
    t = pd.DataFrame(rows, columns=["group", "domain", "quarter", "cooperative", "weight"])
    t["quarter"] = t["quarter"].astype("Int64")
    return t


@pytest.fixture
def mini_study(tmp_path):
    return load_study(write_study(tmp_path))


def test_cell_data_sums_weights_per_group_domain_quarter(mini_study):
    cells = cell_data(hand_made_table(mini_study), mini_study)
    # groups: west=0, east=1; domains: defence=0, energy=1; quarters counted from 2020Q1
    assert cells.n_cells == 3
    assert cells.group.tolist() == [0, 1, 1]
    assert cells.domain.tolist() == [0, 0, 1]
    assert cells.quarter.tolist() == [0, 7, 2]
    assert cells.w_coop == pytest.approx([2.81, 1.0, 0.81])
    assert cells.w_conf == pytest.approx([0.5, 0.0, 0.25])
    assert cells.n_events.tolist() == [4, 1, 2]
    data = cells.as_model_data()
    assert data["cell_index"].tolist() == [[0, 0, 0], [1, 0, 7], [1, 1, 2]]
    assert data["cell_weights"] == pytest.approx(np.array([[2.81, 0.5], [1.0, 0.0], [0.81, 0.25]]))


def test_patterns_group_identical_events_with_counts(mini_study):
    cells = cell_data(hand_made_table(mini_study), mini_study)
    patterns = sorted(
        zip(
            cells.pattern_cell.tolist(),
            cells.pattern_coop.tolist(),
            cells.pattern_weight.tolist(),
            cells.pattern_count.tolist(),
            strict=True,
        )
    )
    assert patterns == [
        (0, False, 0.5, 1),
        (0, True, 0.81, 1),
        (0, True, 1.0, 2),
        (1, True, 1.0, 1),
        (2, False, 0.25, 1),
        (2, True, 0.81, 1),
    ]
    # the patterns carry the same weighted counts as the cells
    for c in range(cells.n_cells):
        in_cell = cells.pattern_cell == c
        w = cells.pattern_weight * cells.pattern_count
        assert w[in_cell & cells.pattern_coop].sum() == pytest.approx(cells.w_coop[c])
        assert w[in_cell & ~cells.pattern_coop].sum() == pytest.approx(cells.w_conf[c])


def test_event_pattern_maps_each_row_to_its_pattern(mini_study):
    table = hand_made_table(mini_study)
    cells = cell_data(table, mini_study)
    gidx = {g.id: i for i, g in enumerate(mini_study.groups)}
    didx = {d.id: i for i, d in enumerate(mini_study.domains)}
    assert len(cells.event_pattern) == len(table)
    for row, p in zip(table.itertuples(), cells.event_pattern, strict=True):
        c = cells.pattern_cell[p]
        assert (cells.group[c], cells.domain[c], cells.quarter[c]) == (
            gidx[row.group],
            didx[row.domain],
            row.quarter - mini_study.time.start,
        )
        assert cells.pattern_coop[p] == row.cooperative
        assert cells.pattern_weight[p] == row.weight
    assert np.bincount(cells.event_pattern).tolist() == cells.pattern_count.tolist()
    assert cells.event_pattern[0] == cells.event_pattern[2]  # identical events share a pattern
    assert cells.event_pattern[0] != cells.event_pattern[4]  # same cell, different weight


def test_cell_data_of_validated_observations(tmp_path):
    rows = [
        event(1, counterpart="us", reliability="A1"),
        event(2, counterpart="eu", reliability="A1"),  # us and eu are both 'west'
        event(3, counterpart="russia", domain="energy", outcome="conflictual", intensity="-4", event_date="2021-05-05"),
    ]
    study_path, _ = write_mini(tmp_path, rows)
    study = load_study(study_path)
    cells = cell_data(load_observations(study, today=TODAY).table, study)
    assert cells.as_model_data()["cell_index"].tolist() == [[0, 0, 0], [1, 1, 5]]
    assert cells.w_coop == pytest.approx([2.0, 0.0])
    assert cells.w_conf == pytest.approx([0.0, 0.81])
    assert cells.pattern_count.tolist() == [2, 1]


def test_date_without_zero_padding_is_rejected(tmp_path):
    from helpers import event, write_mini

    study_path, _ = write_mini(tmp_path, [event(event_date="2020-1-5")])
    with pytest.raises(ObservationError) as err:
        load_observations(load_study(study_path))
    assert "not a date like 2019-07-12" in str(err.value) and "line 2" in str(err.value)


TRICKY_CSV = {
    "missing NA markers": "id,a,b\n1,NA,null\n2,N/A,nan\n3,,#N/A\n",
    "CRLF line ends": "id,a,b\r\n1,x,y\r\n2,x,z\r\n",
    "quotes, commas and newlines in fields": 'id,a,b\n1,"x\ny",y\n2,"q,""r""",z\n3,"",w\n',
    "blank lines": "id,a,b\n\n1,x,y\n\n2,x,z\n\n",
    "a line of blanks": "id,a,b\n1,x,y\n   \n2,x,z\n",
    "a short row": "id,a,b\n1,x\n2,x,z\n",
    "a long first row": "id,a,b\n1,x,y,w\n2,x,z\n",
    "a long later row": "id,a,b\n1,x,y\n2,x,z,w\n",
    "duplicate and empty header names": "id,a,a,,c\n1,x,y,z,w\n",
    "a trailing comma": "id,a,b,\n1,x,y,\n",
    "spaces around values": "id, a ,b\n1, x ,y\n",
    "header only": "id,a,b\n",
    "a column of empty fields": "id,a,b\n1,,x\n2,,y\n",
    "no final newline": "id,a,b\n1,x,y",
    "numbers, dates and booleans kept as written": "id,a,b,c\n01,1.50,1e3,TRUE\n002,-0,+3,2019-07-12\n",
    "a byte-order mark and non-ASCII text": "\ufeffid,a,b\n1,İstanbul,Ş\n",
}


@pytest.mark.parametrize("text", TRICKY_CSV.values(), ids=TRICKY_CSV.keys())
def test_the_fast_reader_gives_pandas_table_or_leaves_the_file_to_pandas(text: str) -> None:
    fast = read_with_arrow(text.encode("utf-8"))
    if fast is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        expected = pd.read_csv(
            io.StringIO(text.removeprefix("\ufeff")), dtype=str, keep_default_na=False, index_col=False
        )
    assert list(fast.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(fast, expected)


def test_the_fast_reader_refuses_rows_whose_field_count_differs_from_the_header() -> None:
    assert read_with_arrow(b"id,a,b\n1,x\n") is None
    assert read_with_arrow(b"id,a,b\n1,x,y\n2,x,y,z\n") is None
    assert read_with_arrow(b"id,a,b\n1,x,y\n") is not None


# --- hostile and broken files (issue 13) ------------------------------------------------------------


def test_an_unclosed_quote_on_the_last_line_names_that_line(tmp_path):
    # 205 rows after the header end on line 206; the broken row is line 207 (pandas said "row 206").
    study_path, csv_path = write_mini(tmp_path, [event(i, event_date="2020-02-01") for i in range(1, 206)])
    with csv_path.open("a", encoding="utf-8") as f:
        f.write('X1,2020-02-01,,us,defence,cooperative,3,B2,"never closed,Wire,\n')
    with pytest.raises(ObservationError) as info:
        load_observations(load_study(study_path), today=TODAY)
    assert f"{FILE}: line 207: a double quote opens a quoted field that is never closed" in str(info.value)


def test_an_unclosed_quote_after_blank_lines_and_quoted_line_breaks_names_its_line(tmp_path):
    content = (
        ",".join(COLUMNS) + "\n"
        'E1,2020-02-01,,us,defence,cooperative,3,B2,"two\nlines",Wire,\n'
        "\n"
        'E2,2020-02-01,,us,defence,cooperative,3,B2,"open,Wire,\n'
        "E3,2020-02-01,,us,defence,cooperative,3,B2,fine,Wire,\n"
    )
    err = raw_error(tmp_path, content.encode("utf-8"))
    assert f"{FILE}: line 5: a double quote opens" in str(err)


@pytest.mark.parametrize(("delimiter", "named"), [(";", "';'"), ("\t", "TAB"), ("|", "'|'")])
def test_another_delimiter_is_named_rather_than_misread_as_unquoted_commas(tmp_path, delimiter, named):
    rows = [event(1, description="Talks, then a deal"), event(2)]
    lines = [delimiter.join(COLUMNS)] + [delimiter.join(r[c] for c in COLUMNS) for r in rows]
    err = raw_error(tmp_path, ("\n".join(lines) + "\n").encode("utf-8"))
    assert str(err).endswith(
        f"{FILE}: the file seems to use {named} as delimiter; forecast reads comma-separated files "
        "(save it as CSV with ',' between fields and text that contains commas in double quotes)"
    )
    assert "fields, but the header has" not in str(err)


def test_a_duplicated_column_is_named_as_such(tmp_path):
    columns = [*COLUMNS[:5], "domain", *COLUMNS[5:]]
    err = obs_error(tmp_path, [event(1)], columns=columns)
    problem_with(err, f"{FILE}: column 'domain' appears 2 times in the header (columns 5, 6)")
    assert "domain.1" not in str(err)


def test_a_column_without_a_name_is_reported_with_its_position(tmp_path):
    err = raw_error(tmp_path, (",".join(COLUMNS) + ",\n").encode("utf-8"))
    problem_with(err, f"column {len(COLUMNS) + 1} of the header has no name", "trailing comma")


def test_a_directory_as_the_observation_file_is_reported_as_a_directory(tmp_path):
    study_path, csv_path = write_mini(tmp_path)
    csv_path.unlink()
    csv_path.mkdir()
    with pytest.raises(ObservationError) as info:
        load_observations(load_study(study_path))
    assert "is a directory, not an observation file" in str(info.value)
    assert "not found" not in str(info.value)


def test_a_header_with_absurdly_many_columns_is_refused_before_parsing(tmp_path):
    header = ",".join([*COLUMNS, *(f"note{i}" for i in range(100_000))])
    err = raw_error(tmp_path, (header + "\n").encode("utf-8"))
    assert "the header has 100,011 columns; an observation file has at most 1,000" in str(err)


def test_an_absurdly_long_line_is_refused_naming_its_line(tmp_path):
    from forecast.data.observations import MAX_LINE_BYTES

    rows = [event(1), event(2, counterpart="u" * (MAX_LINE_BYTES + 10))]
    study_path, _ = write_mini(tmp_path, rows)
    with pytest.raises(ObservationError) as info:
        load_observations(load_study(study_path), today=TODAY)
    message = str(info.value)
    assert "line 3" in message and ("bytes long" in message or "longer than" in message)
    assert len(message) < 500


def test_a_long_line_the_fast_reader_refuses_is_refused_before_pandas_reads_it(tmp_path, monkeypatch):
    from forecast.data import observations
    from forecast.data.observations import MAX_LINE_BYTES

    monkeypatch.setattr(observations, "read_with_arrow", lambda raw: None)
    monkeypatch.setattr(observations.pd, "read_csv", lambda *a, **k: pytest.fail("pandas read the file"))
    rows = [event(1), event(2, description="d" * (MAX_LINE_BYTES + 10))]
    study_path, _ = write_mini(tmp_path, rows)
    with pytest.raises(ObservationError) as info:
        load_observations(load_study(study_path), today=TODAY)
    length = len(",".join(rows[1][c] for c in COLUMNS))
    assert f"line 3 is {length:,} bytes long; forecast reads lines of at most" in str(info.value)


def test_a_huge_field_spanning_short_lines_is_refused(tmp_path):
    from forecast.data.observations import MAX_FIELD_CHARS

    long_text = "\n".join(["many short lines"] * (MAX_FIELD_CHARS // 10))
    err = bad_second_row(tmp_path, description=long_text)
    problem = problem_with(err, f"{FILE}: line 3, column 'description'", f"longer than {MAX_FIELD_CHARS:,} characters")
    assert len(problem) < 300


def test_echoed_values_are_cut_to_about_80_characters(tmp_path):
    err = bad_second_row(tmp_path, counterpart="x" * 50_000)
    problem = problem_with(err, "line 3, column 'counterpart'")
    assert "(50,000 characters)" in problem
    assert len(problem) < 400


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x07", "\x7f", "\x85"])
def test_control_characters_in_free_text_are_refused_naming_row_and_column(tmp_path, char):
    err = bad_second_row(tmp_path, description=f"Talks{char}held")
    problem_with(err, f"{FILE}: line 3, column 'description':", "contains a control character")
    assert len(err.problems) == 1


@pytest.mark.parametrize("column", ["source", "note_coder"])
def test_control_characters_are_refused_in_every_text_column(tmp_path, column):
    rows = [event(1), event(2, **{column: "Wire\x00"})]
    err = obs_error(tmp_path, rows, columns=[*COLUMNS, "note_coder"])
    problem_with(err, f"line 3, column '{column}'", "control character")


def test_tabs_and_line_breaks_are_allowed_in_free_text(tmp_path):
    obs = load(tmp_path, [event(1, description="first\tsecond\nthird line", source="Wire;\tAgency")])
    assert obs.table["description"].tolist() == ["first\tsecond\nthird line"]


@pytest.mark.parametrize("bad", ["E\t2", "E\n2", "E\x002"])
def test_an_id_with_a_tab_line_break_or_control_character_is_refused(tmp_path, bad):
    err = bad_second_row(tmp_path, id=bad)
    problem_with(err, "column 'id'")


def test_a_control_character_in_a_coded_column_is_refused_by_its_value_check(tmp_path):
    err = bad_second_row(tmp_path, counterpart="us\x00")
    problem_with(err, "line 3, column 'counterpart': 'us\\x00' is not a counterpart")


def test_surrounding_whitespace_in_an_id_is_still_tolerated(tmp_path):
    obs = load(tmp_path, [event(1, id=" E1\t")])
    assert obs.table["id"].tolist() == ["E1"]


def test_an_id_repeated_on_many_lines_gives_a_short_message(tmp_path):
    err = obs_error(tmp_path, [event(1, id="E1") for _ in range(500)])
    problem = problem_with(err, "column 'id': 'E1' is used on more than one line (2, 3, 4,", "and 480 more")
    assert len(problem) < 300


def test_a_long_column_name_is_echoed_cut(tmp_path):
    name = "note" + "x" * 5000
    rows = [event(1, **{name: "a\x00b"})]
    err = obs_error(tmp_path, rows, columns=[*COLUMNS, name])
    problem = problem_with(err, "line 2, column 'notexxx", "(5,004 characters)", "control character")
    assert len(problem) < 400
