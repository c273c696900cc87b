"""Command line: each command parses its options, calls one workflow, renders, maps errors.

``forecast.cli.app`` holds the group and the shared plumbing, ``forecast.cli.options`` the option
bundles, ``forecast.cli.commands`` one module per command. Workflows are imported inside the
command bodies so that ``forecast --help`` does not import PyMC (about 2 s).
"""

from forecast.cli.app import main
from forecast.cli.commands import (  # noqa: F401  (importing registers each command)
    backtest,
    brief,
    calibrate,
    constraints,
    evidence,
    history,
    import_,
    ingest,
    init,
    predict,
    priors,
    report,
    score,
    sensitivity,
    simulate,
    update,
    validate,
)

__all__ = ["main"]
