"""`forecast import` on hostile or broken event files: bounded resources, short messages, no
control characters, real line numbers. Nothing fits a model; every file is written here."""

from __future__ import annotations

import csv
import datetime as dt
import time
import tracemalloc

import pytest
from helpers import event, write_mini
from test_import import FIXTURE, GDELT_HEADER, MAPPING, write_gdelt

from forecast.data.importer import MAX_COLUMNS, MAX_FIELD_CHARS, MAX_LINE_BYTES, read_source
from forecast.errors import InputError
from forecast.workflows.import_events import run_import

TODAY = dt.date(2026, 1, 1)
FAST = 5.0  # seconds: "refused within seconds", with room for a busy machine
ROW = FIXTURE[0][0]  # GDELT-1001: imported as it is


@pytest.fixture
def study(tmp_path):
    study_path, csv_path = write_mini(tmp_path, [event(1)])
    (tmp_path / "cameo_mapping.toml").write_text(MAPPING)
    return study_path


def refused(source, study_path) -> tuple[str, float]:
    start = time.perf_counter()
    with pytest.raises(InputError) as err:
        run_import(source, study_path, today=TODAY, dry_run=True)
    return str(err.value), time.perf_counter() - start


# --- bounded resources ---------------------------------------------------------------------------------


def test_a_header_of_100010_columns_is_refused_at_once(study, tmp_path):
    src = tmp_path / "wide.csv"
    src.write_text(",".join(f"c{i}" for i in range(100_010)) + "\n" + ",".join("1" * 100_010) + "\n")
    message, seconds = refused(src, study)
    assert seconds < FAST
    assert str(src) in message and "line 1" in message
    assert "100,010 columns" in message and f"{MAX_COLUMNS:,}" in message
    assert len(message) < 400


def test_a_200_mib_line_is_refused_without_being_read(study, tmp_path):
    src = tmp_path / "huge.csv"
    with src.open("wb") as f:  # sparse: 200 MiB of file, no disk used
        f.write((",".join(GDELT_HEADER) + "\n1001,20200215,TST,TST,RUS,RUS,062,2,6.4,4,20200216093000,").encode())
        f.seek(200 * 2**20)
        f.write(b"x\n")
    tracemalloc.start()
    try:
        message, seconds = refused(src, study)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < FAST and peak < 32 * 2**20  # the line is never held whole
    assert str(src) in message and "line 2" in message and "1 MiB" in message
    assert len(message) < 400


