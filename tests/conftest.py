"""Shared test setup: the test helpers on the path, the golden run as a fixture, the layers.

Layers (README, "Development"): `pytest -m "not slow"` is the fast layer (no sampling, no model
compilation: well under a minute); tests marked `slow` fit models. Study builders live in
`tests/helpers.py` (`base_study`, `static_study`, `write_study`, `event`, `write_events`), builders
shared by a few test files in `tests/builders_*.py` (CLI arguments, likelihood cases, history
evidence, sensitivity records) and finite-difference gradients in `tests/numeric_gradients.py`;
quadrature oracles in `tests/exact.py`; the reference run directory in `tests/golden/`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:  # `from helpers import ...` whatever the rootdir and import mode
    sys.path.insert(0, str(TESTS))


@pytest.fixture
def golden_copy(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A private copy of the golden inputs and run (see ``helpers.copy_golden``)."""
    from helpers import copy_golden  # after the path is set above

    return copy_golden(tmp_path)
