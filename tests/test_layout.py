"""The top-level layout the design card names is present in a checkout, before any command runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The design card's top level: where code, priors, data, results, tests and docs live.
CARD = ("forecast/", "priors/", "data/", "reports/", "tests/", "pyproject.toml", "README.md")


def _tracked() -> set[str]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return set(out.splitlines())


def test_a_fresh_checkout_has_every_top_level_entry_of_the_design_card():
    tracked = _tracked()
    tops = {p.split("/", 1)[0] + ("/" if "/" in p else "") for p in tracked}
    missing = [entry for entry in CARD if entry not in tops]
    assert not missing, f"not tracked in git, so absent from a fresh clone: {missing}"


def test_reports_holds_only_its_readme_in_git():
    tracked = [p for p in _tracked() if p.startswith("reports/")]
    assert tracked == ["reports/README.md"]


def test_what_the_commands_generate_is_ignored_by_git():
    paths = ["reports/runs/turkey_nato/LATEST", "reports/tour/support.json", "reports/bench/update.json"]
    result = subprocess.run(["git", "check-ignore", *paths], cwd=REPO, capture_output=True, text=True)
    assert sorted(result.stdout.split()) == sorted(paths)
