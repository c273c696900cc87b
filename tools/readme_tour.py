"""Write the README tour's output from a seeded run of the default study, so it cannot go stale.

    python tools/readme_tour.py     # runs `forecast update` twice (about a minute)

It fits the default study (priors/turkey_nato.toml, default seed) in a scratch runs directory,
twice so the compile cache is warm (the same seed then gives the same numbers; see
"Reproducibility"), and replaces the block between the tour markers in README.md with what the
second run printed (support, headline with robustness and confidence, evidence variants).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FORECAST = Path(sys.executable).with_name("forecast")
BEGIN, END = "<!-- BEGIN tour-output (tools/readme_tour.py) -->", "<!-- END tour-output -->"


def run(*args: str, runs: Path) -> str:
    cmd = [str(FORECAST), *args, "--runs-dir", str(runs), "-q"]
    return subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True).stdout


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        run("update", "--json", runs=runs)  # warms the compile cache
        table = run("update", runs=runs)
    table = re.sub(r"Run written to .*", "Run written to reports/runs/turkey_nato/<UTC time>", table).rstrip()
    block = "```\n$ forecast update\n" + table + "\n```"
    text = README.read_text(encoding="utf-8")
    start, stop = text.index(BEGIN), text.index(END)
    README.write_text(text[: start + len(BEGIN)] + "\n" + block + "\n" + text[stop:], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
