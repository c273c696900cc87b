"""forecast: weigh competing hypotheses about a geopolitical question with Bayesian evidence.

The public Python API (``forecast.api``), loaded on first use so that ``import forecast`` and
``forecast --help`` stay fast: ``load_study``, ``load_observations``, ``update``, ``load_run``,
``Run``, ``SamplerSettings``, ``DEFAULT_SEED`` and the error family.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "load_study": "forecast.api",
    "load_observations": "forecast.api",
    "update": "forecast.api",
    "load_run": "forecast.api",
    "Run": "forecast.api",
    "SamplerSettings": "forecast.settings",
    "DEFAULT_SEED": "forecast.settings",
    "ForecastError": "forecast.errors",
    "InputError": "forecast.errors",
    "StudyError": "forecast.errors",
    "ObservationError": "forecast.errors",
    "ConvergenceError": "forecast.errors",
    "RunStoreError": "forecast.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'forecast' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
