"""The report and the brief of a run that also holds constraint hypotheses (constraints.json).

Every test starts from a copy of the golden run (tests/golden/run-v1) with the constraint block of
tests/fixtures/report_constraints/golden_constraints.toml appended to its study copy and the real
`forecast constraints` record of that study (plus the "agreement" key `forecast update` writes)
as its constraints.json. Nothing samples: figures come from the stand-in renderer of
test_report_sections. The two comparisons must stay apart (never one table), the headline must
say when they disagree and be worded no stronger than the weaker, a run with constraint
hypotheses alone must render, and hostile text must stay text.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
from helpers import copy_golden
from test_report_sections import HOSTILE, IMG, MD_IMAGE, MD_LINK, PixelRenderer

from forecast.reports.report import build_report, write_report
from forecast.reports.report.constraints import constraint_section
from forecast.reports.report.render import render_html, render_json, render_markdown
from forecast.runs.stored import StoredRun
from forecast.stats.wording import DISAGREE_REASON, Side, two_comparisons
from forecast.workflows.brief import headline_with_agreement, run_brief

GOLDEN = Path(__file__).resolve().parent / "golden" / "run-v1"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "report_constraints"
BLOCK = (FIXTURES / "golden_constraints.toml").read_text(encoding="utf-8")
DISAGREE = "The two comparisons disagree: 'Shift' (stated as priors) leads, but 'East warms' (stated as constraints)."

# summary.json's judgement of a run with robustness (as `forecast update` writes it): strong and robust.
STRONG = {
    "leader": "shift",
    "posterior_probability": 0.97,
    "likelihood": "almost certain",
    "runner_up": "steady",
    "bayes_factor": 40.0,
    "log_bayes_factor": 3.69,
    "log_bayes_factor_se": 0.05,
    "evidence": "very strong",
    "mc_error_can_flip": False,
    "loo": "agrees",
    "loo_best": "shift",
    "robust": True,
    "leader_range": [0.95, 0.98],
    "confidence": "high",
    "confidence_reasons": [],
}


def record() -> dict:
    return json.loads((FIXTURES / "constraints.json").read_text(encoding="utf-8"))


def constraint_run(directory: Path, data: dict | None = None, *, judgement: dict | None = None) -> Path:
    """The golden run with constraint hypotheses: the block in its study copy, ``data`` as constraints.json."""
    run = Path(directory) / "golden" / "20261207T051613Z"
    shutil.copytree(GOLDEN, run)
    with open(run / "study.toml", "a", encoding="utf-8") as f:
        f.write("\n" + BLOCK)
    (run / "constraints.json").write_text(json.dumps(record() if data is None else data), encoding="utf-8")
    if judgement is not None:
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
        summary["judgement"] = judgement
        (run / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return run


def disagreeing() -> dict:
    data = record()
    data["agreement"] = {"agree": False, "prior_leader": "shift", "constraint_leader": "warms", "sentence": DISAGREE}
    # The constraint comparison as it would be if the East warmed: its leader is 'warms'.
    for h in data["hypotheses"]:
        h["posterior_probability"], h["posterior_probability_upper"] = {
            "cools": (0.301, 0.301),
            "warms": (0.699, 0.699),
            "neither": (0.0, 0.001),
        }[h["id"]]
        if h["id"] in ("cools", "warms"):
            h["bayes_factor"]["log_bf"] = {"cools": -0.12, "warms": 0.72}[h["id"]]
    data["leader"] = "warms"
    for r in data["robustness"]:
        r["probabilities"] = {"cools": 0.31, "warms": 0.69, "neither": 0.0}
    return data


def report_study(directory: Path):
    """The study copy of a constraint run (its groups, slots and encompassing prior)."""
    return StoredRun.open(constraint_run(directory)).stored_study()


def report_of(run: Path):
    report = build_report(StoredRun.open(run), renderer=PixelRenderer())
    return report, render_html(report), render_markdown(report), json.loads(render_json(report))


def part(html: str, start: str, end: str = "</section>") -> str:
    return html[html.index(start) :].split(end)[0]


@pytest.fixture(scope="module")
def agreeing(tmp_path_factory):
    return report_of(constraint_run(tmp_path_factory.mktemp("agree")))


@pytest.fixture(scope="module")
def disagreeing_report(tmp_path_factory):
    return report_of(constraint_run(tmp_path_factory.mktemp("disagree"), disagreeing()))


# --- both comparisons, kept apart ------------------------------------------------------------------


def test_the_summary_shows_both_comparisons_each_with_its_robustness_and_the_agreement(agreeing):
    report, html, md, data = agreeing
    s = report.summary
    assert [b.kind for b in s.comparisons] == ["priors", "constraints"]
    priors, constraints = s.comparisons
    assert (priors.leader, constraints.leader) == ("Shift", "East cools")
    assert constraints.probability == pytest.approx(0.699, abs=1e-3)
    assert constraints.robustness.startswith("Robust: 'East cools' leads") and "×1.5 wider" in constraints.robustness
    assert "÷1.5 narrower" in constraints.robustness and "(0.68 to 0.70)" in constraints.robustness
    assert priors.robustness.startswith("Not evaluated")  # the golden run holds no robustness: said so
    assert s.agree is True and s.agreement == record()["agreement"]["sentence"]
    summary = part(html, '<section id="summary">')
    for kind, leader in (("priors", "Shift"), ("constraints", "East cools")):
        box = part(summary, f'id="comparison-{kind}"', '<div class="comparison"' if kind == "priors" else "</div>")
        assert f"<strong>{leader}</strong> leads" in box and "How robust." in box and "Confidence" in box
    assert '<p class="note" id="agreement">' in summary
    assert "**Hypotheses stated as sets of priors.** Shift leads: 0.757" in md
    assert "**The claims stated as constraints on one model.** East cools leads: 0.699" in md
    assert data["summary"]["comparisons"][1]["leader"] == "East cools"


def test_the_two_comparisons_are_never_merged_into_one_table(agreeing):
    report, html, md, _ = agreeing
    support = part(html, '<table id="support-table">', "</table>")
    constraints = part(html, '<table id="constraints-table">', "</table>")
    for label in ("East cools", "East warms", "Neither"):
        assert label not in support
    for label in ("Steady", "Shift"):
        assert label not in constraints
    assert html.index('<section id="headline">') < html.index('<section id="constraints">')
    assert html.index('<section id="constraints">') < html.index('<section id="cooperation">')
    tables = [t for t in md.split("\n\n") if t.startswith("| hypothesis |")]
    assert not any("East cools" in t and "Steady" in t for t in tables)
    assert "1b. Constraint hypotheses" in part(html, '<nav id="toc"', "</nav>")


def test_section_1b_lists_each_hypothesis_with_masses_bayes_factor_error_and_probability(agreeing):
    report, html, md, data = agreeing
    c = report.constraints
    assert c.available and [r.id for r in c.rows] == ["cools", "warms", "neither"]
    cools = c.rows[0]
    assert cools.leader and cools.claim == "Cooperation with the East falls and stays below the West's."
    assert cools.constraints == ["change(east, early, late) < 0", "share(east, late) < share(west, late)"]
    assert cools.prior_mass == "0.27 ± 0.0022" and cools.posterior_mass == "0.556 ± 0.0064"
    assert cools.bayes_factor_text == "2.06" and cools.log_bayes_factor_se == pytest.approx(0.0142, abs=1e-3)
    assert cools.posterior_text == "0.699 ± 0.004" and cools.scaled == pytest.approx([0.6884, 0.6825])
    table = part(html, '<table id="constraints-table">', "</table>")
    assert "<code>change(east, early, late) &lt; 0</code>" in table and "(log 0.72 ± 0.01)" in table
    assert c.factors == ["×1.5 wider", "÷1.5 narrower"] and '<table id="constraints-robustness-table">' in html
    assert "Klugkist" in part(html, '<p class="note" id="constraints-method">', "</p>")
    assert "| **East cools** | Cooperation with the East falls and stays below the West's.<br>change(east" in md
    # The encompassing prior in the analyst's terms, from the run's own study copy.
    enc = c.encompassing
    assert enc is not None and enc.n_statements == 8 and enc.rows[0].says.startswith("Anything from mostly")
    assert c.encompassing_same and "Every counterpart group has the same prior" in c.encompassing_note
    assert '<table class="priors encompassing-priors"' in html and "90% sure that 10% to 90%" in html
    assert c.prior_predictive == ["West: 0.10 / 0.50 / 0.91", "East: 0.10 / 0.51 / 0.91"]
    assert data["constraints"]["rows"][0]["id"] == "cools"


def test_a_region_without_posterior_draws_is_a_bound_never_zero_or_infinity(agreeing, tmp_path):
    report, html, md, data = agreeing
    neither = report.constraints.rows[2]
    assert neither.bayes_factor_bound == "upper" and neither.bayes_factor_text.startswith("< ")
    assert neither.posterior_text.startswith("< ") and neither.posterior_mass.startswith("< ")
    assert "(a bound: no posterior draw in the region)" in html
    for text in (html, md, json.dumps(data)):
        assert "infinity" not in text.lower() and not re.search(r"\binf\b|∞", text.lower())
    # The leader against a runner-up whose region held no draw: a lower bound, "> x".
    data = record()
    warms = next(h for h in data["hypotheses"] if h["id"] == "warms")
    warms["bayes_factor"]["bound"] = "upper"
    warms["posterior_probability"] = 0.0
    c = constraint_section(data, report_study(tmp_path))
    assert c.versus.startswith("> ") and "against 'East warms'" in c.versus
    assert c.rows[1].bayes_factor_text.startswith("< ")


def test_overlapping_hypotheses_are_flagged_with_the_advice(tmp_path):
    data = record()
    data["overlaps"] = [
        {"hypotheses": ["cools", "warms"], "prior_fraction_in_both": 0.12, "advice": "make them exclusive by ..."}
    ]
    (warning,) = constraint_section(data, report_study(tmp_path)).overlaps
    assert "'East cools' and 'East warms' overlap: 12.0% of the prior draws" in warning
    assert "not exclusive" in warning and "make them exclusive" in warning
    # Rendered as a warning of its own: test_hostile_constraint_labels_claims_and_sentences_are_escaped.


# --- the headline: says when they disagree, no stronger than the weaker -------------------------------


def test_the_headline_says_when_the_two_comparisons_disagree(disagreeing_report):
    report, html, md, data = disagreeing_report
    h, s = report.headline, report.summary
    assert h.conclusion.startswith("The two ways of stating the hypotheses disagree")
    assert "'Shift' leads (0.76)" in h.conclusion and "'East warms' leads (0.70)" in h.conclusion
    assert DISAGREE in h.conclusion and "Neither answer holds on its own: low confidence." in h.conclusion
    assert s.confidence_reasons == [DISAGREE_REASON]
    assert s.answer.startswith("No single answer: the two comparisons disagree") and s.confidence == "low"
    assert s.agree is False and s.agreement == DISAGREE
    assert "the evidence favours 'Shift'" in h.prior_conclusion  # the prior-specified one, kept
    summary = part(html, '<section id="summary">')
    assert '<p class="warning inline" id="agreement">' in summary
    assert "No single answer" in part(summary, '<p class="answer" id="answer">', "</p>")
    assert f"> **THE TWO COMPARISONS DISAGREE:** {DISAGREE}".replace("'", "'") in md
    assert "Stated as sets of priors:" in part(html, '<section id="headline">')
    assert data["headline"]["conclusion"] == h.conclusion


def test_the_headline_does_not_say_disagree_when_they_agree(agreeing):
    report, html, md, _ = agreeing
    for text in (report.headline.conclusion, report.summary.answer, report.summary.conclusion):
        assert "disagree" not in text
    assert report.headline.conclusion.startswith("Both ways of stating the hypotheses point the same way")
    assert "DISAGREE" not in md and 'class="warning inline" id="agreement"' not in html


def test_the_wording_is_capped_by_the_weaker_comparison(tmp_path):
    # Stated as priors: strong, robust, high confidence. As constraints: weak (BF 2.3), low confidence.
    report, html, *_ = report_of(constraint_run(tmp_path, judgement=STRONG))
    priors, constraints = report.summary.comparisons
    assert priors.confidence == "high" and priors.evidence.startswith("Bayes factor 40 against 'Steady'")
    assert constraints.confidence == "low" and "weak evidence" in constraints.evidence
    assert report.summary.confidence == "low" and report.summary.likelihood == "likely"  # 0.70, not 0.97's word
    assert "leans towards" in report.headline.conclusion and "strongly favours" not in report.headline.conclusion
    assert "almost certain" not in report.summary.answer


@pytest.mark.parametrize(
    ("priors", "constraints", "agree", "verb", "word", "level"),
    [
        (Side("A", 0.97, 40.0, "high"), Side("a", 0.9, 12.0, "high"), True, "favours", "very likely", "high"),
        (Side("A", 0.97, 40.0, "high"), Side("a", 0.6, 12.0, "moderate"), True, "favours", "likely", "moderate"),
        (Side("A", 0.97, 40.0, "high"), Side("a", 0.9, 2.0, "low"), True, "leans towards", "very likely", "low"),
        (
            Side("A", 0.97, 40.0, "high"),
            Side("a", 0.9, 50.0, None),
            True,
            "strongly favours",
            "very likely",
            "moderate",
        ),
        (Side("A", 0.97, 40.0, "high"), Side("b", 0.9, 50.0, "high"), False, "strongly favours", "very likely", "low"),
        (Side("A", 0.5, None, None), Side("b", 0.45, None, None), False, "leans towards", "roughly even chance", "low"),
    ],
)
def test_two_comparisons_are_worded_no_stronger_than_the_weaker(priors, constraints, agree, verb, word, level):
    both = two_comparisons(priors, constraints, agree)
    assert (both.verb, both.likelihood, both.confidence, both.agree) == (verb, word, level, agree)
    assert ("disagree" in both.sentence) is (not agree)
    assert priors.leader in both.sentence and constraints.leader in both.sentence
    if not agree:
        assert DISAGREE_REASON in both.reasons


# --- a run with constraint hypotheses alone ------------------------------------------------------------


def constraint_only_run(directory: Path, *, encompassing: bool = True) -> Path:
    """A run of a study whose hypotheses are constraints alone: no [[hypotheses]], no prior-specified fits."""
    run = constraint_run(directory)
    lines = (run / "study.toml").read_text(encoding="utf-8").splitlines(keepends=True)
    (run / "study.toml").write_text("".join(x for x in lines if not x.startswith('"hypotheses"')), encoding="utf-8")
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    summary.update(hypotheses=[], conclusion="See the constraint hypotheses.")
    (run / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (run / "loo_pointwise.csv").unlink()
    # The encompassing fit is stored like a hypothesis's; the golden 'steady' fit stands in for it
    # (the same model, so the same variables).
    posterior = run / "posterior"
    if encompassing:
        (posterior / "steady.nc").rename(posterior / "encompassing.nc")
        (posterior / "shift.nc").unlink()
    else:
        shutil.rmtree(posterior)
    return run


@pytest.mark.parametrize("encompassing", [True, False], ids=["with-encompassing-fit", "without"])
def test_a_constraint_only_run_gets_a_report_from_the_constraint_comparison_alone(tmp_path, encompassing):
    run = constraint_only_run(tmp_path, encompassing=encompassing)
    result = write_report(StoredRun.open(run), formats=("html", "md", "json"), renderer=PixelRenderer())
    r = result.report
    assert r.headline.constraint_only and r.headline.rows == [] and r.learned == []
    assert r.headline.conclusion.startswith("Through 2021-12-15, on one encompassing model the evidence leans")
    assert r.summary.answer == "Most probable answer: 'East cools', likely (0.70), with low confidence."
    assert [b.kind for b in r.summary.comparisons] == ["constraints"] and r.summary.agree is None
    assert r.constraints.available and r.constraints.leader == "cools"
    assert {m.section for m in r.missing} <= {"history", "evidence", "forecasts", "backtest", "calibration"}
    assert r.diagnostics.rows[-1].id == "encompassing" and r.diagnostics.rows[-1].converged
    html = (run / "report.html").read_text(encoding="utf-8")
    assert '<p class="note" id="constraint-only">' in html and '<table id="support-table">' not in html
    assert '<table id="constraints-table">' in html
    md = (run / "report.md").read_text(encoding="utf-8")
    assert "## 1b. Constraint hypotheses" in md and "| **East cools** |" in md
    data = json.loads((run / "report.json").read_text(encoding="utf-8"))
    assert data["constraints"]["leader"] == "cools" and data["headline"]["rows"] == []
    if encompassing:
        assert r.cooperation is not None and len(r.cooperation.rows) == 4
        assert "encompassing model's posterior draws" in r.cooperation.note
    else:
        assert r.cooperation is None and 'id="cooperation-missing"' in html


# --- what the run lacks, a damaged file, the brief ----------------------------------------------------


def test_a_constraint_study_without_constraints_json_says_what_adds_it(tmp_path):
    run = constraint_run(tmp_path)
    (run / "constraints.json").unlink()
    report, html, _, _ = report_of(run)
    assert not report.constraints.available and "`forecast update` adds it" in report.constraints.note
    assert {m.section: m.command for m in report.missing}["constraints"] == "forecast update"
    assert report.summary.comparisons == [] and 'id="constraints-missing"' in html


def test_a_constraints_json_of_another_shape_is_a_note_not_an_error(tmp_path):
    data = record()
    del data["hypotheses"][0]["bayes_factor"]
    c = constraint_section(data, report_study(tmp_path))
    assert not c.available and "could not be read (KeyError" in c.note and "`forecast update` again" in c.note


def test_the_brief_says_when_the_two_comparisons_disagree(tmp_path):
    study, runs, run = copy_golden(tmp_path)
    for path in (study, run / "study.toml"):
        with open(path, "a", encoding="utf-8") as f:
            f.write("\n" + BLOCK)
    (run / "constraints.json").write_text(json.dumps(disagreeing()), encoding="utf-8")
    result = run_brief(study, runs_root=runs, skip=("update", "history", "evidence", "predict", "report"))
    assert result.conclusion.startswith(f"The two comparisons disagree: {DISAGREE}")
    assert "Confidence: low" in result.conclusion and result.agreement["agree"] is False
    assert result.to_dict()["agreement"]["constraint_leader"] == "warms"
    agreeing = {"agree": True, "sentence": "They agree."}
    assert headline_with_agreement("The evidence favours 'Shift'.", agreeing) == "The evidence favours 'Shift'."
    assert headline_with_agreement("x", None) == "x"


# --- hostile text ---------------------------------------------------------------------------------------


def test_hostile_constraint_labels_claims_and_sentences_are_escaped(tmp_path):
    data = disagreeing()
    for h in data["hypotheses"]:
        h["label"] += " " + HOSTILE
        h["claim"] += " " + HOSTILE
        h["constraints"] = [c + " | " + HOSTILE for c in h["constraints"]]
    data["agreement"]["sentence"] = "They disagree " + HOSTILE
    data["overlaps"] = [{"hypotheses": ["cools", "warms"], "prior_fraction_in_both": 0.1, "advice": HOSTILE}]
    data["method"] += " " + HOSTILE
    report, html, md, _ = report_of(constraint_run(tmp_path, data))
    assert 'class="warning inline overlap">OVERLAP: ' in html and "> **OVERLAP:** " in md
    for raw in (IMG, MD_IMAGE, MD_LINK, "<script>", "*b*", "_i_", "`c`"):
        assert raw not in md
    assert IMG not in html and "<script>alert" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert not [h for h in re.findall(r"href=\"([^\"]*)\"", html) if not h.startswith("#")]
    # Each hostile label stays inside its table cell: escaped pipes do not split a row.
    rows = [line for line in md.splitlines() if line.startswith("| ") and "East cools" in line]
    assert rows and all(line.count(" | ") == line.replace(r"\|", "").count(" | ") for line in rows)
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    assert "<script" not in rendered and "onerror=" not in rendered.replace("onerror=alert(1)&gt;", "")
    srcs = re.findall(r"<img [^>]*src=\"([^\"]*)\"", rendered)
    assert all(src.startswith("data:image/png;base64,") for src in srcs)
    assert not [h for h in re.findall(r"<a [^>]*href=\"([^\"]*)\"", rendered) if not h.startswith("https://")]
    assert copy.deepcopy(report.summary.agreement) == "They disagree " + HOSTILE  # shown as text, unchanged


# --- the constraint hypotheses over time (history.json's "constraints") -----------------------------------


def constraint_history() -> dict:
    def point(quarter, as_of, n, new, source, cools, converged=True):
        bound = {"cools": None, "warms": None, "neither": "upper"}
        probabilities = {"cools": cools, "warms": 1 - cools, "neither": 0.0}
        return {
            "quarter": quarter,
            "as_of": as_of,
            "n_observations": n,
            "new_observations": new,
            "source": source,
            "probabilities": probabilities,
            "probabilities_se": {"cools": 0.01, "warms": 0.01, "neither": 0.0},
            "probabilities_upper": {**probabilities, "neither": 0.004},
            "log_bf": {"cools": 0.1, "warms": -0.1, "neither": -5.0},
            "log_bf_se": {"cools": 0.01, "warms": 0.01, "neither": 0.0},
            "bound": bound,
            "posterior_mass": {"cools": cools, "warms": 1 - cools, "neither": 0.0},
            "leader": "cools" if cools > 0.5 else "warms",
            "converged": converged,
        }

    return {
        "hypotheses": [
            {"id": h, "label": label, "claim": "", "constraints": [], "complement": h == "neither"}
            for h, label in (("cools", "East cools"), ("warms", "East warms"), ("neither", "Neither"))
        ],
        "prior_masses": {},
        "prior_draws": 40000,
        "seed": 1,
        "leader": "cools",
        "converged": False,
        "n_points": 3,
        "n_fitted": 1,
        "seconds": 1.0,
        "prior_mass_seconds": 0.5,
        "method": "",
        "points": [
            point("2019Q4", "2019-12-31", 0, 0, "prior", 0.333),
            point("2020Q4", "2020-12-31", 20, 20, "fit", 0.45, converged=False),
            point("2021Q4", "2021-12-31", 48, 28, "run", 0.699),
        ],
    }


def test_the_constraint_hypotheses_over_time_have_their_own_table_and_figure(tmp_path):
    from test_report_sections import history_json

    run = constraint_run(tmp_path)
    history = history_json()
    history["constraints"] = constraint_history()
    (run / "history.json").write_text(json.dumps(history), encoding="utf-8")
    report = build_report(StoredRun.open(run), renderer=PixelRenderer(draw=("constraint-support-over-time",)))
    ch = report.constraint_history
    assert ch.available and ch.labels == ["East cools", "East warms", "Neither"] and len(ch.rows) == 3
    assert ch.rows[-1].probabilities == ["0.699", "0.301", "< 0.004"] and ch.rows[-1].leader == "East cools"
    assert report.figures["constraint-support-over-time"].png[:8] == b"\x89PNG\r\n\x1a\n"
    html, md = render_html(report), render_markdown(report)
    section = part(html, '<section id="history">')
    assert '<table id="history-table">' in section and '<table id="constraint-history-table">' in section
    assert "East cools" not in part(section, '<table id="history-table">', "</table>")  # kept apart
    assert "East warms (FAILED checks)" in section
    assert (
        "### The constraint hypotheses over time" in md and "| 2021Q4 | 48 (+28) | 0.699 | 0.301 | &lt; 0.004 |" in md
    )


# --- print: the summary with both comparisons still fits on one page --------------------------------------


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (Debian's `chromium`)")
def test_the_summary_with_both_comparisons_prints_on_one_page(tmp_path):
    """A full summary (judgement, robustness, what moved it, milestones, questions, a stale-data warning)
    with both comparisons and their disagreement, printed by headless Chromium (test_brief's helpers)."""
    from test_brief import chromium, pdf_pages
    from test_report_sections import _judgement_and_robustness, attribution, forecasts_json, history_json

    run = constraint_run(tmp_path / "runs", disagreeing())
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    (run / "summary.json").write_text(json.dumps(_judgement_and_robustness(summary)), encoding="utf-8")
    (run / "forecasts.json").write_text(json.dumps(forecasts_json()), encoding="utf-8")
    history = history_json()
    history["attribution"] = attribution()
    (run / "history.json").write_text(json.dumps(history), encoding="utf-8")
    result = write_report(StoredRun.open(run), formats=("html",), renderer=PixelRenderer())
    s = result.report.summary
    assert len(s.comparisons) == 2 and s.agree is False and s.moved and s.watch and s.questions and s.warnings
    page = run / "report.html"
    pdf = tmp_path / "summary.pdf"
    chromium([f"--print-to-pdf={pdf}", page.resolve().as_uri() + "#summary-only"], tmp_path / "profile")
    assert pdf_pages(pdf) == 1


def test_forecast_brief_prints_the_reports_headline_of_both_comparisons(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from forecast.cli import main
    from forecast.reports.report import assemble

    class Pixels:  # the stand-in renderer in place of the worker pool: nothing is drawn
        def __init__(self, workers=None):
            pass

        def __enter__(self):
            return PixelRenderer()

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(assemble, "FigureRenderer", Pixels)
    study, runs, run = copy_golden(tmp_path)
    for path in (study, run / "study.toml"):
        with open(path, "a", encoding="utf-8") as f:
            f.write("\n" + BLOCK)
    (run / "constraints.json").write_text(json.dumps(disagreeing()), encoding="utf-8")
    args = ["brief", str(study), "--runs-dir", str(runs), "--skip", "update,history,evidence,predict", "-q"]
    out = CliRunner().invoke(main, [*args, "--format", "json", "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["headline"].startswith("The two ways of stating the hypotheses disagree")
    assert data["agreement"]["agree"] is False
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    assert report["headline"]["conclusion"] == data["headline"]
    text = CliRunner().invoke(main, [*args, "--format", "json"], catch_exceptions=False)
    assert text.stdout.startswith("The two ways of stating the hypotheses disagree")


def test_a_lead_that_holds_only_where_the_reweighting_is_unreliable_is_not_called_robust(tmp_path):
    data = record()
    data["robustness"][0].update(pareto_k=0.78, reliable=False)
    c = constraint_section(data, report_study(tmp_path))
    assert c.robust is None and c.robustness.startswith("Not shown robust: 'East cools' leads")
    assert "×1.5 wider is unreliable (Pareto k above 0.7)" in c.robustness
    assert any("reweighting is unreliable" in r for r in c.confidence_reasons)
    assert c.robustness_notes and "Pareto k 0.78 > 0.7" in c.robustness_notes[0]


# --- slow: what `forecast update` writes, reported ------------------------------------------------------


def _update(tmp_path: Path, *, prior_hypotheses: bool) -> Path:
    from forecast.fit.sampler import SamplerSettings
    from forecast.workflows.update import run_update

    study, _, _ = copy_golden(tmp_path)
    text = study.read_text(encoding="utf-8")
    if not prior_hypotheses:
        text = "".join(x for x in text.splitlines(keepends=True) if not x.startswith('"hypotheses"'))
    study.write_text(text + "\n" + BLOCK, encoding="utf-8")
    result = run_update(
        study,
        SamplerSettings(draws=500, tune=400, chains=4, seed=3),
        runs_root=tmp_path / "fresh",
        allow_unconverged=True,
    )
    return Path(result.run_dir)


@pytest.mark.slow
def test_the_report_of_an_update_with_both_kinds_of_hypotheses_shows_both_apart(tmp_path):
    run = _update(tmp_path, prior_hypotheses=True)
    assert (run / "constraints.json").is_file() and (run / "posterior" / "encompassing.nc").is_file()
    result = write_report(StoredRun.open(run), formats=("html", "md", "json"), renderer=PixelRenderer())
    r = result.report
    assert r.constraints.available and [b.kind for b in r.summary.comparisons] == ["priors", "constraints"]
    agreement = json.loads((run / "constraints.json").read_text(encoding="utf-8"))["agreement"]
    assert r.summary.agreement == agreement["sentence"] and r.summary.agree is agreement["agree"]
    if agreement["agree"] is False:  # 'shift' and 'cools' are different ids: update calls them apart
        assert "disagree" in r.headline.conclusion and r.summary.confidence == "low"
    assert any(x.id == "encompassing" for x in r.diagnostics.rows)
    html = (run / "report.html").read_text(encoding="utf-8")
    assert '<table id="support-table">' in html and '<table id="constraints-table">' in html


@pytest.mark.slow
def test_the_report_of_an_update_with_constraint_hypotheses_alone_renders(tmp_path):
    run = _update(tmp_path, prior_hypotheses=False)
    result = write_report(StoredRun.open(run), formats=("html", "md", "json"), renderer=PixelRenderer())
    r = result.report
    assert r.headline.constraint_only and r.constraints.available and r.summary.comparisons[0].kind == "constraints"
    assert r.cooperation is not None and "encompassing model" in r.cooperation.note
    assert (run / "report.md").read_text(encoding="utf-8").count("## 1b. Constraint hypotheses") == 1


def test_section_1b_says_which_observations_are_critical_to_the_constraint_comparison(tmp_path):
    from forecast.reports.report.constraints import with_evidence

    c = constraint_section(record(), report_study(tmp_path))
    assert "`forecast evidence` adds" in with_evidence(c, None).evidence
    assert "holds no constraint comparison" in with_evidence(c, {"critical": []}).evidence
    found = {
        "constraints": {
            "labels": {"cools": "East cools", "warms": "East warms", "neither": "Neither"},
            "critical": ["G003", "G017"],
            "observations": [{"id": f"G{i:03d}"} for i in range(48)],
            "groups": [{"id": "group:east", "label": "East", "max_shift": 0.31}, {"label": "West", "max_shift": 0.1}],
            "n_unreliable": 1,
        }
    }
    text = with_evidence(c, found).evidence
    assert text.startswith("2 of 48 observations are critical to the constraint comparison") and "G003, G017" in text
    assert "moves it most: East (the largest change of a probability without it: 0.31)" in text
    assert "1 estimate(s) have Pareto k above the threshold" in text
    found["constraints"]["critical"] = []
    assert "leaves 'East cools' in the lead" in with_evidence(c, found).evidence


# --- calibration.json's constraint part in section 9 ------------------------------------------


def _calibration_part(verdict: str) -> dict:
    rows = [
        {"hypothesis": h, "prior": 0.25, "mean_posterior": m, "band_low": 0.15, "band_high": 0.35, "within": True}
        for h, m in (("hedging", 0.26), ("none_of_these", 0.24))
    ]
    return {
        "n_datasets": 40,
        "calibration": {"mean_posterior": rows, "verdict": verdict},
        "design_analysis": {"picks_true": 0.86, "decisive": 0.55, "misleading": 0.005},
    }


def test_the_constraint_calibration_is_shown_apart_from_the_prior_specified_one():
    from forecast.reports.report import sections

    prior = _calibration_part("consistent with exact calibration")
    prior["calibration"]["mean_posterior"] = [dict(r, hypothesis="h1") for r in prior["calibration"]["mean_posterior"]]
    data = {**prior, "constraints": _calibration_part("constraint verdict")}
    section = sections.calibration(data, {"h1": "H one"}, {"hedging": "Pragmatic hedging", "none_of_these": "None"})
    assert section.verdict == "consistent with exact calibration"
    assert [r["hypothesis"] for r in section.rows] == ["H one", "H one"]
    assert section.constraints is not None and section.constraints.verdict == "constraint verdict"
    assert [r["hypothesis"] for r in section.constraints.rows] == ["Pragmatic hedging", "None"]


def test_a_constraint_only_calibration_fills_the_section_instead_of_an_empty_table():
    from forecast.reports.report import sections

    section = sections.calibration({"n_datasets": 40, "constraints": _calibration_part("ok")}, {}, {"hedging": "H"})
    assert section.available and section.verdict == "ok"
    assert [r["hypothesis"] for r in section.rows][0] == "H"
    assert section.constraints is None
