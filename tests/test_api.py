"""The Python API: the README's notebook session runs as written (on a small study), and the
API's records carry the same numbers as the command line's run."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import forecast

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"


def _readme_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- BEGIN api-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert block, "README has no api-example block"
    return block.group(1)


def test_the_package_exposes_a_short_public_surface():
    assert set(forecast.__all__) >= {"load_study", "load_observations", "update", "load_run", "Run", "ForecastError"}
    assert issubclass(forecast.InputError, forecast.ForecastError)


def test_a_stored_run_opens_as_a_dataframe_and_posteriors(tmp_path):
    run = forecast.load_run(GOLDEN / "run-v1")
    table = run.to_dataframe()
    assert list(table.index) == ["steady", "shift"]
    assert table["posterior_probability"].sum() == pytest.approx(1.0)
    tree = run.posterior("shift")
    assert "posterior" in tree.children and "tilt__east" in tree["posterior"].data_vars


def test_an_unknown_hypothesis_is_an_input_error_listing_the_known_ones():
    run = forecast.load_run(GOLDEN / "run-v1")
    with pytest.raises(forecast.InputError, match="steady"):
        run.posterior("nope")


@pytest.mark.slow
def test_the_readme_notebook_session_runs_as_written(tmp_path, monkeypatch):
    # The session as written, on the golden study instead of the default one (seconds, not a minute).
    (tmp_path / "priors").mkdir()
    shutil.copy(GOLDEN / "inputs" / "golden.toml", tmp_path / "priors" / "turkey_nato.toml")
    shutil.copy(GOLDEN / "inputs" / "events.csv", tmp_path / "priors" / "events.csv")
    monkeypatch.chdir(tmp_path)
    code = _readme_block().replace('tree["posterior"]["tilt__russia"]', 'tree["posterior"]["tilt__east"]')
    code = code.replace('run.posterior("hedging")', 'run.posterior("shift")')
    exec(compile(code, "README api-example", "exec"), {})
    assert (tmp_path / "reports" / "runs" / "golden" / "LATEST").is_file()