def test_a_huge_quoted_field_is_refused_at_the_field_limit(study, tmp_path):
    src = tmp_path / "field.csv"
    body = ("x" * 99 + "\n") * (3 * MAX_FIELD_CHARS // 100)  # short lines, one endless field
    src.write_text(",".join(GDELT_HEADER) + "\n" + ",".join(ROW[:-1]) + ',"' + body + '"\n')
    message, seconds = refused(src, study)
    assert seconds < FAST
    assert str(src) in message and "starting on line 2" in message and f"{MAX_FIELD_CHARS:,}" in message
    assert len(message) < 400


def test_an_unclosed_quote_names_the_line_its_record_starts_on(study, tmp_path):
    src = tmp_path / "open.csv"
    rows = [",".join(r) for r, _ in FIXTURE[:3]]
    src.write_text(",".join(GDELT_HEADER) + "\n" + "\n".join(rows) + '\n1099,"20200301,TST\n')
    message, _ = refused(src, study)
    assert "line 5" in message and "never closed" in message


def test_a_line_of_exactly_the_limit_is_read_and_one_byte_more_is_not(tmp_path):
    def line(n_bytes):  # twelve fields, each under the field limit
        width = (n_bytes - 11) // 12
        fields = ["f" * width] * 11
        return ",".join([*fields, "f" * (n_bytes - 11 - 11 * width)])

    src = tmp_path / "long.csv"
    src.write_text(",".join(GDELT_HEADER) + "\n" + line(MAX_LINE_BYTES) + "\n")
    [(n, values)] = list(read_source(src).records())
    assert n == 2 and len(",".join(values)) == MAX_LINE_BYTES
    src.write_text(",".join(GDELT_HEADER) + "\n" + line(MAX_LINE_BYTES + 1) + "\n")
    with pytest.raises(InputError, match="line 2 is longer than 1 MiB"):
        list(read_source(src).records())


def test_every_value_echoed_in_a_message_is_cut_to_about_80_characters(study, tmp_path):
    long = "Q" * 5_000
    rows = [
        (["2001", long, "TST", "TST", "USA", "USA", "036", "1", "4", "1", "", ""], "bad_date"),
        (["2002", "20200301", "TST", "TST", long, long, "036", "1", "4", "1", "", ""], "unknown_counterpart"),
        (["2003", "20200301", "TST", "TST", "USA", "USA", "036", long, "4", "1", "", ""], "bad_quad_class"),
        (["2004", "20200301", "TST", "TST", "USA", "USA", "036", "1", long, "1", "", ""], "bad_goldstein"),
        ([long, "20200301", long, long, long, long, "036", "1", "4", "1", "", ""], "no_actor"),
    ]
    result = run_import(write_gdelt(tmp_path / "long.csv", rows), study, today=TODAY, dry_run=True)
    # the last row names no code of the actor: the pre-filter counts it without parsing it
    assert [s.reason for s in result.skipped] == [r for _, r in rows][:-1] and result.n_prefiltered == 1
    for s in result.skipped:
        assert len(s.detail) < 300 and len(s.source_id) <= 80, (s.reason, len(s.detail))
        if s.reason != "no_actor":
            assert "QQQ…" in s.detail
    # a message about the file's columns lists a few of them, each cut
    src = tmp_path / "names.csv"
    src.write_text(",".join(f"{i}{'n' * 1_000}" for i in range(500)) + "\n")
    message, _ = refused(src, study)
    assert "cannot find the event_date" in message and "(470 more)" in message and len(message) < 2_000
    (tmp_path / "map.toml").write_text(MAPPING + f'\n[columns]\nevent_date = "{long}"\n')
    with pytest.raises(InputError) as err:
        run_import(src, study, mapping_path=tmp_path / "map.toml", today=TODAY, dry_run=True)
    assert len(str(err.value)) < 2_000 and "QQQ…" in str(err.value)


def test_a_mapping_file_of_more_than_a_megabyte_is_refused_unread(study, tmp_path):
    big = tmp_path / "map.toml"
    with big.open("wb") as f:  # sparse
        f.write(MAPPING.encode())
        f.seek(2 * 2**20)
        f.write(b"\n")
    with pytest.raises(InputError, match="a mapping file may have at most 1,048,576"):
        run_import(write_gdelt(tmp_path / "g.csv"), study, mapping_path=big, today=TODAY, dry_run=True)


# --- control characters ---------------------------------------------------------------------------------


def test_nul_and_control_characters_in_text_fields_skip_the_row(study, tmp_path):
    def row(n, url, actor="TSTGOV"):  # a day each, so that no row repeats another's event
        return [str(n), f"202002{n - 3000:02d}", actor, "TST", "RUSGOV", "RUS", "062", "2", "6.4", "1", "", url]

    rows = [
        (row(3001, "http://n.example/a\x00b"), "control_character"),
        (row(3002, "http://n.example/\x1b[31mred"), "control_character"),
        (row(3003, "http://n.example/next\x85line"), "control_character"),  # C1 control NEL
        (row(3004, "http://n.example/del\x7f"), "control_character"),
        (row(3005, "http://n.example/tab\there"), "imported"),  # TAB, LF, CR: allowed inside quotes
        (row(3006, "http://n.example/line\nbreak"), "imported"),
        (row(3007, "http://n.example/ok", actor="TST\x00GOV"), "control_character"),
    ]
    src = tmp_path / "ctl.csv"
    with src.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(GDELT_HEADER)
        for r, _ in rows:
            w.writerow(r)
    result = run_import(src, study, today=TODAY, dry_run=True)
    assert [r["id"] for r in result.imported] == ["GDELT-3005", "GDELT-3006"]
    skipped = {s.source_id: s for s in result.skipped}
    assert sorted(skipped) == ["3001", "3002", "3003", "3004", "3007"]
    assert {s.reason for s in skipped.values()} == {"control_character"}
    assert "'SOURCEURL'" in skipped["3001"].detail and "U+0000" in skipped["3001"].detail
    assert "U+001B" in skipped["3002"].detail and "U+0085" in skipped["3003"].detail
    assert "'Actor1Code'" in skipped["3007"].detail
    # lines are the file's own: row 3006 spans two lines, so 3007 starts on line 9
    assert skipped["3007"].line == 9
    assert "\x00" not in repr(result.imported)


def test_a_nul_in_a_headerless_gdelt_file_skips_the_row(study, tmp_path):
    from forecast.data.importer import GDELT2_COLUMNS

    def line(n, url):
        values = dict.fromkeys(GDELT2_COLUMNS, "")
        values.update(
            GLOBALEVENTID=str(n),
            SQLDATE="20210105",
            Actor1CountryCode="TST",
            Actor2CountryCode="RUS",
            EventCode="0311",
            QuadClass="1",
            GoldsteinScale="5.2",
            SOURCEURL=url,
        )
        return "\t".join(values[c] for c in GDELT2_COLUMNS)

    raw = tmp_path / "20210106.export.CSV"
    raw.write_text(line(1, "http://a\x00") + "\n" + line(2, "http://b") + "\n")
    result = run_import(raw, study, today=TODAY, dry_run=True)
    assert [r["id"] for r in result.imported] == ["GDELT-2"]
    assert [(s.line, s.reason) for s in result.skipped] == [(1, "control_character")]


def test_an_event_id_with_a_tab_or_line_break_skips_the_row(study, tmp_path):
    rows = [
        (["40\t01", "20200215", "TST", "TST", "RUS", "RUS", "062", "2", "6.4", "1", "", ""], "control_character"),
        (["40\n02", "20200216", "TST", "TST", "RUS", "RUS", "062", "2", "6.4", "1", "", ""], "control_character"),
        ([" 4003 ", "20200217", "TST", "TST", "RUS", "RUS", "062", "2", "6.4", "1", "", ""], "imported"),
    ]
    result = run_import(write_gdelt(tmp_path / "ids.csv", rows), study, today=TODAY, dry_run=True)
    assert [r["id"] for r in result.imported] == ["GDELT-4003"]
    assert [s.reason for s in result.skipped] == ["control_character"] * 2
    assert "U+0009" in result.skipped[0].detail and "'GLOBALEVENTID'" in result.skipped[0].detail


def test_a_row_whose_source_would_outgrow_an_observation_field_is_skipped(study, tmp_path):
    url = "http://n.example/" + "a" * (MAX_FIELD_CHARS - 20)  # within the event file's field limit
    rows = [
        (["5001", "20200215", "TST", "TST", "RUS", "RUS", "062", "2", "6.4", "1", "", url], "too_long"),
        (["5002", "20200216", "TST", "TST", "RUS", "RUS", "062", "2", "6.4", "1", "", "http://ok"], "imported"),
    ]
    result = run_import(write_gdelt(tmp_path / "long_url.csv", rows), study, today=TODAY, dry_run=True)
    assert [r["id"] for r in result.imported] == ["GDELT-5002"]
    [skipped] = result.skipped
    assert skipped.reason == "too_long" and "source" in skipped.detail and f"{MAX_FIELD_CHARS:,}" in skipped.detail


# --- messages ------------------------------------------------------------------------------------------


def test_blank_lines_and_quoted_line_breaks_keep_real_line_numbers(study, tmp_path):
    src = tmp_path / "lines.csv"
    bad = ["1999", "2020-13-45", "TST", "TST", "USA", "USA", "036", "1", "4", "1", "", ""]
    src.write_text(
        ",".join(GDELT_HEADER)
        + "\n\n"
        + ",".join(ROW[:-1])
        + ',"http://n.example/pipeline\nsecond line"\n\n'
        + ",".join(bad)
        + "\n"
    )
    result = run_import(src, study, today=TODAY, dry_run=True)
    assert [r["id"] for r in result.imported] == ["GDELT-1001"]
    assert [(s.line, s.reason) for s in result.skipped] == [(6, "bad_date")]


def test_a_row_with_more_fields_than_the_header_names_its_line(study, tmp_path):
    src = tmp_path / "wide_row.csv"
    src.write_text(",".join(GDELT_HEADER) + "\n" + ",".join(ROW) + "\n" + ",".join(ROW) + ",extra\n")
    message, _ = refused(src, study)
    assert "line 3 has 13 fields, the header 12" in message


def test_a_directory_or_a_non_utf8_line_is_named_as_such(study, tmp_path):
    (tmp_path / "folder.csv").mkdir()
    message, _ = refused(tmp_path / "folder.csv", study)
    assert "is a directory" in message
    src = tmp_path / "latin1.csv"
    src.write_bytes((",".join(GDELT_HEADER) + "\n" + ",".join(ROW) + "\n").encode() + "caf\xe9\n".encode("latin-1"))
    message, _ = refused(src, study)
    assert "line 3 is not UTF-8" in message


def test_a_semicolon_separated_table_is_read(study, tmp_path):
    src = tmp_path / "semi.csv"
    src.write_text(";".join(GDELT_HEADER) + "\n" + ";".join(ROW) + "\n")
    result = run_import(src, study, today=TODAY, dry_run=True)
    assert [r["id"] for r in result.imported] == ["GDELT-1001"]
