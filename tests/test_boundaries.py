"""Layer boundaries that a fresh process can check: the lower layers load no heavy libraries.

The import-linter contracts in pyproject.toml check forecast's own imports; these tests check
what those layers pull in from outside, in the spirit of arviz-stats' minimal environments.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("pymc", "pytensor", "nutpie", "arviz", "matplotlib", "preliz", "xarray", "pandas", "dask")


def _loaded_after(*modules: str) -> set[str]:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"print(__import__('json').dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize(
    "modules, allowed",
    [
        (
            ("forecast.spec.study", "forecast.spec.priors", "forecast.spec.elicitation", "forecast.spec.questions"),
            set(),
        ),
        (
            (
                "forecast.stats.loo",
                "forecast.stats.psis",
                "forecast.stats.bridge",
                "forecast.stats.convergence",
                "forecast.stats.scoring",
            ),
            set(),
        ),
        (("forecast.data.observations", "forecast.data.cells"), {"pandas"}),
        (("forecast",), set()),
        (("forecast.cli",), set()),
    ],
    ids=["spec", "stats", "data", "package", "cli"],
)
def test_a_layer_loads_no_library_above_its_station(modules, allowed):
    assert _loaded_after(*modules) <= allowed
