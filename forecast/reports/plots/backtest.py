"""The backtest's reliability diagram, from the calibration values stored in ``backtest.json``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from forecast.reports.figures import RC, png_bytes, pyplot

# Forecasters drawn, with their line style and legend label (hypotheses are not: the model
# average stands for them).
SERIES = (("bma", "o-", "model average"), ("base_rate", "s:", "base rate"), ("last_quarter", "^:", "last quarter"))


def reliability(calibration: Mapping[str, Sequence[Mapping]]) -> bytes:
    """Reliability diagram (PNG): observed frequency against mean forecast, per bin.

    ``calibration`` maps a forecaster to its bins (``mean_forecast``, ``observed_frequency``),
    as in ``backtest.json``'s ``calibration``.
    """
    plt = pyplot()
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="calibrated")
        for name, style, label in SERIES:
            rows = calibration.get(name) or []
            if rows:
                x = [r["mean_forecast"] for r in rows]
                y = [r["observed_frequency"] for r in rows]
                ax.plot(x, y, style, label=label)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("forecast probability of a cooperative interaction")
        ax.set_ylabel("observed frequency")
        ax.set_title("Backtest calibration")
        ax.legend(loc="lower right")
        return png_bytes(fig)
