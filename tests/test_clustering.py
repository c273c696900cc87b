"""Volume that cannot swamp the evidence (issue 17, item 3 a-c): repeated reports of one event
become one event, noise filters, the source class's weight. A hand-made file with known events."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers import event, write_mini
from test_import_feeds import MAPPING, TODAY, imported, reasons, row, write

from forecast.data.importer import Candidate, cluster
from forecast.data.observations import load_observations
from forecast.spec.study import load_study
from forecast.workflows.import_events import run_import


@pytest.fixture
def study(tmp_path):
    # E1: a hand-coded cooperation with the US on 2020-06-01 (no initiator column: joint)
    study_path, _ = write_mini(tmp_path, [event(1, event_date="2020-06-01")])
    (tmp_path / "cameo_mapping.toml").write_text(MAPPING)
    return study_path


# Three known events, each reported several times, in file order with the weak reports first (as
# on the real day where a celebrity story and an arts column were kept and the Secretary of State's
# visit dropped):
#   A: Testland meets the US, 2020-03-01 (reports 1-4; report 3 is the best attested);
#   B: Russia strikes Testland, 2020-03-05 (reports 5-6; 6 dated a day later, coded 190 not 183);
#   C: the hand-coded E1, reported by GDELT a day later (report 7).
KNOWN = [
    row(1, NumSources=1, NumMentions=2, IsRootEvent=0, SOURCEURL="https://celebs.example/turkey-free-thanksgiving"),
    row(2, NumSources=1, NumMentions=3, IsRootEvent=0, SOURCEURL="https://arts.example/column"),
    row(3, NumSources=6, NumMentions=40, IsRootEvent=1, EventCode="043", SOURCEURL="https://wire.example/visit"),
    row(4, NumSources=2, NumMentions=9, IsRootEvent=1, SQLDATE="20200302", SOURCEURL="https://daily.example/v"),
    row(5, Actor1Code="RUSMIL", Actor1CountryCode="RUS", Actor2Code="TSTMIL", Actor2CountryCode="TST",
        EventCode="183", QuadClass="4", GoldsteinScale="-9", SQLDATE="20200305", NumSources=2),
    row(6, Actor1Code="RUSMIL", Actor1CountryCode="RUS", Actor2Code="TSTMIL", Actor2CountryCode="TST",
        EventCode="190", QuadClass="4", GoldsteinScale="-10", SQLDATE="20200306", NumSources=1,
        SOURCEURL="https://other.example/strike"),
    row(7, SQLDATE="20200602", NumSources=3),
]  # fmt: skip


def test_repeated_reports_become_one_event_represented_by_its_best_attested_report(study, tmp_path):
    result = run_import(write(tmp_path / "k.csv", KNOWN), study, today=TODAY, dry_run=True)
    got = imported(result)
    # A: report 3 (6 sources, 40 mentions, root) represents it; the others corroborate it
    assert got["GDELT-3"]["origin_id"] == ""
    assert {got[f"GDELT-{i}"]["origin_id"] for i in (1, 2, 4)} == {"GDELT-3"}
    # B: the strike dated a day later under another CAMEO family (19 fight, 18 assault) is the same event
    assert got["GDELT-5"]["origin_id"] == "" and got["GDELT-6"]["origin_id"] == "GDELT-5"
    # C: a day after the hand-coded E1: the same event, skipped (on_match = 'skip')
    assert reasons(result) == {"7": "matches_existing"} and result.skipped[0].matches == "E1"
    assert result.n_events == 2 and result.to_dict()["n_corroborating"] == 4


def test_the_grade_rises_with_the_number_of_independent_sources(study, tmp_path):
    result = run_import(write(tmp_path / "k.csv", KNOWN), study, today=TODAY, dry_run=True)
    got = imported(result)
    # A: 6 sources in its best report -> B3 (by_sources 3 -> B3, 10 -> B2); a report keeps its own grade
    assert got["GDELT-3"]["reliability"] == "B3" and got["GDELT-1"]["reliability"] == "C3"
    assert "6 independent source(s) over 4 report(s)" in got["GDELT-3"]["description"]
    # B: at most 2 sources in one report, but 2 distinct sites: still under 3 -> C3
    assert got["GDELT-5"]["reliability"] == "C3"
    # ten reports of one event from ten sites, one source each: ten independent sources -> B2
    many = [row(100 + i, NumSources=1, SOURCEURL=f"https://site{i}.example/x") for i in range(10)]
    result = run_import(write(tmp_path / "m.csv", many), study, today=TODAY, dry_run=True)
    reps = [r for r in result.imported if not r["origin_id"]]
    assert len(reps) == 1 and reps[0]["reliability"] == "B2" and result.n_events == 1


def test_the_window_and_the_outcome_separate_events(study, tmp_path):
    rows = [
        row(1, SQLDATE="20200301"),
        row(2, SQLDATE="20200303"),  # two days later: beyond the default window of 1 day
        row(3, SQLDATE="20200301", EventCode="111", QuadClass="3", GoldsteinScale="-2"),  # a conflict
        row(4, SQLDATE="20200301", Actor1Code="USAGOV", Actor1CountryCode="USA",
            Actor2Code="TSTGOV", Actor2CountryCode="TST"),  # the other initiator
    ]  # fmt: skip
    src = write(tmp_path / "w.csv", rows)
    result = run_import(src, study, today=TODAY, dry_run=True)
    assert result.n_events == 4 and all(r["origin_id"] == "" for r in result.imported)
    (tmp_path / "m.toml").write_text(MAPPING + "\n[cluster]\nwindow_days = 3\n")
    wide = run_import(src, study, mapping_path=tmp_path / "m.toml", today=TODAY, dry_run=True)
    assert wide.n_events == 3 and imported(wide)["GDELT-2"]["origin_id"] == "GDELT-1"


def test_corroborating_reports_can_be_skipped_and_matches_corroborated(study, tmp_path):
    src = write(tmp_path / "k.csv", KNOWN)
    (tmp_path / "m.toml").write_text(MAPPING + '\n[cluster]\nreports = "skip"\n')
    result = run_import(src, study, mapping_path=tmp_path / "m.toml", today=TODAY, dry_run=True)
    assert sorted(imported(result)) == ["GDELT-3", "GDELT-5"]
    assert {k: v for k, v in reasons(result).items() if v == "repeat"} == dict.fromkeys(["1", "2", "4", "6"], "repeat")
    corr = run_import(src, study, today=TODAY, on_match="corroborate")
    assert imported(corr)["GDELT-7"]["origin_id"] == "E1"
    # written, the file validates, and each event counts once
    table = load_observations(load_study(study), today=TODAY).table
    assert (table["origin_id"] == "").sum() == 3  # E1, A and B


def test_noise_filters_drop_thin_reports_and_blocked_sites(study, tmp_path):
    rows = [
        row(1, NumSources=1, NumMentions=1),
        row(2, NumSources=5, NumMentions=20, SQLDATE="20200401", SOURCEURL="https://www.spam.example/x"),
        row(3, NumSources=5, NumMentions=20, SQLDATE="20200501", SOURCEURL="https://feeds.spam.example/y"),
        row(4, NumSources=5, NumMentions=20, SQLDATE="20200615", SOURCEURL="https://good.example/z"),
        row(5, NumSources=1, NumMentions=9, SQLDATE="20200701"),
    ]
    filters = '\n[filters]\nmin_sources = 2\nmin_mentions = 2\nblocked_sites = ["spam.example"]\n'
    (tmp_path / "m.toml").write_text(MAPPING + filters)
    result = run_import(
        write(tmp_path / "n.csv", rows), study, mapping_path=tmp_path / "m.toml", today=TODAY, dry_run=True
    )
    assert reasons(result) == {"1": "few_sources", "2": "blocked_site", "3": "blocked_site", "5": "few_sources"}
    assert list(imported(result)) == ["GDELT-4"]


def test_a_source_class_weight_makes_machine_coded_rows_count_less(study, tmp_path):
    (tmp_path / "m.toml").write_text(MAPPING.replace('reliability = "C3"', 'reliability = "C3"\nclass_weight = 0.5'))
    result = run_import(write(tmp_path / "k.csv", [row(1)]), study, mapping_path=tmp_path / "m.toml", today=TODAY)
    table = load_observations(load_study(study), today=TODAY).table.set_index("id")
    study_ = load_study(study)
    c3 = study_.reliability_source["C"] * study_.reliability_credibility["3"]
    assert table.loc["GDELT-1", "weight"] == pytest.approx(0.5 * c3, abs=1e-4)
    assert "grade C3 x machine-coded weight 0.5" in result.imported[0]["description"]


def test_cluster_orders_each_event_by_attestation():
    def cand(i, day, sources, mentions, root):
        return Candidate(
            obs={"id": str(i)}, line=i, source_id=str(i), date=dt.date(2020, 1, day), counterpart="us",
            initiator="actor", family="cooperative", domain="d", n_sources=sources, n_mentions=mentions,
            is_root=root, site=f"s{i}", grade="C3",
        )  # fmt: skip

    clusters = cluster([cand(1, 1, 1, 5, True), cand(2, 2, 3, 1, False), cand(3, 2, 3, 2, False)], 1)
    assert len(clusters) == 1 and [c.line for c in clusters[0].rows] == [3, 2, 1]
    assert clusters[0].independent_sources() == 3
