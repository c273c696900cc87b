"""Machine-coded feeds read right (issue 17, item 1): each defect found on real dumps, as a small
hand-written fixture. Nothing fits a model."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import zipfile

import pytest
from click.testing import CliRunner
from helpers import event, write_mini

from forecast.cli import main
from forecast.data.importer import actor_prefilter
from forecast.data.importer.mapping import tokens
from forecast.errors import InputError
from forecast.workflows.import_events import run_import

TODAY = dt.date(2026, 1, 1)

MAPPING = """
[mapping]
study = "mini"
actor = ["TST", "Testland", "Testlandia", "TESTISH"]
reliability = "C3"
by_sources = { "3" = "B3", "10" = "B2" }

[counterparts]
USA = "us"
"United States" = "us"
IGOWSTNAT = "eu"
RUS = "russia"
"Russian Federation" = "russia"

[domains.keywords]
"f-35" = "defence"
"pipeline" = "energy"
"trade" = "energy"
"straits" = "energy"

[domains.codes]
"0" = "defence"
"1" = "defence"
"""

COLUMNS = [
    "GLOBALEVENTID",
    "SQLDATE",
    "Actor1Code",
    "Actor1Name",
    "Actor1CountryCode",
    "Actor2Code",
    "Actor2Name",
    "Actor2CountryCode",
    "IsRootEvent",
    "EventCode",
    "QuadClass",
    "GoldsteinScale",
    "NumMentions",
    "NumSources",
    "DATEADDED",
    "SOURCEURL",
]


def row(id, **kw) -> dict:
    r = {
        "GLOBALEVENTID": str(id),
        "SQLDATE": "20200301",
        "Actor1Code": "TSTGOV",
        "Actor1Name": "TESTLAND",
        "Actor1CountryCode": "TST",
        "Actor2Code": "USAGOV",
        "Actor2Name": "UNITED STATES",
        "Actor2CountryCode": "USA",
        "IsRootEvent": "1",
        "EventCode": "042",
        "QuadClass": "1",
        "GoldsteinScale": "1.9",
        "NumMentions": "4",
        "NumSources": "1",
        "DATEADDED": "20200302000000",
        "SOURCEURL": f"https://news.example/story-{id}",
    }
    r.update({k: str(v) for k, v in kw.items()})
    if "DATEADDED" not in kw:
        r["DATEADDED"] = r["SQLDATE"] + "120000"
    return r


def write(path, rows, columns=COLUMNS, opener=open):
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def study(tmp_path):
    study_path, _ = write_mini(tmp_path, [event(1, event_date="2020-06-01")])
    (tmp_path / "cameo_mapping.toml").write_text(MAPPING)
    return study_path


def imported(result) -> dict[str, dict]:
    return {r["id"]: r for r in result.imported}


def reasons(result) -> dict[str, str]:
    return {s.source_id: s.reason for s in result.skipped}


# --- keywords: whole words, never substrings of URLs ------------------------------------------------


def test_keywords_match_whole_words_of_the_text_and_the_url_path_never_substrings(study, tmp_path):
    rows = [
        row(1, SOURCEURL="https://news.example/air-force-chief-3554106", EventCode="0", QuadClass="1"),
        row(2, SOURCEURL="https://news.example/us-sells-f-35-jets", SQLDATE="20200310"),
        row(3, SOURCEURL="https://news.example/trader-arrested", SQLDATE="20200320"),
        row(4, SOURCEURL="https://www.straitstimes.com/world/talks", SQLDATE="20200401"),
        row(5, SOURCEURL="https://news.example/new-trade-deal", SQLDATE="20200410"),
    ]
    mapping = MAPPING.replace('"0" = "defence"\n"1" = "defence"\n', '"04" = "defence"\n')
    (tmp_path / "m.toml").write_text(mapping)
    src = write(tmp_path / "kw.csv", rows)
    result = run_import(src, study, mapping_path=tmp_path / "m.toml", today=TODAY, dry_run=True)
    got = {k: r["domain"] for k, r in imported(result).items()}
    assert got["GDELT-2"] == "defence"  # 'f-35' as words of the path
    assert got["GDELT-3"] == "defence"  # 'trader' is not 'trade': the CAMEO code decides
    assert got["GDELT-4"] == "defence"  # the site's name 'straitstimes' is not 'straits'
    assert got["GDELT-5"] == "energy"  # 'trade' is a word of the path
    assert "chief 3554106" in tokens("air-force-chief-3554106") and " f 35 " not in tokens("chief-3554106")


# --- actors: CAMEO code prefixes, aliases, an explicit column choice ---------------------------------


def test_cameo_code_prefixes_and_name_aliases_match_the_actor_and_counterparts(study, tmp_path):
    rows = [
        row(1, Actor1Code="TSTMIL", Actor2Code="IGOWSTNAT", Actor2CountryCode="", Actor2Name="NATO"),
        row(2, Actor1Code="", Actor1CountryCode="", Actor1Name="Testlandia", SQLDATE="20200310"),
        row(3, Actor1Code="", Actor1CountryCode="", Actor1Name="TESTISH", SQLDATE="20200320", GoldsteinScale="2"),
        row(4, Actor1Code="RUSGOV", Actor1CountryCode="RUS", Actor2Code="TSTGOV", SQLDATE="20200401"),
        # a name is whole: 'TESTLANDERS' is not 'Testland'; a code only as a prefix in a code column
        row(5, Actor1Code="", Actor1CountryCode="", Actor1Name="TESTLANDERS", SQLDATE="20200410"),
    ]
    result = run_import(write(tmp_path / "a.csv", rows), study, today=TODAY, dry_run=True)
    got = imported(result)
    assert got["GDELT-1"]["counterpart"] == "eu" and got["GDELT-1"]["initiator"] == "actor"
    assert "GDELT-2" in got and "GDELT-3" in got
    assert got["GDELT-4"]["counterpart"] == "russia" and got["GDELT-4"]["initiator"] == "counterpart"
    assert "GDELT-5" not in got and result.n_prefiltered == 1  # no code or whole name of the actor


def test_the_actor_columns_are_chosen_explicitly_with_fallbacks_and_named(study, tmp_path):
    # Actor1Code says NATO's code, the country column is empty: the code column is read first;
    # with actor_columns = "country" the country column is first and the code the fallback.
    rows = [
        row(1, Actor1Code="TSTGOV", Actor1CountryCode="", Actor2Code="RUSGOV", Actor2CountryCode="USA"),
    ]
    src = write(tmp_path / "c.csv", rows)
    by_code = run_import(src, study, today=TODAY, dry_run=True)
    assert by_code.imported[0]["counterpart"] == "russia"
    assert by_code.columns["source_actor"] == ["Actor1Code", "Actor1CountryCode", "Actor1Name"]
    (tmp_path / "m.toml").write_text(
        MAPPING.replace('reliability = "C3"', 'reliability = "C3"\nactor_columns = "country"')
    )
    by_country = run_import(src, study, mapping_path=tmp_path / "m.toml", today=TODAY, dry_run=True)
    assert by_country.imported[0]["counterpart"] == "us"  # TST found in the fallback Actor1Code
    assert by_country.columns["source_actor"] == ["Actor1CountryCode", "Actor1Code", "Actor1Name"]
    text = CliRunner().invoke(main, ["import", str(src), str(study), "--dry-run"]).stdout
    assert "actors read from Actor1Code then Actor1CountryCode then Actor1Name" in text
    # a list of fallbacks in [columns]
    (tmp_path / "m2.toml").write_text(MAPPING + '\n[columns]\nsource_actor = ["Actor1Name", "Actor1Code"]\n')
    named = run_import(src, study, mapping_path=tmp_path / "m2.toml", today=TODAY, dry_run=True)
    assert named.columns["source_actor"] == ["Actor1Name", "Actor1Code"] and len(named.imported) == 1


def test_the_prefilter_passes_every_row_the_mapping_reads_as_the_actors():
    class M:
        actor_codes = ("TST",)
        actor_names = frozenset({"testland", "testlandia republic"})

    keep = actor_prefilter(M())
    lines = [
        "1\t20200301\tTSTGOV\tx\n",
        "2\tUSA\tRUS\treturn-of-the-future\n",
        "3\tTestland\n",
        "4\tTESTLAND\n",
        "5\tTestlandia  Republic\n",
        "6\tatest\tTESTLANDERS\n",
        "7\tXTST\n",
    ]
    assert keep(lines) == {0, 2, 3, 4}


# --- outcomes: neutral rows, quad classes as GDELT assigns them, PLOVER -----------------------------


def test_neutral_rows_get_their_own_reason_unless_kept(study, tmp_path):
    rows = [
        row(1, EventCode="010", QuadClass="1", GoldsteinScale="0"),
        row(2, EventCode="020", QuadClass="1", GoldsteinScale="3", SQLDATE="20200310"),
        row(3, EventCode="043", QuadClass="1", GoldsteinScale="0", SQLDATE="20200320"),
        row(4, EventCode="043", QuadClass="1", GoldsteinScale="2.8", SQLDATE="20200401"),
    ]
    src = write(tmp_path / "n.csv", rows)
    result = run_import(src, study, today=TODAY, dry_run=True)
    assert reasons(result) == {"1": "neutral", "2": "neutral", "3": "neutral"}
    assert list(imported(result)) == ["GDELT-4"]
    (tmp_path / "m.toml").write_text(MAPPING.replace('reliability = "C3"', 'reliability = "C3"\nneutral = "keep"'))
    kept = run_import(src, study, mapping_path=tmp_path / "m.toml", today=TODAY, dry_run=True)
    assert len(kept.imported) == 4 and {r["outcome"] for r in kept.imported} == {"cooperative"}


def test_the_quad_class_decides_as_gdelt_assigns_it_and_a_mismatch_is_reported(study, tmp_path):
    rows = [
        # 012 'make pessimistic comment': quad 1 by its root, Goldstein -0.4 by GDELT's own table
        row(1, EventCode="012", QuadClass="1", GoldsteinScale="-0.4"),
        # a quad class that is not its root code's: a shifted or damaged row
        row(2, EventCode="190", QuadClass="1", GoldsteinScale="-10", SQLDATE="20200310"),
    ]
    (tmp_path / "m.toml").write_text(MAPPING.replace('reliability = "C3"', 'reliability = "C3"\nneutral = "keep"'))
    result = run_import(write(tmp_path / "q.csv", rows), study, mapping_path=tmp_path / "m.toml", today=TODAY)
    r = imported(result)["GDELT-1"]
    assert r["outcome"] == "cooperative" and r["intensity"] == "" and "Goldstein -0.4" in r["description"]
    assert reasons(result) == {"2": "quad_mismatch"}


def test_current_plover_event_types_contexts_and_modes(study, tmp_path):
    src = tmp_path / "polecat.tsv"
    src.write_text(
        "Event ID\tEvent Date\tEvent Type\tEvent Mode\tContexts\tEvent Intensity\tActor Country\t"
        "Recipient Country\tPublication Date\n"
        "p1\t2020-08-01\tREQUEST\t\tmilitary\t-1\tTST\tUSA\t2020-08-02\n"
        "p2\t2020-08-03\tACCUSE\tallege\teconomic;pipeline\t-3.5\tTST\tRUS\t2020-08-03\n"
        "p3\t2020-08-05\tCONSULT\tvisit\t\t4\tUSA\tTST\t2020-08-05\n"
        "p4\t2020-08-07\tRETREAT\tceasefire\t\t7.5\tTST\tRUS\t2020-08-07\n"
    )
    mapping = MAPPING.replace('"0" = "defence"\n"1" = "defence"\n', "")
    mapping += (
        '\n[domains.contexts]\nmilitary = "defence"\n"natural_resource" = "energy"\neconomic = "energy"\n'
        '[domains.modes]\nvisit = "defence"\n[domains.event_types]\nRETREAT = "defence"\n'
    )
    (tmp_path / "m.toml").write_text(mapping)
    result = run_import(src, study, mapping_path=tmp_path / "m.toml", today=TODAY, dry_run=True)
    got = {k: (r["outcome"], r["domain"]) for k, r in imported(result).items()}
    assert got == {
        "POLECAT-p1": ("conflictual", "defence"),
        "POLECAT-p2": ("conflictual", "energy"),
        "POLECAT-p3": ("cooperative", "defence"),
        "POLECAT-p4": ("cooperative", "defence"),
    }


# --- files: compressed, encoded, dated ---------------------------------------------------------------


def test_gz_and_zip_dumps_are_read_directly_and_a_truncated_one_is_refused(study, tmp_path):
    rows = [row(1), row(2, SQLDATE="20200401")]
    plain = run_import(write(tmp_path / "d.csv", rows), study, today=TODAY, dry_run=True)
    gz = run_import(write(tmp_path / "d.csv.gz", rows, opener=gzip.open), study, today=TODAY, dry_run=True)
    with zipfile.ZipFile(tmp_path / "d.CSV.zip", "w") as z:
        z.write(tmp_path / "d.csv", "20200401.export.CSV")
    zipped = run_import(tmp_path / "d.CSV.zip", study, today=TODAY, dry_run=True)
    assert [r["id"] for r in plain.imported] == [r["id"] for r in gz.imported] == [r["id"] for r in zipped.imported]
    assert len(plain.imported) == 2
    data = (tmp_path / "d.csv.gz").read_bytes()
    (tmp_path / "cut.csv.gz").write_bytes(data[: len(data) - 12])
    with pytest.raises(InputError, match="damaged or cut short"):
        run_import(tmp_path / "cut.csv.gz", study, today=TODAY, dry_run=True)


def test_encoding_is_chosen_with_encoding(study, tmp_path):
    src = tmp_path / "latin.csv"
    rows = [row(1, Actor1Code="", Actor1CountryCode="", Actor1Name="Testlandia", SOURCEURL="https://n.example/café")]
    write(src, rows)
    src.write_bytes(src.read_text(encoding="utf-8").encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8 text.*--encoding"):
        run_import(src, study, today=TODAY, dry_run=True)
    result = run_import(src, study, today=TODAY, dry_run=True, encoding="latin-1")
    assert "café" in result.imported[0]["source"]
    with pytest.raises(InputError, match="not a known text encoding"):
        run_import(src, study, today=TODAY, dry_run=True, encoding="klingon")


def test_since_and_until_keep_the_events_between_them(study, tmp_path):
    rows = [row(1, SQLDATE="20200301"), row(2, SQLDATE="20200501"), row(3, SQLDATE="20200701")]
    src = write(tmp_path / "d.csv", rows)
    result = run_import(src, study, today=TODAY, dry_run=True, since=dt.date(2020, 4, 1), until=dt.date(2020, 6, 30))
    assert list(imported(result)) == ["GDELT-2"] and reasons(result) == {"1": "outside_dates", "3": "outside_dates"}
    with pytest.raises(InputError, match="after --until"):
        run_import(src, study, today=TODAY, dry_run=True, since=dt.date(2020, 7, 1), until=dt.date(2020, 6, 1))


def test_a_dry_run_shows_mapped_rows_and_summarises_skips_by_reason(study, tmp_path):
    rows = [
        row(1),
        row(2, SQLDATE="20200401"),
        row(3, Actor1Code="FRAGOV", Actor1CountryCode="FRA", Actor1Name="FRANCE"),
        row(4, Actor2Code="CHNGOV", Actor2CountryCode="CHN", Actor2Name="CHINA", SQLDATE="20200501"),
    ]
    src = write(tmp_path / "d.csv", rows)
    runner = CliRunner()
    out = runner.invoke(
        main,
        ["import", str(src), str(study), "--dry-run", "--show", "1", "--since", "2020-01-01"],
        catch_exceptions=False,
    )
    assert out.exit_code == 0, out.output
    text = out.stdout
    assert "first 1 of 2 mapped rows:" in text and "GDELT-1" in text and "2020-03-01" in text
    assert "rows not imported, by reason:" in text and "no_actor: 1" in text and "unknown_counterpart: 1" in text
    assert "1 of them involve the study's actor:" in text and "line 5: unknown_counterpart" in text
    assert "line 4" not in text  # France and the US: not the actor's, counted only
    js = json.loads(runner.invoke(main, ["import", str(src), str(study), "--dry-run", "--show", "2", "--json"]).stdout)
    assert [r["id"] for r in js["shown"]] == ["GDELT-1", "GDELT-2"] and js["reasons"]["no_actor"] == 1
