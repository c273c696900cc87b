"""`forecast report` on a stored run without fitting: hostile text, the analyses a run holds, leftovers.

Every test here starts from a copy of the golden run (tests/golden/run-v1) and builds its report
with a stand-in figure renderer (a 1x1 PNG per figure), so nothing samples and nothing is drawn
except where a test asks for a plot. Hostile strings go into every user-supplied field: the study
question, hypothesis labels and claims, group and domain labels, observation ids, descriptions
and sources.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from forecast.reports.figures import Figure
from forecast.reports.report import build_report, write_report
from forecast.reports.report.assemble import gate_thresholds
from forecast.reports.report.records import DEFAULT_GATE
from forecast.reports.report.render import md_line, md_text, render_html, render_json, render_markdown, safe_url
from forecast.runs.stored import StoredRun

GOLDEN = Path(__file__).resolve().parent / "golden" / "run-v1"
IMG = "<img src=x onerror=alert(1)>"
MD_IMAGE = "![x](http://evil/x.png)"
MD_LINK = "[a](javascript:alert(1))"
HOSTILE = f"{IMG} {MD_IMAGE} {MD_LINK} *b* _i_ `c` | # <script>alert(2)</script> &lt;"
GOOD_SOURCE = "https://example.org/wire?a=1&b=(2)"
BAD_SOURCE = "javascript:alert(3)"
# A 1x1 PNG: what the stand-in renderer returns for every figure.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


class PixelRenderer:
    """Stands in for FigureRenderer: no drawing, except the figures named in ``draw``."""

    def __init__(self, draw: tuple[str, ...] = ()):
        self.draw = draw

    def render(self, jobs):
        out = {}
        for j in jobs:
            png = j.fn(*j.args, **j.kwargs) if j.name in self.draw else PIXEL
            out[j.name] = Figure(j.name, j.title, j.caption, j.alt, png)
        return out


# --- stored analyses, in the layout their commands write -----------------------------------------


def history_json() -> dict:
    def point(quarter, as_of, n, new, source, p_shift, converged=True):
        return {
            "quarter": quarter,
            "as_of": as_of,
            "n_observations": n,
            "new_observations": new,
            "source": source,
            "probabilities": {"steady": 1 - p_shift, "shift": p_shift},
            "probabilities_se": {"steady": 0.01, "shift": 0.01},
            "log_marginal_likelihood": {"steady": None, "shift": None},
            "log_marginal_likelihood_se": {"steady": None, "shift": None},
            "converged": converged,
            "problems": {} if converged else {"shift": ["R-hat 1.2 > 1.01"]},
        }

    return {
        "schema_version": 1,
        "study": "golden",
        "hypotheses": [
            {"id": "steady", "label": "Steady", "prior_probability": 0.5},
            {"id": "shift", "label": "Shift"},
        ],
        "every": 4,
        "settings": {"draws": 500, "tune": 400, "chains": 4},
        "converged": False,
        "n_points": 3,
        "n_fitted": 1,
        "seconds": 1.0,
        "points": [
            point("2019Q4", "2019-12-31", 0, 0, "prior", 0.5),
            point("2020Q4", "2020-12-31", 20, 20, "fit", 0.6, converged=False),
            point("2021Q4", "2021-12-31", 48, 28, "run", 0.7679244350573817),
        ],
    }


def sensitivity_json() -> dict:
    grid = np.linspace(0.01, 0.99, 9).tolist()
    odds = {
        hid: {
            "prior_probability": 0.5,
            "posterior_probability": p,
            "flip_prior": 0.232,
            "flip_prior_se": 0.01,
            "flip_against": other,
            "even_odds_prior": 0.232,
            "curve": {"prior": grid, "posterior": [min(1.0, x * 1.3) for x in grid]},
        }
        for hid, other, p in (("steady", "shift", 0.232), ("shift", "steady", 0.768))
    }
    return {
        "schema_version": 1,
        "study": "golden",
        "converged": True,
        "grid": {"shifts": [0.5], "scales": [1.5], "by": "parameter", "joint": True, "pareto_k_threshold": 0.697},
        "hypotheses": [
            {"id": "steady", "label": "Steady", "prior_probability": 0.5},
            {"id": "shift", "label": "Shift"},
        ],
        "base": {"leader": "shift", "posterior_probabilities": {"steady": 0.232, "shift": 0.768}},
        "n_variants": 3,
        "n_refitted": 0,
        "refitted": [],
        "ranges": {
            "steady": {"base": 0.232, "min": 0.09, "max": 0.37, "min_variant": "steady/all/n", "max_variant": "a/b"},
            "shift": {"base": 0.768, "min": 0.63, "max": 0.91, "min_variant": "steady/all/w", "max_variant": "c/d"},
        },
        "tornado": [
            {"hypothesis": "steady", "target": "all", "low": 0.63, "high": 0.91, "swing": 0.28},
            {"hypothesis": "shift", "target": "tilt", "low": 0.70, "high": 0.81, "swing": 0.11},
        ],
        "verdict": {"leader": "shift", "stable": True, "flips": [], "text": f"'{HOSTILE}' leads in all 3 variants."},
        "prior_odds": odds,
        "prior_odds_text": "Shift stays ahead above 0.232.",
        "psense_flags": [{"hypothesis": "steady", "parameter": "tilt", "group": "west", "flag": "prior-data conflict"}],
        "psense_threshold": 0.05,
        "unreliable_variants": [],
        "warning": "2 variant(s) have Pareto k above 0.70 and were not refitted",
    }


def prior_predictive_json() -> dict:
    def rows(kind, extra):
        return [
            {"group": g, **e, "q05": 0.1, "q25": 0.3, "median": 0.5, "q75": 0.7, "q95": 0.9}
            for g in ("west", "east")
            for e in extra
        ]

    predictive = {
        "domain_shares": rows(
            "d", [{"domain": "defence", "quarter": "2020Q3"}, {"domain": "energy", "quarter": "2020Q3"}]
        ),
        "typical_share": rows(
            "t", [{"at": a, "quarter": q} for a, q in (("start", "2020Q1"), ("reference", "2020Q3"), ("end", "2021Q4"))]
        ),
        "change_over_window": rows("c", [{}]),
        "quarterly_swing": rows("s", [{}]),
    }
    prior = {"parameter": "tilt", "group": "west", "prior": "Normal(mu=0, sigma=1)", "statement": {"text": HOSTILE}}
    return {
        "schema_version": 1,
        "study": "golden",
        "reference_quarter": "2020Q3",
        "window": ["2020Q1", "2021Q4"],
        "n_draws": 2000,
        "seed": 1,
        "threshold": 0.15,
        "hypotheses": [
            {"id": hid, "label": hid, "prior_probability": 0.5, "priors": [prior], "predictive": predictive}
            for hid in ("steady", "shift")
        ],
        "distinguishability": [
            {
                "a": "steady",
                "b": "shift",
                "max_hellinger": 0.1,
                "most_different": "typical_share/east/end",
                "indistinguishable": True,
            }
        ],
        "warnings": [f"'{HOSTILE}' and 'Shift' imply nearly the same data"],
    }


# --- a hostile copy of the golden run --------------------------------------------------------------


def _toml(text: str) -> str:
    return json.dumps(text)  # a TOML basic string for these characters


def hostile_run(directory: Path) -> Path:
    run = directory / "golden" / "20261207T051613Z"
    shutil.copytree(GOLDEN, run)
    study = (run / "study.toml").read_text(encoding="utf-8")
    for old in ('"Does Testland tilt east?"', '"Steady"', '"The shift claim."', '"West"', '"Energy"'):
        study = study.replace(old, _toml(f"{old.strip(chr(34))} {HOSTILE}"), 1)
    (run / "study.toml").write_text(study, encoding="utf-8")
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    summary["question"] += " " + HOSTILE
    summary["conclusion"] += " " + HOSTILE
    summary["hypotheses"][0]["label"] += " " + HOSTILE
    (run / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    with open(run / "observations.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows[0]["id"] = "G001" + MD_LINK
    for i, row in enumerate(rows):
        row["description"] += " " + HOSTILE
        row["source"] = (GOOD_SOURCE, BAD_SOURCE, f"Wire {MD_IMAGE}")[i % 3]
    with open(run / "observations.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    manifest["gate"] = {
        **DEFAULT_GATE,
        "rhat_max": 1.05,
        "ess_min": 321,
        "bridge_se_max": 0.5,
        "retry": {"attempts": 2},
    }
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (run / "history.json").write_text(json.dumps(history_json()), encoding="utf-8")
    (run / "sensitivity.json").write_text(json.dumps(sensitivity_json()), encoding="utf-8")
    (run / "prior_predictive.json").write_text(json.dumps(prior_predictive_json()), encoding="utf-8")
    return run


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    run = hostile_run(tmp_path_factory.mktemp("hostile"))
    report = build_report(StoredRun.open(run), renderer=PixelRenderer())
    return run, report, render_markdown(report), render_html(report)


# --- Markdown: nothing from the data becomes markup ----------------------------------------------


def test_markdown_escapes_every_user_supplied_string(hostile):
    _, _, md, _ = hostile
    for raw in (IMG, MD_IMAGE, MD_LINK, "<script>", "*b*", "_i_", "`c`", BAD_SOURCE + "]("):
        assert raw not in md
    assert "&lt;img src=x onerror=alert(1)&gt;" in md
    assert r"!\[x\](http://evil/x.png)" in md and r"\[a\](javascript:alert(1))" in md
    assert "&amp;lt;" in md  # an entity in the data is shown as typed, not decoded
    # Every link or image destination is an embedded figure or an http(s) source.
    destinations = re.findall(r"(?<!\\)\]\(([^)]*)", md)
    assert destinations and all(d.startswith(("data:image/png;base64,", "<https://")) for d in destinations)
    # Hostile labels stay inside their heading and table cell.
    assert re.search(r"^### Steady &lt;img src=x onerror=alert\(1\)&gt; ", md, re.M)
    table = [line for line in md.splitlines() if line.startswith("| ") and "Steady" in line]
    assert table and all(line.count(" | ") == line.replace(r"\|", "").count(" | ") for line in table)


def test_markdown_renders_to_html_without_anything_from_the_data(hostile):
    markdown_it = pytest.importorskip("markdown_it")
    _, _, md, _ = hostile
    # A renderer that passes raw HTML through, as many do: still nothing executable or remote.
    html = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    assert "<script" not in html and "onerror=" not in html.replace("onerror=alert(1)&gt;", "")
    assert re.findall(r"<img [^>]*src=\"([^\"]*)\"", html)
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r"<img [^>]*src=\"([^\"]*)\"", html))
    hrefs = re.findall(r"<a [^>]*href=\"([^\"]*)\"", html)
    assert hrefs and all(h.startswith("https://example.org/") for h in hrefs)


def test_html_escapes_every_user_supplied_string_and_links_only_http_sources(hostile):
    _, _, _, html = hostile
    assert IMG not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r"<img [^>]*src=\"([^\"]*)\"", html))
    hrefs = [h for h in re.findall(r"href=\"([^\"]*)\"", html) if not h.startswith("#")]  # "#...": the contents
    assert hrefs and set(hrefs) == {"https://example.org/wire?a=1&amp;b=(2)"}
    assert "javascript:alert(3)" in html and 'href="javascript' not in html  # shown as text
    assert "<link" not in html and "<script src" not in html and "@import" not in html


def test_md_text_and_safe_url_on_their_own():
    assert md_line("- item") == r"\- item" and md_line("1. item") == r"1\. item" and md_text("# h") == r"\# h"
    assert md_text("1. item") == "1. item" and md_text("a - b") == "a - b"  # only where a line starts
    assert md_text("a\n\n<b>") == "a &lt;b&gt;"
    assert md_text(-0.5) == "-0.5"  # numbers are never escaped
    assert safe_url("https://x.org/a b") is None and safe_url("HTTPS://x.org/") == "HTTPS://x.org/"
    for bad in ("javascript:alert(1)", "data:text/html,x", "file:///etc/passwd", "//evil.org/x", "http:///x"):
        assert safe_url(bad) is None
    assert safe_url("http://x.org/<a>`") == "http://x.org/%3Ca%3E%60"


# --- what the run holds: gate, history, sensitivity, prior predictive ------------------------------


def test_the_gate_shown_is_the_one_the_run_was_judged_by(hostile):
    _, report, md, _ = hostile
    assert report.diagnostics.thresholds["rhat_max"] == 1.05 and report.diagnostics.thresholds["ess_min"] == 321
    assert "R-hat ≤ 1.05" in md and "Monte Carlo error ≤ 0.5 nats" in md
    assert not any("gate" in n for n in report.diagnostics.notes)
    notes: list[str] = []
    assert gate_thresholds({}, notes) == DEFAULT_GATE and "does not record its gate thresholds" in notes[0]


def test_the_report_imports_neither_the_sampler_nor_the_workflows():
    code = (
        "import sys, forecast.reports.report, forecast.cli.commands.report; "
        "bad = [m for m in sys.modules if m.startswith(('forecast.fit', 'forecast.workflows', 'pymc', 'nutpie'))]; "
        "sys.exit(f'imported: {bad}' if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_support_over_time_comes_from_the_runs_history_json(hostile):
    _, report, md, _ = hostile
    h = report.history
    assert h.available and h.every == 4 and not h.converged
    assert [r.source for r in h.rows] == ["prior", "fit", "run"]
    assert h.rows[1].failed and "**FAILED**" in md.split("## 3.")[1].split("## 4.")[0]


def test_sensitivity_and_prior_predictive_sections_are_drawn_from_their_json(hostile, tmp_path):
    run, report, md, html = hostile
    s, pp = report.sensitivity, report.prior_predictive
    assert s.available and s.stable and s.leader == "shift" and [r.id for r in s.ranges] == ["steady", "shift"]
    assert s.figures == ["sensitivity-tornado", "sensitivity-prior-odds"] and s.warning
    assert pp.available and [x.id for x in pp.hypotheses] == ["steady", "shift"] and pp.pairs[0].indistinguishable
    assert pp.figure == "prior-predictive"
    assert (
        md.index("## 6. Prior-sensitivity grid")
        < md.index("## 11. The priors: as stated, and what they imply")
        < md.index("## 12.")
    )
    assert '<section id="sensitivity">' in html and '<section id="priors">' in html
    # The plots themselves, drawn from the stored values.
    drawn = build_report(StoredRun.open(run), renderer=PixelRenderer(("sensitivity-tornado", "prior-predictive")))
    for name in ("sensitivity-tornado", "prior-predictive"):
        png = drawn.figures[name].png
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") > 300


def test_analyses_of_another_shape_are_notes_not_errors(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(GOLDEN, run)
    (run / "sensitivity.json").write_text(json.dumps({"schema_version": 1, "hypotheses": []}), encoding="utf-8")
    (run / "prior_predictive.json").write_text(json.dumps({"schema_version": 99}), encoding="utf-8")
    (run / "history.json").write_text("{not json", encoding="utf-8")
    report = build_report(StoredRun.open(run), renderer=PixelRenderer())
    assert not report.sensitivity.available and "forecast sensitivity" in report.sensitivity.note
    assert not report.prior_predictive.available and not report.history.available
    notes = " ".join(report.diagnostics.notes)
    assert "prior_predictive.json" in notes and "history.json" in notes


# --- the one prior sampler ------------------------------------------------------------------------


def test_prior_intervals_come_from_the_one_prior_sampler(hostile):
    from forecast.model.predictive import prior_draws
    from forecast.reports.report.assemble import REPORT_SEED
    from forecast.settings import derive_rng
    from forecast.spec.study import load_study

    run, report, _, _ = hostile
    study = load_study(run / "study.toml")
    h = study.hypotheses[1]
    posterior = StoredRun.open(run).open_posterior(h.id)
    n = posterior.sizes["chain"] * posterior.sizes["draw"]
    tilt = prior_draws(study, h, n, derive_rng(REPORT_SEED, 1, 7))["tilt"][:, 0]
    row = report.learned[1].hyperparameters[0]
    assert (row.prior_median, row.prior_low, row.prior_high) == tuple(
        float(x) for x in np.percentile(tilt, [50, 3, 97])
    )


# --- leftovers of a killed report -------------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_of_a_killed_report_are_swept_by_the_next_one(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(GOLDEN, run)
    dead, alive = _dead_pid(), os.getppid()
    swept = [f".report.html.tmp-{dead}", f".report.md.tmp-{dead}", f".report.json.tmp-{dead}"]
    kept = [
        f".report.html.tmp-{alive}",  # a report still writing
        f"report.html.tmp-{dead}",  # not a name the atomic writer makes
        f".report.html.tmp-{dead}x",
        ".report.html.tmp-",
    ]
    stored = StoredRun.open(run)
    for name in swept + kept:
        (run / name).write_text("partial", encoding="utf-8")
    (run / f".report.md.tmp-{dead}.d").mkdir()
    result = write_report(stored, formats=("json",), renderer=PixelRenderer())
    assert result.outputs == {"json": str(run / "report.json")}
    assert [n for n in swept if (run / n).exists()] == []
    assert [n for n in kept if not (run / n).exists()] == [] and (run / f".report.md.tmp-{dead}.d").is_dir()


def test_unknown_figures_in_the_summary_are_shown_as_unknown(tmp_path):
    """Strict JSON stores a figure that could not be estimated as null; the report says "—"."""
    run = tmp_path / "run"
    shutil.copytree(GOLDEN, run)
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    first, second = summary["hypotheses"]
    first["log_marginal_likelihood"] = first["posterior_probability_se"] = None
    second["log_marginal_likelihood_se"] = second["diagnostics"]["rhat_max"] = None
    (run / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    report = build_report(StoredRun.open(run), renderer=PixelRenderer())
    rows = {r.id: r for r in report.headline.rows}
    assert rows[first["id"]].bayes_factor_text.startswith("unknown") and np.isnan(rows[second["id"]].bayes_factor)
    md, html = render_markdown(report), render_html(report)
    assert "0.243 ± —" in md and "unknown vs" in html
    assert json.loads(render_json(report))["headline"]["rows"][0]["log_bayes_factor"] is None


# --- the brief: summary, contents, what is missing, paths, figure files ---------------------------


def _judgement_and_robustness(summary: dict) -> dict:
    """summary.json as `forecast update` writes it with robustness: the judgement and robustness objects."""
    variants = [
        {
            "id": "base",
            "kind": "base",
            "hypothesis": None,
            "target": "",
            "joint": False,
            "posterior_probabilities": {"steady": 0.23, "shift": 0.77},
            "leader": "shift",
            "description": "the stated priors and evidence",
        },
        {
            "id": "steady/tilt/wider1.5",
            "kind": "prior",
            "hypothesis": "steady",
            "target": "tilt",
            "joint": False,
            "posterior_probabilities": {"steady": 0.35, "shift": 0.65},
            "leader": "shift",
            "description": "the tilt priors of 'Steady' are 1.5x wider",
        },
        {
            "id": "steady/all/wider1.5",
            "kind": "prior",
            "hypothesis": "steady",
            "target": "all",
            "joint": True,
            "posterior_probabilities": {"steady": 0.55, "shift": 0.45},
            "leader": "steady",
            "description": "every prior of 'Steady' is 1.5x wider",
        },
    ]
    summary["judgement"] = {
        "leader": "shift",
        "posterior_probability": 0.77,
        "likelihood": "likely",
        "runner_up": "steady",
        "bayes_factor": 3.3,
        "evidence": "moderate",
        "confidence": "low",
        "confidence_reasons": ["the leader changes under reasonable priors"],
    }
    summary["robustness"] = {
        "leader": "shift",
        "leader_stable": False,
        "n_variants": 2,
        "class": {"source": "defaults", "shifts": [0.5], "scales": [1.5], "joint": True, "n_evidence_variants": 0},
        "ranges": {
            "steady": {
                "base": 0.23,
                "min": 0.23,
                "max": 0.55,
                "min_variant": "base",
                "max_variant": "steady/all/wider1.5",
            },
            "shift": {
                "base": 0.77,
                "min": 0.45,
                "max": 0.77,
                "min_variant": "steady/all/wider1.5",
                "max_variant": "base",
            },
        },
        "flips": [{"id": "steady/all/wider1.5", "new_leader": "steady"}],
        "prior_odds_text": "'Shift' leads while its prior probability is above 0.23.",
        "refitted": [],
        "variants": variants,
    }
    return summary


def forecasts_json() -> dict:
    row = {
        "group": "east",
        "domain": "defence",
        "quarter": "2022Q1",
        "horizon": 1,
        "mean": 0.3,
        "interval_50": [0.2, 0.4],
        "interval_90": [0.1, 0.5],
        "expected_events": 1.1,
    }
    return {
        "schema_version": 1,
        "issued": "2026-12-07T06:00:00+00:00",
        "data_cutoff": "2021-12-15",
        "origin": "2021Q4",
        "forecasts": [row],
        "questions": [
            {
                "id": "q1",
                "text": "Will East cooperate in defence in 2022Q1?",
                "quarter": "2022Q1",
                "probability": 0.31,
                "resolved": False,
            }
        ],
        "milestones": {
            "quarter": "2022Q1",
            "leading": ["shift", "steady"],
            "cells": [
                {
                    "group": "east",
                    "domain": "defence",
                    "quarter": "2022Q1",
                    "expected_events": 1.06,
                    "expected_abs_log_bf_change": 0.07,
                    "log_bf_if_cooperative": -0.41,
                    "log_bf_if_conflictual": 0.05,
                }
            ],
        },
        "warnings": ["Stale data: forecast quarter 2022Q1 is already over."],
    }


def attribution() -> dict:
    event = {
        "id": "G003",
        "event_date": "2020-03-12",
        "report_date": "2020-03-12",
        "counterpart": "russia",
        "domain": "defence",
        "outcome": "conflictual",
        "description": "Golden event 3",
        "weight": 1.0,
        "contribution": 0.18,
        "interval": "2019Q4..2020Q4",
    }
    return {
        "hypotheses": ["shift", "steady"],
        "log_bf": 1.2,
        "log_bf_se": 0.06,
        "attributed_change": 1.2,
        "unattributed_change": 0.0,
        "n_unattributed": 0,
        "intervals": [
            {
                "start": "2019Q4",
                "end": "2020Q4",
                "start_date": "2019-12-31",
                "end_date": "2020-12-31",
                "new_observations": 20,
                "change": 0.8,
                "change_se": 0.05,
                "attributed": True,
            },
            {
                "start": "2020Q4",
                "end": "2021Q4",
                "start_date": "2020-12-31",
                "end_date": "2021-12-31",
                "new_observations": 28,
                "change": 0.4,
                "change_se": 0.05,
                "attributed": True,
            },
        ],
        "top_events": [event],
    }


@pytest.fixture(scope="module")
def golden_copy(tmp_path_factory):
    """The golden run in a runs directory, reported as it is (nothing but the update's files)."""
    root = tmp_path_factory.mktemp("briefruns")
    run = root / "golden" / "20261207T051613Z"
    shutil.copytree(GOLDEN, run)
    result = write_report(StoredRun.open(run), renderer=PixelRenderer())
    return run, result


def test_no_format_shows_an_absolute_local_path(golden_copy):
    run, result = golden_copy
    repo = str(Path(__file__).resolve().parents[1])
    for fmt in ("html", "md", "json"):
        text = (run / f"report.{fmt}").read_text(encoding="utf-8")
        assert str(run.parent.parent) not in text and repo not in text, fmt
        assert "/tmp/" not in text and os.path.expanduser("~") + "/" not in text, fmt
    assert "golden/20261207T051613Z" in (run / "report.html").read_text(encoding="utf-8")  # relative to the runs dir


def test_markdown_writes_its_figures_as_png_files_beside_it(golden_copy, tmp_path):
    run, result = golden_copy
    md = (run / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and "base64" not in md
    assert len(links) == len(result.report.figures)
    for link in links:
        assert link.startswith("report_files/") and (run / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "embedded.md"
    write_report(StoredRun.open(run), formats=("md",), output=out, renderer=PixelRenderer(), embed_images=True)
    assert out.read_text().count("](data:image/png;base64,") == len(result.report.figures)
    assert not (tmp_path / "embedded_files").exists()


def test_the_report_opens_with_a_summary_and_a_table_of_contents(golden_copy):
    run, result = golden_copy
    html = (run / "report.html").read_text(encoding="utf-8")
    assert html.index('<section id="summary">') < html.index('<nav id="toc"') < html.index('<section id="headline">')
    toc = html[html.index('<nav id="toc"') : html.index("</nav>")]
    targets = re.findall(r'href="#([\w-]+)"', toc)
    for t in targets:
        assert f'<section id="{t}"' in html, t
    for s in (
        "headline",
        "cooperation",
        "history",
        "evidence",
        "robustness",
        "forecasts",
        "backtest",
        "calibration",
        "fit",
        "diagnostics",
        "learned",
        "evidence-all",
    ):
        assert s in targets
    assert "@media print" in html and "#summary-only" in html
    md = (run / "report.md").read_text(encoding="utf-8")
    assert md.index("## Summary") < md.index("## Contents") < md.index("## 1. Support for each hypothesis")
    assert md.index("## 12. Diagnostics") < md.index("## Appendix A.") < md.index("## Appendix B.")


def test_what_the_run_does_not_hold_is_listed_with_the_command_that_adds_it(golden_copy):
    run, result = golden_copy
    missing = {m.section: m.command for m in result.report.missing}
    assert set(missing) == {
        "robustness",
        "history",
        "evidence",
        "forecasts",
        "backtest",
        "calibration",
        "sensitivity",
        "priors",
    }
    assert missing["history"].startswith("forecast history") and missing["forecasts"] == "forecast predict"
    html = (run / "report.html").read_text(encoding="utf-8")
    table = html[html.index('id="missing-table"') :].split("</table>")[0]
    for command in missing.values():
        assert command in table


def test_the_summary_says_the_answer_in_words_its_robustness_what_moved_it_and_what_to_watch(tmp_path):
    run = tmp_path / "golden" / "20261207T051613Z"
    shutil.copytree(GOLDEN, run)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps(_judgement_and_robustness(summary)))
    (run / "forecasts.json").write_text(json.dumps(forecasts_json()))
    history = history_json()
    history["attribution"] = attribution()
    (run / "history.json").write_text(json.dumps(history))
    result = write_report(StoredRun.open(run), formats=("html", "json"), renderer=PixelRenderer())
    r = result.report
    s = r.summary
    assert s.answer.startswith("Most probable answer: 'Shift', likely (0.77)") and s.confidence == "low"
    assert s.robust is False and s.robustness.startswith("Not robust") and "'Steady' leads (0.55)" in s.robustness
    assert any("G003" in x or "Golden event 3" in x for x in s.moved)
    assert s.watch and "East / Defence, 2022Q1" == s.watch[0].what and "favours 'Steady'" in s.watch[0].text
    assert [q.id for q in s.questions] == ["q1"] and s.questions[0].probability == pytest.approx(0.31)
    assert s.warnings and "Stale data" in s.warnings[0]
    assert r.robustness.available and r.robustness.figure == "robustness-tornado"
    assert "Red dashed line" in r.robustness.reference_lines
    assert r.forecasts.available and r.forecasts.rows[0].what == "East / Defence"
    assert {m.section for m in r.missing} == {"evidence", "backtest", "calibration", "sensitivity", "priors"}
    html = (run / "report.html").read_text(encoding="utf-8")
    summary_html = html[html.index('<section id="summary">') :].split("</section>")[0]
    for text in ("Most probable answer", "Not robust", "Golden event 3", "East / Defence", "Will East cooperate"):
        assert text in summary_html
    assert "tornado" in html[html.index('<section id="robustness">') :].split("</section>")[0]
    c = r.cooperation
    assert c.now == "2021Q4" and len(c.rows) == 4
    assert all(0 <= x.now_low <= x.now_median <= x.now_high <= 1 for x in c.rows)


def test_pdf_without_chromium_says_so_and_exits_2(golden_copy, monkeypatch):
    from click.testing import CliRunner

    from forecast.cli import main
    from forecast.reports.report import render

    monkeypatch.setattr(render.shutil, "which", lambda _name: None)
    run, _ = golden_copy
    result = CliRunner().invoke(main, ["report", str(run), "--format", "pdf", "-q"])
    assert result.exit_code == 2
    assert "headless Chromium" in result.stderr and "not installed" in result.stderr


def test_forecasts_that_are_over_by_today_are_said_to_be_stale_even_without_predicts_warning():
    import datetime as dt

    from forecast.reports.report.sections import _stale

    old = {**forecasts_json(), "warnings": [], "quarters": ["2022Q1", "2022Q2"]}
    (warning,) = _stale(old, dt.date(2022, 5, 1))
    assert "2022Q1" in warning and "2022Q2" not in warning and "q1" in warning and "2022-05-01" in warning
    assert _stale(old, dt.date(2021, 12, 31)) == []
    assert _stale(forecasts_json()) == ["Stale data: forecast quarter 2022Q1 is already over."]  # predict's own


# --- the priors in the analyst's terms, and what print leaves out ----------------------------------

SAYS = "East gets a minority of the cooperation"
# Shift's tilt for East, Normal(mu=-1, sigma=0.75) in the golden study, restated as the analyst's
# statement it answers: 90% sure that the share with East lies in expit(-1 -/+ 1.645 * 0.75). The
# fitted prior is the same distribution (within PreliZ's fit), so the stored draws still fit it.
PLAIN_EAST = '"east" = { "dist" = "Normal", "kwargs" = { "mu" = -1.0, "sigma" = 0.75 } }'
STATED_EAST = f'"east" = {{ "share_between" = [0.09677, 0.55815], "mass" = 0.9, "says" = "{SAYS}" }}'


def statement_run(directory: Path) -> Path:
    run = directory / "golden" / "20261207T051613Z"
    shutil.copytree(GOLDEN, run)
    study = (run / "study.toml").read_text(encoding="utf-8")
    assert study.count(PLAIN_EAST) == 1
    (run / "study.toml").write_text(study.replace(PLAIN_EAST, STATED_EAST), encoding="utf-8")
    return run


def test_the_report_shows_each_stated_prior_beside_the_distribution_it_was_fitted_to(tmp_path):
    run = statement_run(tmp_path)
    fitted = StoredRun.open(run).stored_study().hypothesis("shift").priors[("tilt", "east")]
    assert fitted.dist == "Normal" and np.allclose(fitted.values(), (-1.0, 0.75), atol=1e-3)
    report = build_report(StoredRun.open(run), renderer=PixelRenderer())
    steady, shift = report.priors.hypotheses
    assert report.priors.n_statements == 1 and report.priors.parameters == ["tilt", "spread", "trend", "volatility"]
    assert steady.n_statements == 0 and {r.stated_as for r in steady.rows} == {"distribution"}
    assert shift.n_statements == 1 and len(shift.rows) == 8  # 4 hyperparameters x 2 groups
    (row,) = [r for r in shift.rows if r.stated_as == "statement"]
    assert (row.parameter, row.group, row.says, row.fitted) == ("tilt", "East", SAYS, fitted.describe())
    assert row.statement.startswith("90% sure that 10% to 56% of interactions with 'east' are cooperative")
    assert SAYS not in row.statement  # the analyst's words are shown on their own
    assert row.model_interval == pytest.approx([-2.2336, 0.2336], abs=1e-3) and row.mass == 0.9
    assert row.fitted_mass == pytest.approx(0.9, abs=0.01)
    plain = next(r for r in shift.rows if (r.parameter, r.group) == ("trend", "East"))
    assert (plain.stated_as, plain.fitted, plain.statement) == ("distribution", "Normal(mu=-0.3, sigma=0.2)", None)
    assert "1 of the 16 priors is stated in the analyst's terms" in report.priors.note

    html = render_html(report)
    priors = html[html.index('<section id="priors">') :].split("</section>")[0]
    assert "11. The priors: as stated, and what they imply" in priors
    (cell,) = re.findall(r'<td class="prior-statement">(.*?)</td>', priors, re.S)
    assert f'<q class="says">{SAYS}</q>' in cell and "90% sure that 10% to 56%" in cell
    assert f"<code>{fitted.describe()}</code>" in cell and "puts 90.0% in [-2.23, 0.23]" in cell
    assert "priors stated as distributions" in priors  # Steady's heading
    assert "1 of 8 priors stated in the analyst's terms" in priors  # Shift's heading
    assert priors.count("stated as a distribution<") == 7  # Shift's other cells each say so
    assert '<p class="note" id="priors-missing">' in priors  # no `forecast priors` in this run: said so
    md = render_markdown(report)
    assert f'| tilt | East | "{SAYS}": 90% sure that 10% to 56%' in md
    assert "| trend | East | stated as a distribution | `Normal(mu=-0.3, sigma=0.2)` |" in md
    stored = json.loads(render_json(report))["priors"]
    assert [r["stated_as"] for r in stored["hypotheses"][1]["rows"]].count("statement") == 1
    assert stored["hypotheses"][1]["rows"][1]["says"] == SAYS


def test_the_priors_section_is_there_without_a_prior_predictive_check(golden_copy):
    run, result = golden_copy
    sp = result.report.priors
    assert sp.n_statements == 0 and [h.id for h in sp.hypotheses] == ["steady", "shift"]
    assert "stated as a distribution on the model's scale" in sp.note and "Priors in your own terms" in sp.note
    html = (run / "report.html").read_text(encoding="utf-8")
    assert html.count('<table class="priors stated-priors"') == 2
    assert "<code>Normal(mu=-1, sigma=0.75)</code>" in html


def test_print_leaves_out_the_technical_parts_and_names_them_and_where_they_are(golden_copy):
    run, _ = golden_copy
    html = (run / "report.html").read_text(encoding="utf-8")
    css = html[html.index("@media print") : html.index("</style>")]
    assert ".technical, .print-omit { display: none !important; }" in css
    assert ".print-only { display: block; }" in css and "#summary" in css
    for part in (
        '<section id="learned" class="appendix technical">',
        '<section id="evidence-all" class="appendix technical">',
        '<div class="table-box technical">\n<table id="ppc-table">',
        '<div class="technical" id="loo-calibration">',
        '<div class="technical">\n<div class="table-box">\n<table id="diagnostics-table">',
    ):
        assert part in html, part
    # Diagnostics print as a compact summary, one row per hypothesis.
    compact = html[html.index('<table class="print-only" id="diagnostics-print">') :].split("</table>")[0]
    assert compact.count("<tr>") == 1 + 2 and "passed" in compact
    # The printed note says what is left out and where it is: the HTML file it was printed from.
    note = html[html.index('id="print-omitted"') :].split("</p>")[0]
    assert "<code>report.html</code>" in note
    for what in ("Appendix A", "Appendix B", "source and Pareto k", "posterior predictive table", "manifest"):
        assert what in note, what
    # The screen shows everything: nothing above is hidden outside print.
    screen = html[: html.index("@media print")]
    assert ".technical" not in screen and ".print-only, .print-cell { display: none; }" in screen


# --- a plain study's report statistics, pinned before overdispersion was added -------------------

# The golden run's posterior predictive rows (median, low, high, p-value per hypothesis) and LOO
# predictive probabilities (sum, first event) as the report computed them before the report learnt
# overdispersed studies (pinned again on the golden run re-written for the walk's leading modes,
# by the same code): a plain study's report must draw the same numbers, draw for draw.
PINNED_PPC = {
    ("West", "Defence"): {"steady": [0.75, 0.4375, 0.9375, 1.0], "shift": [0.75, 0.4375, 0.9375, 1.0]},
    ("West", "Energy"): {"steady": [0.75, 0.49812499999999993, 1.0, 0.936], "shift": [0.75, 0.5, 1.0, 0.922]},
    ("East", "Defence"): {"steady": [0.125, 0.0, 0.3787499999999966, 0.902], "shift": [0.125, 0.0, 0.375, 0.952]},
    ("East", "Energy"): {"steady": [0.125, 0.0, 0.5, 0.9], "shift": [0.125, 0.0, 0.375, 0.924]},
}
PINNED_LOO_P = {"steady": (25.77522025249504, 0.7429043139816491), "shift": (25.550679242584735, 0.7418564856855877)}


def test_a_plain_studys_report_statistics_are_unchanged(tmp_path):
    from forecast.model.build import cell_logit_draws, draws_as_arrays
    from forecast.model.record import concentration_draws, model_record
    from forecast.reports.figures import FigureJobs
    from forecast.reports.report import statistics as S
    from forecast.reports.report.assemble import _fit_section, _headline
    from forecast.reports.report.read import load_run
    from forecast.reports.text.update import overdispersion_sentence

    run_dir = tmp_path / "golden" / "20261207T051613Z"
    shutil.copytree(GOLDEN, run_dir)
    run = load_run(StoredRun.open(run_dir))
    study = run.study
    assert not study.overdispersed
    ids = [h.id for h in study.hypotheses]
    etas = {h: cell_logit_draws(draws_as_arrays(run.posteriors[h], study), study, run.cells) for h in ids}
    phis = {h: concentration_draws(run.posteriors[h], study) for h in ids}
    assert phis == {h: None for h in ids}
    rows = {r.id: r for r in _headline(run, {h: "#000" for h in ids}).rows}
    fit = _fit_section(run, etas, {h: h for h in ids}, {h: "#000" for h in ids}, rows, FigureJobs(), phis)
    got = {
        (r.group, r.domain): {h: [v["median"], v["low"], v["high"], v["p_value"]] for h, v in r.replicated.items()}
        for r in fit.rows
    }
    assert got == PINNED_PPC
    for h, (total, first) in PINNED_LOO_P.items():
        p = S.loo_predictive_probability(etas[h], run.cells, phis[h])
        assert (float(p.sum()), float(p[0])) == (total, first)
    assert model_record(study, phis, {}) == {"overdispersion": "none"}
    assert overdispersion_sentence(model_record(study, phis, {})) is None
