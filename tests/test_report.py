"""`forecast report`: the default study's report in headless Chromium, formats, unconverged and older runs.

Every test here but the browser's own self-check needs a fit, so they are in the slow layer
(tests/test_report_sections.py covers the report of a stored run without fitting). Fits shared
by the module (MCMC kept small; model compilation dominates):
- one `forecast update` of the default study with light settings (2 chains x 200 draws, so it
  usually fails the gate: the report must be produced either way), reported ONCE in all formats;
- two updates of a tiny static study, one converged and one deliberately unconverged (tiny
  draws), both with support over time.
Chromium is Debian's `chromium` (.ci/run installs it); the browser tests are skipped, with the
reason, only where it is not installed.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import base_study, event, hypothesis, prior, write_mini

from forecast.cli import main
from forecast.cli.app import default_study
from forecast.fit.sampler import SamplerSettings
from forecast.model.build import cell_logit_draws, draws_as_arrays
from forecast.reports.figures import palette
from forecast.reports.report.assemble import _pointwise
from forecast.reports.report.read import load_run
from forecast.runs.store import POINTWISE, SUMMARY
from forecast.runs.stored import StoredRun
from forecast.workflows.update import run_update

# The keys `forecast report --json` documents (README, "Reports").
REPORT_JSON_KEYS = {
    "run_dir",
    "study",
    "question",
    "latest_observation",
    "converged",
    "outputs",
    "conclusion",
    "leader",
    "runner_up",
    "hypotheses",
    "history",
    "figures",
    "notes",
    "seconds",
    "report_schema_version",
    "sensitivity",
    "prior_predictive",
}
# The brief's order: the analyst's sections first, the technical appendix (learned) last.
SECTIONS = ("summary", "headline", "history", "evidence", "sensitivity", "fit", "priors", "diagnostics", "learned")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]
NO_CHROMIUM = "chromium is not installed (.ci/run installs Debian's chromium with apt-get; that failed here)"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def section(html: str, name: str) -> str:
    return html[html.index(f'<section id="{name}"') :].split("</section>")[0]


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_report(tmp_path_factory):
    """The default study fitted with light settings, and its report in all three formats (one build)."""
    root = tmp_path_factory.mktemp("runs")
    update = run_update(
        default_study(),
        SamplerSettings(draws=200, tune=200, chains=2, seed=3),
        runs_root=root,
        allow_unconverged=True,
    )
    run_dir = Path(update.run_dir)
    result = invoke("report", run_dir, "--json", "--quiet")
    return run_dir, update, result


def tiny_study(directory: Path) -> Path:
    study = base_study()
    study["time"] = {"step": "quarter", "start": "2020Q1", "end": "2021Q4", "components": []}
    warm = {"tilt": {"all": prior("Normal", mu=0.5, sigma=1.0)}, "spread": {"all": prior("HalfNormal", sigma=0.5)}}
    cold = {"tilt": {"all": prior("Normal", mu=-0.5, sigma=1.0)}, "spread": {"all": prior("HalfNormal", sigma=0.5)}}
    study["hypotheses"] = [hypothesis("warm", 0.5, warm), hypothesis("cold", 0.5, cold)]
    rows = [
        event(
            i,
            event_date=f"{2020 + i // 12}-{1 + i % 12:02d}-15",
            counterpart=("us", "eu", "russia")[i % 3],
            domain=("defence", "energy")[i % 2],
            outcome="cooperative" if i % 3 else "conflictual",
            intensity="2" if i % 3 else "-2",
        )
        for i in range(1, 24)
    ]
    study_path, _ = write_mini(directory, rows, study)
    return study_path


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """A tiny static study: a converged run and an unconverged one (2 chains x 100 draws), both with history."""
    d = tmp_path_factory.mktemp("tiny")
    study_path = tiny_study(d)
    good = run_update(
        study_path,
        SamplerSettings(draws=1000, tune=500, chains=4, seed=1),
        runs_root=d / "runs",
        history=True,
        history_every=4,
    )
    bad = run_update(
        study_path,
        SamplerSettings(draws=100, tune=100, chains=2, seed=1),
        runs_root=d / "bad_runs",
        allow_unconverged=True,
        history=True,
        history_every=4,
    )
    assert good.converged, "precondition: the tiny study converges with 4 x 1000 draws"
    assert not bad.converged, "precondition: 2 chains x 100 draws cannot reach ESS 400"
    return study_path, Path(good.run_dir), Path(bad.run_dir)


# --- headless Chromium -------------------------------------------------------------------------


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[str, list[str], Path]:
    """Load ``page`` headless: (DOM after the load event, console messages, screenshot path)."""
    binary = chromium_binary()
    profile = tmp_path / "chromium-profile"
    url = page.resolve().as_uri()
    dom = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp_path / "screenshot.png"
    snap = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1280,4000", url],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert snap.returncode == 0, snap.stderr[-2000:]
    # Chromium logs every console message (log, error, uncaught exception) as a CONSOLE line.
    console = [line for line in (dom.stderr + snap.stderr).splitlines() if "CONSOLE" in line]
    return dom.stdout, console, shot


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.slow
@pytest.mark.skipif(chromium_binary() is None, reason=NO_CHROMIUM)
def test_default_report_loads_in_headless_chromium(default_report, tmp_path):
    run_dir, update, result = default_report
    assert result.exit_code == (0 if update.converged else 3), result.output
    out = json.loads(result.stdout)
    page = Path(out["outputs"]["html"])
    assert page == run_dir / "report.html" and page.is_file()

    dom, console, shot = open_in_chromium(page, tmp_path)
    assert console == [], "the page logged to the console:\n" + "\n".join(console)
    width, height = png_size(shot.read_bytes())
    assert (width, height) == (1280, 4000)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one

    # The headline table, one row per hypothesis, in the DOM the browser built.
    table = re.search(r'<table id="support-table">(.*?)</table>', dom, re.S)
    assert table, "no headline table"
    assert len(re.findall(r"data-hypothesis=", table.group(1))) == 3
    for label in ("Pragmatic hedging", "Strategic realignment", "Firm NATO alignment"):
        assert label in table.group(1)
    # Every figure is present and was decoded by the browser (the page's own load-event check).
    n_images = len(re.findall(r"<img ", dom))
    assert n_images == len(out["figures"]) >= 11
    assert f'data-images="{n_images}"' in dom
    assert 'data-images-broken="0"' in dom
    order = [dom.index(f'<section id="{s}"') for s in SECTIONS]
    assert order == sorted(order)  # the sections in the order the brief reads them


@pytest.mark.skipif(chromium_binary() is None, reason=NO_CHROMIUM)
def test_the_chromium_check_catches_broken_images_and_script_errors(tmp_path):
    """The browser check must be able to fail: a broken image and an uncaught error are both reported."""
    template = Path(__file__).resolve().parents[1] / "forecast" / "reports" / "templates" / "report.html.j2"
    script = re.search(r"<script>.*?</script>", template.read_text(), re.S).group(0)
    bad = tmp_path / "bad.html"
    bad.write_text(
        f'<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA" alt="a broken figure">{script}'
        "<script>notDefined();</script></body></html>"
    )
    dom, console, _ = open_in_chromium(bad, tmp_path)
    assert 'data-images-broken="1"' in dom
    assert any("a broken figure" in line for line in console)
    assert any("Uncaught" in line for line in console)


# --- the default study's report: content and formats -------------------------------------------


@pytest.mark.slow
def test_report_json_output_follows_its_contract(default_report):
    run_dir, update, result = default_report
    out = json.loads(result.stdout)
    assert REPORT_JSON_KEYS <= set(out)
    assert out["converged"] == update.converged and ("warning" in out) == (not update.converged)
    assert out["outputs"] == {f: str(run_dir / f"report.{f}") for f in ("html", "md", "json")}
    assert [h["id"] for h in out["hypotheses"]][0] == out["leader"]
    assert sum(h["posterior_probability"] for h in out["hypotheses"]) == pytest.approx(1.0)
    assert out["history"] is None  # not computed for this run
    leader = out["hypotheses"][0]
    assert leader["bayes_factor"] >= 1 or leader["jeffreys"] == "no support"


@pytest.mark.slow
def test_html_is_self_contained_and_complete(default_report):
    run_dir, update, result = default_report
    out = json.loads(result.stdout)
    html = (run_dir / "report.html").read_text()
    assert "<script src" not in html and "<link" not in html and "http://" not in html and "https://" not in html
    assert html.count('src="data:image/png;base64,') == len(out["figures"])
    for s in SECTIONS:
        assert f'<section id="{s}"' in html
    headline = section(html, "headline")
    assert "Predictive accuracy (PSIS-LOO), not support" in headline
    assert 'id="conclusion"' in headline
    assert "forecast history" in section(html, "history")  # says how to get support over time
    assert "forecast sensitivity" in section(html, "sensitivity") and "forecast priors" in section(html, "priors")
    assert ('id="convergence-warning"' in html) == (not update.converged)
    assert "tilt__" not in html and "domain_z" not in html  # readable names, not variable names
    assert "@media print" in html


@pytest.mark.slow
def test_markdown_and_json_files_carry_the_same_content(default_report):
    run_dir, _, result = default_report
    out = json.loads(result.stdout)
    md = (run_dir / "report.md").read_text()
    assert md.startswith("# turkey\\_nato")  # Markdown-escaped
    headings = [
        "## Summary",
        "## 1. Support for each hypothesis",
        "## 1b. Constraint hypotheses",  # the default study states its claims as constraints too
        "## 3. Support over time",
        "## 4. The most diagnostic observations",
        "## 6. Prior-sensitivity grid",
        "## 10. Does the model fit?",
        "## 11. The priors: as stated, and what they imply",
        "## 12. Diagnostics",
        "## Appendix A. What each hypothesis learned",
    ]
    positions = [md.index(h) for h in headings]
    assert positions == sorted(positions)
    assert "| hypothesis | prior P | posterior P ± MCSE |" in md
    assert md.count("](report_files/") == len(out["figures"])  # PNG files beside it, not base64
    d = json.loads((run_dir / "report.json").read_text())
    assert d["kind"] == "forecast-report" and d["schema_version"] == 1
    assert [row["id"] for row in d["headline"]["rows"]][0] == d["headline"]["leader"]
    assert len(d["evidence"]["rows"]) == d["headline"]["n_observations"]  # every observation, ranked
    diffs = [abs(row["elpd_difference"]) for row in d["evidence"]["rows"]]
    assert diffs == sorted(diffs, reverse=True)  # the most diagnostic evidence first
    for f in d["figures"].values():
        width, _ = png_size(base64.b64decode(f["png_base64"]))
        assert width > 300
    assert {x["id"] for x in d["learned"]} == {"hedging", "realignment", "alignment"}
    for x in d["learned"]:
        assert len(x["hyperparameters"]) == 12 and len(x["propensities"]) == 18
    assert len(d["fit"]["rows"]) >= 15 and len(d["fit"]["calibration_figures"]) == 3
    # The prior-specified fits, and the encompassing model's fit of the constraint hypotheses.
    assert {r["id"] for r in d["diagnostics"]["rows"]} == {"hedging", "realignment", "alignment", "encompassing"}
    assert d["constraints"]["available"] and len(d["summary"]["comparisons"]) == 2
    assert d["diagnostics"]["manifest"]["seed"] == 3 and d["diagnostics"]["data_hash_matches"] is True


@pytest.mark.slow
def test_one_colour_per_hypothesis_everywhere(default_report):
    run_dir, _, _ = default_report
    d = json.loads((run_dir / "report.json").read_text())
    colours = palette(["hedging", "realignment", "alignment"])
    assert d["colours"] == colours and len(set(colours.values())) == 3
    assert {r["id"]: r["colour"] for r in d["headline"]["rows"]} == colours
    assert {x["id"]: x["colour"] for x in d["learned"]} == colours
    assert {r["id"]: r["colour"] for r in d["diagnostics"]["rows"] if r["id"] != "encompassing"} == colours
    html = (run_dir / "report.html").read_text()
    for c in colours.values():
        assert f"background: {c}" in html


def test_rendering_in_worker_processes_gives_the_same_figures():
    from forecast.reports.figures import FigureJobs, FigureRenderer, evidence_bars

    jobs = FigureJobs()
    labels, colours = {"a": "A", "b": "B"}, palette(["a", "b"])
    for k in range(3):
        jobs.add(
            f"bars-{k}",
            "t",
            "c",
            "alt",
            evidence_bars,
            ["x", "y"],
            np.array([0.5, -0.2 * k]),
            "a",
            "b",
            labels,
            colours,
        )
    with FigureRenderer(1) as here, FigureRenderer(2) as pool:
        serial, parallel = here.render(jobs), pool.render(jobs)
    assert list(serial) == ["bars-0", "bars-1", "bars-2"]
    assert all(serial[k].png == parallel[k].png for k in serial)


# --- options, other runs ----------------------------------------------------------------------


@pytest.mark.slow
def test_output_path_format_inference_and_study_file(tiny_runs, tmp_path):
    study_path, run_dir, _ = tiny_runs
    md = tmp_path / "brief.md"
    r = invoke("report", run_dir, "--output", md, "--quiet")  # the suffix picks the format
    assert r.exit_code == 0, r.output
    assert md.read_text().startswith("# mini") and not (run_dir / "report.md").exists()
    js = tmp_path / "x.out"
    r = invoke("report", study_path, "--runs-dir", run_dir.parent.parent, "--format", "json", "-o", js, "--json", "-q")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["run_dir"] == str(run_dir) and out["outputs"] == {"json": str(js)}
    assert json.loads(js.read_text())["kind"] == "forecast-report"
    r = invoke("report", run_dir, "--format", "md", "--format", "json", "--output", tmp_path / "x.md")
    assert r.exit_code == 2 and "one --format" in r.output
    r = invoke("report", run_dir, "--format", "html", "--output", tmp_path / "missing" / "x.html")
    assert r.exit_code == 2 and "does not exist" in r.stderr


@pytest.mark.slow
def test_support_over_time_is_reported_from_history_json(tiny_runs):
    _, run_dir, _ = tiny_runs
    assert (run_dir / "history.json").is_file()
    assert json.loads((run_dir / "summary.json").read_text())["history"]["every"] == 4
    r = invoke("report", run_dir, "--format", "json", "--json", "-q")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["history"]["every"] == 4 and out["history"]["computed"] is False
    d = json.loads((run_dir / "report.json").read_text())
    rows = d["history"]["rows"]
    assert d["history"]["available"] and rows[0]["source"] == "prior"
    assert [r["quarter"] for r in rows] == ["2019Q4", "2020Q1", "2021Q1", "2021Q4"]
    assert [r["source"] for r in rows] == ["prior", "fit", "fit", "run"]
    for row in rows:
        assert sum(row["probabilities"].values()) == pytest.approx(1.0)
    # The last quarter sees all the evidence: it is the run's own result, exactly.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert rows[-1]["probabilities"] == {h["id"]: h["posterior_probability"] for h in summary["hypotheses"]}
    assert d["history"]["figure"] in d["figures"]


@pytest.mark.slow
def test_report_history_computes_support_over_time_for_a_stored_run(tiny_runs, tmp_path):
    _, run_dir, _ = tiny_runs
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "history.json").unlink()
    r = invoke("report", copy, "--history", "--history-every", "8", "--format", "json", "--json", "-q")
    assert r.exit_code == 0, r.output
    assert "alias of `forecast history`" in r.stderr  # said even with -q
    out = json.loads(r.stdout)
    assert out["history"]["computed"] is True and out["history"]["every"] == 8
    stored = json.loads((copy / "history.json").read_text())
    assert [p["source"] for p in stored["points"]] == ["prior", "fit", "run"]
    assert not list(copy.glob(".*tmp*"))  # written atomically, no temporary files left


@pytest.mark.slow
def test_unconverged_run_report_says_so_everywhere_and_exits_3(tiny_runs):
    _, _, run_dir = tiny_runs
    result = invoke("report", run_dir, "--json", "--quiet")
    assert result.exit_code == 3
    out = json.loads(result.stdout)
    assert out["converged"] is False and out["warning"].startswith("UNRELIABLE")
    assert out["history"]["converged"] is False
    assert "convergence" in result.stderr
    html = (run_dir / "report.html").read_text()
    assert html.index('id="convergence-warning"') < html.index('<section id="headline">')  # at the top
    assert "FAILED" in section(html, "headline")
    assert "FAILED" in section(html, "history")
    assert section(html, "learned").count("UNRELIABLE") == 2
    assert "UNRELIABLE" in section(html, "fit") and "UNRELIABLE" in section(html, "evidence")
    assert "FAILED" in section(html, "diagnostics")
    md = (run_dir / "report.md").read_text()
    assert md.index("WARNING") < md.index("## 1. Support for each hypothesis")
    assert md.count("**FAILED**") >= 3
    assert json.loads((run_dir / "report.json").read_text())["warning"].startswith("UNRELIABLE")


def test_a_run_with_another_schema_version_is_a_clear_error(tmp_path):
    run = tmp_path / "old_run"
    run.mkdir()
    (run / SUMMARY).write_text(json.dumps({"schema_version": 0, "hypotheses": []}))
    result = invoke("report", run)
    assert result.exit_code == 2
    assert "schema" in result.stderr and "Re-run `forecast update`" in result.stderr
    assert "Traceback" not in result.output
    assert invoke("report", tmp_path / "nowhere").exit_code == 2


@pytest.mark.slow
def test_an_older_run_without_pointwise_loo_is_recomputed(tiny_runs, tmp_path):
    """Runs written before loo_pointwise.csv existed: the evidence is recomputed from the draws."""
    _, run_dir, _ = tiny_runs
    old = tmp_path / "older"
    shutil.copytree(run_dir, old)
    (old / POINTWISE).unlink()
    run = load_run(StoredRun.open(old))
    assert run.pointwise is None and any(POINTWISE in n for n in run.notes)
    etas = {
        h.id: cell_logit_draws(draws_as_arrays(run.posteriors[h.id], run.study), run.study, run.cells)
        for h in run.study.hypotheses
    }
    recomputed = _pointwise(run, etas)
    stored = load_run(StoredRun.open(run_dir)).pointwise
    for col in stored.columns[1:]:
        np.testing.assert_allclose(recomputed[col], stored[col], rtol=1e-6, atol=1e-9)
    r = invoke("report", old, "--format", "md", "-q")
    assert r.exit_code == 0 and "recomputed" in (old / "report.md").read_text()
    # A run that lacks its copies of the inputs cannot be reported, and says why.
    (old / "study.toml").unlink()
    result = invoke("report", old)
    assert result.exit_code == 2 and "older version" in result.stderr
