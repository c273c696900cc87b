"""`forecast brief`: the whole analysis on one run, and its report in headless Chromium.

The slow test runs the brief on the golden inputs (2 hypotheses, 48 observations; 4 x 1000 draws,
the golden run's own settings) and opens its report in Debian's `chromium`: every section
present, no console message, nothing wider than the window at 1280 px, every figure decoded,
the summary alone on one printed page, the whole on few (PRINTED_PAGES_MAX). Skipped, with the
reason, where chromium is absent.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from forecast.cli import main
from forecast.errors import InputError
from forecast.workflows.brief import STEPS, Clock, parse_skip

INPUTS = Path(__file__).resolve().parent / "golden" / "inputs"
SECTIONS = (
    "summary",
    "missing",
    "headline",
    "cooperation",
    "history",
    "evidence",
    "robustness",
    "sensitivity",
    "forecasts",
    "backtest",
    "calibration",
    "fit",
    "priors",
    "diagnostics",
    "learned",
    "evidence-all",
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--no-pdf-header-footer",
    "--enable-logging=stderr",
    "--v=0",
)
NO_CHROMIUM = "chromium is not installed (Debian's `chromium` package; .ci/run installs it)"
# The whole brief of the golden study on A4: print leaves out the technical parts (measured: 6
# pages; 16 before; the default study's prints on 7).
PRINTED_PAGES_MAX = 6


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def pdf_pages(path: Path) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", path.read_bytes()))


# --- fast ---------------------------------------------------------------------------------------


def test_skip_takes_comma_separated_step_names_and_refuses_unknown_ones():
    assert parse_skip("history, evidence") == ("history", "evidence")
    assert parse_skip(["predict", "history,predict"]) == ("predict", "history")
    assert parse_skip(None) == ()
    with pytest.raises(InputError, match="unknown step.*update, history, evidence, predict, report"):
        parse_skip("histroy")
    result = CliRunner().invoke(main, ["brief", str(INPUTS / "golden.toml"), "--skip", "nothing"])
    assert result.exit_code == 2 and "unknown step" in result.stderr


def test_time_left_scales_the_documented_costs_by_the_steps_already_timed():
    clock = Clock({"update": 1.0, "history": 1.2, "report": 0.4}, first_unit_s=10.0)
    assert clock.left(["update", "history", "report"]) == pytest.approx(26.0)  # the first guess
    clock.finished("update", 5.0)  # the update took half the guess: so will the rest
    assert clock.left(["history", "report"]) == pytest.approx(8.0)
    assert set(STEPS) == {"update", "history", "evidence", "predict", "report"}


# --- slow: the brief of the golden study, in Chromium ---------------------------------------------


@pytest.fixture(scope="module")
def golden_brief(tmp_path_factory):
    d = tmp_path_factory.mktemp("brief")
    inputs = shutil.copytree(INPUTS, d / "inputs")
    result = CliRunner().invoke(
        main,
        ["brief", str(inputs / "golden.toml"), "--runs-dir", str(d / "runs"), "--draws", "1000", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return d, json.loads(result.stdout), result.stderr


@pytest.mark.slow
def test_brief_runs_every_step_on_one_run_and_says_the_time_left(golden_brief):
    d, out, stderr = golden_brief
    run = Path(out["run_dir"])
    assert [s["name"] for s in out["steps"]] == list(STEPS)
    assert all(s["status"] == "done" for s in out["steps"]), out["steps"]
    for name in ("history.json", "evidence.json", "forecasts.json", "report.html", "report.md", "report.json"):
        assert str(run / name) in out["written"], name
    assert out["headline"] and out["failed"] == []
    assert [p.name for p in run.parent.iterdir() if p.is_dir()] == [run.name]  # one run: no step wrote another
    assert re.search(r"brief \[2/5\] history: about \d+ s; about \d+ s left in all", stderr)
    history = json.loads((run / "history.json").read_text())
    assert history["every"] == 4  # yearly by default
    summary = json.loads((run / "summary.json").read_text())
    # The report renders the run's own update: its conclusion, its robustness.
    report = json.loads((run / "report.json").read_text())
    assert report["headline"]["conclusion"] == summary["conclusion"]
    assert report["missing"] == [
        m for m in report["missing"] if m["section"] in ("backtest", "calibration", "sensitivity", "priors")
    ]


@pytest.mark.slow
@pytest.mark.skipif(chromium_binary() is None, reason=NO_CHROMIUM)
def test_the_briefs_report_opens_in_chromium_complete_and_within_the_page(golden_brief, tmp_path):
    d, out, _ = golden_brief
    page = Path(out["run_dir"]) / "report.html"
    url = page.resolve().as_uri()
    done = chromium(["--window-size=1280,2000", "--dump-dom", url], tmp_path / "profile-dom")
    dom = done.stdout
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], "the page logged to the console:\n" + "\n".join(console)
    order = [dom.index(f'<section id="{s}"') for s in SECTIONS]
    assert order == sorted(order)
    assert 'id="toc"' in dom
    n_images = len(re.findall(r"<img ", dom))
    assert n_images >= 10 and f'data-images="{n_images}"' in dom and 'data-images-broken="0"' in dom
    # Nothing wider than the window (the page's own load-event check; tables scroll in their box).
    assert 'data-overflow=""' in dom, re.search(r'data-overflow="[^"]*"', dom).group(0)
    width = int(re.search(r'data-page-width="(\d+)"', dom).group(1))
    assert width <= 1280
    # The summary alone prints on one page; the whole brief on few.
    summary = tmp_path / "summary.pdf"
    chromium([f"--print-to-pdf={summary}", url + "#summary-only"], tmp_path / "profile-summary")
    assert pdf_pages(summary) == 1
    whole = tmp_path / "whole.pdf"
    chromium([f"--print-to-pdf={whole}", url], tmp_path / "profile-whole")
    assert 1 < pdf_pages(whole) <= PRINTED_PAGES_MAX


@pytest.mark.slow
def test_the_briefs_figures_are_print_quality_files_without_local_paths(golden_brief):
    d, out, _ = golden_brief
    run = Path(out["run_dir"])
    for name in ("report.html", "report.md", "report.json"):
        text = (run / name).read_text(encoding="utf-8")
        assert str(d) not in text and "/tmp/" not in text, name
    pngs = sorted((run / "report_files").glob("*.png"))
    assert len(pngs) >= 10
    for png in pngs:
        data = png.read_bytes()
        i = data.index(b"pHYs")  # pixels per metre, as matplotlib writes the dpi
        assert int.from_bytes(data[i + 4 : i + 8], "big") >= 200 / 0.0254 - 1, png.name
