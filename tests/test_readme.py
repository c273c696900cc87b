"""The README's generated parts are current: the module map matches the package tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_readme_module_map_is_current():
    result = subprocess.run([sys.executable, str(REPO / "tools" / "module_map.py"), "--check"], cwd=REPO)
    assert result.returncode == 0, "README's module map is stale: run `python tools/module_map.py`"
