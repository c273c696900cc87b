"""`forecast import`: CAMEO-coded event tables into the observation format.

A small GDELT-style fixture is written here, row by row with the reason each row must be
imported or not; nothing fits a model.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json

import pytest
from click.testing import CliRunner
from helpers import DEFAULT_STUDY, REPO, base_study, event, write_events, write_mini

from forecast.cli import main
from forecast.data.importer import GDELT2_COLUMNS, load_mapping
from forecast.data.observations import load_observations
from forecast.errors import InputError, ObservationError
from forecast.spec.study import load_study
from forecast.workflows.import_events import run_import

TODAY = dt.date(2026, 1, 1)

MAPPING = """
[mapping]
study = "mini"
actor = ["TST", "Testland"]
reliability = "C3"
by_sources = { "3" = "B2" }

[counterparts]
USA = "us"
"European Union" = "eu"
RUS = "russia"
"Russian Federation" = "russia"

[domains.keywords]
pipeline = "energy"

[domains.codes]
"03" = "defence"
"06" = "defence"
"18" = "defence"
"""

GDELT_HEADER = [
    "GLOBALEVENTID",
    "SQLDATE",
    "Actor1Code",
    "Actor1CountryCode",
    "Actor2Code",
    "Actor2CountryCode",
    "EventCode",
    "QuadClass",
    "GoldsteinScale",
    "NumSources",
    "DATEADDED",
    "SOURCEURL",
]
# (row, expected): each row of the fixture with what must become of it ("report": imported as a
# corroborating report of an event earlier in the file; "no_actor" rows are counted, not listed:
# the pre-filter drops them unparsed).
FIXTURE = [
    (
        [
            "1001",
            "20200215",
            "TSTGOV",
            "TST",
            "RUSGOV",
            "RUS",
            "062",
            "2",
            "6.4",
            "4",
            "20200216093000",
            "http://n.example/pipeline-deal",
        ],
        "imported",
    ),
    (
        [
            "1002",
            "20200301",
            "RUSMIL",
            "RUS",
            "TSTMIL",
            "TST",
            "183",
            "4",
            "-9",
            "1",
            "20200301120000",
            "http://n.example/a",
        ],
        "imported",
    ),
    (
        [
            "1003",
            "20200301",
            "CHN",
            "CHN",
            "TST",
            "TST",
            "042",
            "1",
            "1.9",
            "1",
            "20200302000000",
            "http://n.example/b",
        ],
        "unknown_counterpart",
    ),
    (
        [
            "1004",
            "20200301",
            "USA",
            "USA",
            "RUS",
            "RUS",
            "042",
            "1",
            "1.9",
            "1",
            "20200302000000",
            "http://n.example/c",
        ],
        "no_actor",
    ),
    (
        [
            "1005",
            "20200301",
            "TSTGOV",
            "TST",
            "TSTOPP",
            "TST",
            "111",
            "3",
            "-2",
            "1",
            "20200302000000",
            "http://n.example/d",
        ],
        "domestic",
    ),
    (
        ["1006", "20200305", "TST", "TST", "USA", "USA", "036", "1", "-2", "1", "20200305000000", "http://n.example/e"],
        "imported",
    ),
    (
        ["1007", "20191231", "TST", "TST", "USA", "USA", "036", "1", "4", "1", "20200101000000", "http://n.example/f"],
        "outside_window",
    ),
    (
        [
            "1008",
            "2020-13-45",
            "TST",
            "TST",
            "USA",
            "USA",
            "036",
            "1",
            "4",
            "1",
            "20200101000000",
            "http://n.example/g",
        ],
        "bad_date",
    ),
    (
        [
            "1009",
            "20200310",
            "TST",
            "TST",
            "USA",
            "USA",
            "042",
            "1",
            "1.9",
            "1",
            "20200310000000",
            "http://n.example/h",
        ],
        "no_domain",
    ),
    (
        [
            "1010",
            "20200301",
            "RUSMIL",
            "RUS",
            "TSTMIL",
            "TST",
            "183",
            "4",
            "-9",
            "1",
            "20200303000000",
            "http://n.example/i",
        ],
        "report",
    ),
    (
        ["1011", "20200410", "TST", "TST", "USA", "USA", "036", "", "", "", "20200411000000", "http://n.example/j"],
        "imported",
    ),
    (
        ["1012", "20200410", "TST", "TST", "USA", "USA", "036", "1", "4", "1", "20200411000000", "http://n.example/k"],
        "already_present",
    ),
    (
        ["1013", "20200201", "TST", "TST", "USA", "USA", "062", "2", "5", "1", "20200202000000", "http://n.example/l"],
        "matches_existing",
    ),
    (
        ["1014", "20200501", "TST", "TST", "USA", "USA", "036", "1", "4", "1", "20200430000000", "http://n.example/m"],
        "report_before_event",
    ),
    (
        ["1015", "20200601", "TST", "TST", "USA", "USA", "036", "", "0", "1", "20200601000000", "http://n.example/n"],
        "neutral",
    ),
]


def write_gdelt(path, rows=FIXTURE, sep=","):
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=sep, lineterminator="\n")
        w.writerow(GDELT_HEADER)
        for row, _ in rows:
            w.writerow(row)
    return path


@pytest.fixture
def project(tmp_path):
    """The mini study with two hand-coded events (E1 on 2020-02-01, us, defence, cooperative)."""
    existing = [event(1), event(2, id="GDELT-1012", event_date="2020-01-15", counterpart="eu")]
    study_path, csv_path = write_mini(tmp_path, existing)
    (tmp_path / "cameo_mapping.toml").write_text(MAPPING)
    source = write_gdelt(tmp_path / "gdelt.csv")
    return study_path, csv_path, source


def test_every_row_is_imported_or_reported_with_its_reason(project):
    study_path, csv_path, source = project
    result = run_import(source, study_path, today=TODAY, write_report=False)
    out = result.to_dict()
    assert out["format"] == "gdelt" and out["n_rows"] == len(FIXTURE)
    assert out["n_imported"] + out["n_skipped"] == len(FIXTURE)
    got = {s.line: s.reason for s in result.skipped}
    for line, (row, expected) in enumerate(FIXTURE, start=2):
        if expected in ("imported", "report"):
            assert f"GDELT-{row[0]}" in out["imported_ids"], (line, got.get(line))
        elif expected == "no_actor":
            assert line not in got  # counted by the pre-filter, not parsed
        else:
            assert got.get(line) == expected, (line, row[0], got.get(line))
    assert out["imported_ids"] == ["GDELT-1001", "GDELT-1002", "GDELT-1006", "GDELT-1010", "GDELT-1011"]
    assert out["reasons"]["no_actor"] == out["n_prefiltered"] == 1
    assert out["n_events"] == 4 and out["n_corroborating"] == 1
    by_line = {s.line: s for s in result.skipped}
    assert "'CHN'" in by_line[4].detail and "[counterparts]" in by_line[4].detail
    assert {r["id"]: r["origin_id"] for r in result.imported}["GDELT-1010"] == "GDELT-1002"  # a repeat
    assert by_line[14].matches == "E1"  # the hand-coded event already in the observations


def test_imported_rows_are_mapped_as_a_hand_coder_would(project):
    study_path, csv_path, source = project
    run_import(source, study_path, today=TODAY, write_report=False)
    study = load_study(study_path)
    table = load_observations(study, today=TODAY).table.set_index("id")
    a = table.loc["GDELT-1001"]
    # a keyword in the URL beats the CAMEO code's domain; four sources earn the better grade
    assert (a["counterpart"], a["domain"], bool(a["cooperative"]), a["intensity"]) == ("russia", "energy", True, 6.4)
    assert a["reliability"] == "B2" and a["weight"] == pytest.approx(0.81)
    # event and report dates are kept apart
    assert (a["event_date"].date(), a["report_date"].date()) == (dt.date(2020, 2, 15), dt.date(2020, 2, 16))
    b = table.loc["GDELT-1002"]  # Russia acts on Testland: the counterpart is the other side either way
    assert (b["counterpart"], b["domain"], bool(b["cooperative"]), b["intensity"]) == ("russia", "defence", False, -9)
    assert b["reliability"] == "C3"
    c = table.loc["GDELT-1011"]  # no quad class, no score: the CAMEO root code 03 says cooperative
    assert (c["counterpart"], c["domain"], bool(c["cooperative"])) == ("us", "defence", True)
    assert c["intensity"] != c["intensity"]  # NaN: no Goldstein score given
    d = table.loc["GDELT-1006"]  # quad class 1 (root 03) with a negative score: cooperative, no intensity
    assert bool(d["cooperative"]) and d["intensity"] != d["intensity"]
    assert "Goldstein -2 against its quad class" in d["description"]
    assert "CAMEO 062" in a["description"] and "http://n.example/pipeline-deal" in a["source"]


def test_rows_are_appended_and_the_old_ones_left_as_they_were(project):
    study_path, csv_path, source = project
    before = csv_path.read_text()
    result = run_import(source, study_path, today=TODAY, write_report=False)
    after = csv_path.read_text()
    assert result.written and after.startswith(before)
    assert len(after.splitlines()) == len(before.splitlines()) + 5
    # importing the same file again adds nothing: every row is already there or still unmappable
    again = run_import(source, study_path, today=TODAY, write_report=False)
    assert again.to_dict()["n_imported"] == 0 and not again.written
    assert csv_path.read_text() == after
    assert {s.reason for s in again.skipped if s.line in (2, 3, 7, 11, 12)} == {"already_present"}


def test_dry_run_writes_nothing(project):
    study_path, csv_path, source = project
    before = csv_path.read_text()
    result = run_import(source, study_path, today=TODAY, dry_run=True)
    assert result.to_dict()["n_imported"] == 5 and not result.written and result.report is None
    assert csv_path.read_text() == before
    assert not list(csv_path.parent.glob(".*import*"))


def test_corroborate_adds_matching_events_as_reports_of_them(project):
    study_path, csv_path, source = project
    result = run_import(source, study_path, today=TODAY, on_match="corroborate", write_report=False)
    rows = {r["id"]: r for r in result.imported}
    assert rows["GDELT-1013"]["origin_id"] == "E1"
    assert rows["GDELT-1010"]["origin_id"] == "GDELT-1002"
    assert result.to_dict()["n_corroborating"] == 2
    table = load_observations(load_study(study_path), today=TODAY).table.set_index("id")
    assert table.loc["GDELT-1013", "origin_id"] == "E1"


def test_a_file_without_origin_id_gets_the_column_when_needed(tmp_path):
    columns = ("id", "event_date", "counterpart", "domain", "outcome", "reliability", "description", "source")
    study_path, csv_path = write_mini(tmp_path, [event(1)])
    write_events(csv_path, [event(1)], columns=columns)
    (tmp_path / "cameo_mapping.toml").write_text(MAPPING)
    source = write_gdelt(tmp_path / "gdelt.csv", [r for r in FIXTURE if r[0][0] in ("1001", "1013")])
    run_import(source, study_path, today=TODAY, on_match="corroborate", write_report=False)
    table = load_observations(load_study(study_path), today=TODAY).table.set_index("id")
    assert table.loc["GDELT-1013", "origin_id"] == "E1" and table.loc["E1", "origin_id"] == ""
    assert table.loc["GDELT-1001", "report_date"].date() == dt.date(2020, 2, 16)


def test_the_import_report_is_written_atomically_under_the_run_store(project, tmp_path):
    study_path, _, source = project
    result = run_import(source, study_path, today=TODAY, runs_root=tmp_path / "runs")
    report = json.loads(open(result.report).read())
    assert report["n_imported"] == 5 and report["n_skipped"] == len(FIXTURE) - 5
    # the summary lists the skipped rows that involve the actor; the per-row report has every parsed row
    assert len(report["skipped"]) == len(FIXTURE) - 5 - report["n_prefiltered"]
    assert "imports" in result.report and "mini" in result.report
    with gzip.open(result.rows_report, "rt") as f:
        lines = [json.loads(x) for x in f]
    assert lines[0]["n_prefiltered"] == 1
    assert sorted(x["status"] for x in lines[1:]) == ["imported"] * 5 + ["skipped"] * (len(FIXTURE) - 6)


def test_headerless_gdelt2_tab_separated_rows(project, tmp_path):
    study_path, csv_path, _ = project
    values = dict.fromkeys(GDELT2_COLUMNS, "")
    values.update(
        GLOBALEVENTID="2001",
        SQLDATE="20210105",
        Actor1CountryCode="TST",
        Actor2CountryCode="RUS",
        EventCode="0311",
        QuadClass="1",
        GoldsteinScale="5.2",
        NumSources="1",
        DATEADDED="20210106101500",
        SOURCEURL="http://n.example/raw",
    )
    raw = tmp_path / "20210106101500.export.CSV"
    raw.write_text("\t".join(values[c] for c in GDELT2_COLUMNS) + "\n")
    result = run_import(raw, study_path, today=TODAY, write_report=False)
    assert result.format == "gdelt" and result.to_dict()["imported_ids"] == ["GDELT-2001"]
    row = result.imported[0]
    assert (row["event_date"], row["report_date"], row["counterpart"], row["outcome"]) == (
        "2021-01-05",
        "2021-01-06",
        "russia",
        "cooperative",
    )


def test_icews_style_table_with_country_names(project, tmp_path):
    study_path, _, _ = project
    src = tmp_path / "icews.tab"
    src.write_text(
        "Event ID\tEvent Date\tSource Name\tSource Country\tEvent Text\tCAMEO Code\tIntensity\tTarget Name\t"
        "Target Country\tPublisher\n"
        "77\t2020-07-01\tTestland\tTestland\tSign pipeline agreement\t057\t8\tVladimir Putin\tRussian Federation\tWire\n"
        "77\t2020-07-02\tTestland\tTestland\tThreaten\t138\t-7\tUnited Nations\t\tWire\n"
    )
    result = run_import(src, study_path, today=TODAY, write_report=False)
    assert result.format == "icews"
    assert result.to_dict()["imported_ids"] == ["ICEWS-77-20200701"]
    row = result.imported[0]
    assert (row["counterpart"], row["domain"], row["outcome"], row["intensity"], row["source"]) == (
        "russia",
        "energy",
        "cooperative",
        "8",
        "Wire",
    )
    assert [s.reason for s in result.skipped] == ["unknown_counterpart"]


def test_polecat_style_quad_labels(project, tmp_path):
    study_path, _, _ = project
    src = tmp_path / "polecat.tsv"
    src.write_text(
        "Event ID\tEvent Date\tEvent Type\tQuad Code\tEvent Intensity\tActor Country\tRecipient Country\tPublication Date\n"
        "p1\t2020-08-01\tTHREATEN\tVERBAL CONFLICT\t-4\tTST\tUSA\t2020-08-02\n"
        "p2\t2020-08-03\tSANCTION\t\t\tTST\tUSA\t2020-08-03\n"
    )
    mapping = MAPPING.replace('"18" = "defence"', '"18" = "defence"\n[domains]\ndefault = "defence"')
    mapping = mapping.replace("[outcome]", "")
    (tmp_path / "map.toml").write_text(mapping + "\n[outcome]\nevent_types = { SANCTION = 4 }\n")
    result = run_import(src, study_path, mapping_path=tmp_path / "map.toml", today=TODAY, write_report=False)
    assert result.format == "polecat"
    assert [(r["id"], r["outcome"], r["domain"]) for r in result.imported] == [
        ("POLECAT-p1", "conflictual", "defence"),
        ("POLECAT-p2", "conflictual", "defence"),
    ]


def test_a_bad_mapping_file_lists_every_problem(project, tmp_path):
    study_path, _, source = project
    (tmp_path / "bad.toml").write_text(
        MAPPING.replace('RUS = "russia"', 'RUS = "rusia"').replace('pipeline = "energy"', 'pipeline = "gas"')
        + "\n[extra]\nx = 1\n"
    )
    with pytest.raises(InputError) as err:
        load_mapping(tmp_path / "bad.toml", load_study(study_path))
    assert "extra: unknown key" in str(err.value)
    (tmp_path / "bad.toml").write_text(
        MAPPING.replace('RUS = "russia"', 'RUS = "rusia"').replace('pipeline = "energy"', 'pipeline = "gas"')
    )
    with pytest.raises(InputError) as err:
        load_mapping(tmp_path / "bad.toml", load_study(study_path))
    text = str(err.value)
    assert "counterparts.RUS: 'rusia' is not a counterpart of the study (did you mean 'russia'?)" in text
    assert "domains.keywords.pipeline: 'gas' is not a domain" in text


def test_an_invalid_observation_file_is_not_touched(project):
    study_path, csv_path, source = project
    broken = csv_path.read_text() + "E9,2020-02-30,us,defence,cooperative,3,B2,x,y,\n"
    csv_path.write_text(broken)
    with pytest.raises(ObservationError):
        run_import(source, study_path, today=TODAY, write_report=False)
    assert csv_path.read_text() == broken


def test_cli_import_json_and_exit_codes(project, tmp_path):
    study_path, csv_path, source = project
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["import", str(source), str(study_path), "--dry-run", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for key in ("n_rows", "n_imported", "n_skipped", "reasons", "imported_ids", "skipped", "written", "dry_run"):
        assert key in out
    assert out["reasons"]["no_actor"] == 1
    text = runner.invoke(main, ["import", str(source), str(study_path), "--dry-run"])
    assert "line 4: unknown_counterpart" in text.stdout
    bad = runner.invoke(main, ["import", str(source), str(study_path), "--format", "xml"])
    assert bad.exit_code == 2
    missing = runner.invoke(main, ["import", str(tmp_path / "nope.csv"), str(study_path)])
    assert missing.exit_code == 2 and "not found" in missing.stderr
    assert csv_path.read_text().count("GDELT-") == 1  # only the hand-made GDELT-1012 row


def test_the_shipped_mapping_validates_against_the_default_study():
    m = load_mapping(REPO / "data" / "cameo_mapping.toml", load_study(DEFAULT_STUDY))
    assert "tur" in m.actor and m.counterparts["rus"] == "russia"


def test_generic_table_needs_named_columns(project, tmp_path):
    study_path, _, _ = project
    src = tmp_path / "odd.csv"
    src.write_text("when,who,whom,code\n2020-02-05,TST,USA,036\n")
    with pytest.raises(InputError) as err:
        run_import(src, study_path, today=TODAY, write_report=False)
    assert "[columns]" in str(err.value)
    (tmp_path / "map.toml").write_text(
        MAPPING + '\n[columns]\nevent_date = "when"\nsource_actor = "who"\ntarget_actor = "whom"\nevent_code = "code"\n'
    )
    result = run_import(src, study_path, mapping_path=tmp_path / "map.toml", today=TODAY, write_report=False)
    assert result.to_dict()["imported_ids"][0].startswith("EVT-")


# --- advice on the model for machine-coded feeds -------------------------------------------------


def test_appending_machine_coded_rows_to_a_study_without_overdispersion_advises_cell_on_stderr(project, tmp_path):
    study_path, csv_path, source = project
    result = CliRunner().invoke(
        main, ["import", str(source), str(study_path), "--runs-dir", str(tmp_path / "runs"), "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # stdout stays one JSON object
    assert out["written"] and out["n_imported"] == 5
    advice = [line for line in result.stderr.splitlines() if line.startswith("advice:")]
    assert len(advice) == 1
    assert '[model] overdispersion = "cell"' in advice[0] and "machine-coded" in advice[0]
    assert "1,951" in advice[0] and "0.95" in advice[0] and "0.92" in advice[0]
    assert out["advice"] == advice[0]


def test_a_dry_run_that_would_append_machine_coded_rows_advises_too(project, capsys):
    study_path, csv_path, source = project
    result = run_import(source, study_path, today=TODAY, dry_run=True)
    assert result.advice is not None
    assert capsys.readouterr().err.strip() == result.advice


def test_no_advice_when_nothing_is_appended_or_the_study_is_already_overdispersed(project, tmp_path):
    study_path, csv_path, source = project
    heard = []
    first = run_import(source, study_path, today=TODAY, write_report=False, advise=heard.append)
    assert first.written and heard == [first.advice]
    again = run_import(source, study_path, today=TODAY, write_report=False, advise=heard.append)
    assert again.to_dict()["n_imported"] == 0 and again.advice is None and len(heard) == 1

    study = base_study()
    study["model"] = {"overdispersion": "cell"}
    other = tmp_path / "cell"
    other.mkdir()
    cell_study, _ = write_mini(other, [event(1)], study)
    (other / "cameo_mapping.toml").write_text(MAPPING)
    done = run_import(source, cell_study, today=TODAY, write_report=False, advise=heard.append)
    assert done.written and done.advice is None and len(heard) == 1


def test_no_advice_for_rows_the_mapping_calls_hand_verified(project):
    study_path, csv_path, source = project
    mapping = csv_path.parent / "cameo_mapping.toml"
    mapping.write_text(MAPPING.replace('reliability = "C3"', 'reliability = "C3"\nsource_class = "hand-verified"'))
    heard = []
    result = run_import(source, study_path, today=TODAY, write_report=False, advise=heard.append)
    assert result.written and result.advice is None and heard == []


def test_init_writes_the_overdispersion_option_commented_out_and_it_validates_when_set(tmp_path):
    from forecast.workflows.init import init_study

    study_path, _ = init_study("feed", tmp_path)
    text = study_path.read_text(encoding="utf-8")
    assert '# [model]\n# overdispersion = "cell"\n' in text and "machine-coded feeds" in text
    assert not load_study(study_path).overdispersed  # the default stays "none"
    study_path.write_text(text.replace('# [model]\n# overdispersion = "cell"\n', '[model]\noverdispersion = "cell"\n'))
    assert load_study(study_path).overdispersed
