"""The PNGs `forecast sensitivity` and `forecast priors` write into the run they analysed.

The figures are the report's (forecast.reports.plots.sensitivity and .priors, one drawing of each),
fed here from the result's JSON (its ``to_dict()``, the object the run stores). Workflows sit
below reports and import nothing from here: the CLI hands these functions to
``run_sensitivity(plots=...)`` and ``run_priors(plots=...)``, which write what they return.
"""

from __future__ import annotations

from forecast.reports.figures import palette
from forecast.reports.plots import priors as prior_plots
from forecast.reports.plots import sensitivity as sensitivity_plots
from forecast.runs.layout import PRIOR_PREDICTIVE_PLOT, SENSITIVITY_PRIOR_ODDS_PLOT, SENSITIVITY_TORNADO_PLOT

TORNADO_ROWS = 20
QUANTILES = ("q05", "q25", "median", "q75", "q95")


def _labels(result: dict) -> dict[str, str]:
    return {h["id"]: h["label"] for h in result["hypotheses"]}


# --- forecast sensitivity ------------------------------------------------------------------------


def tornado_png(result: dict) -> bytes:
    """The range of the leader's posterior probability over each perturbed prior's variants, largest first."""
    labels = _labels(result)
    leader = result["verdict"]["leader"]
    rows = result["tornado"][:TORNADO_ROWS]
    return sensitivity_plots.tornado(
        [f"{labels[t['hypothesis']]}: {t['target']}" for t in rows],
        [t["low"] for t in rows],
        [t["high"] for t in rows],
        [t["target"] == "all" for t in rows],
        result["base"]["posterior_probabilities"][leader],
        labels[leader],
        palette(list(labels))[leader],
    )


def prior_odds_png(result: dict) -> bytes:
    """Each hypothesis's posterior probability against its prior probability (the others keep their odds)."""
    labels = _labels(result)
    leader = result["verdict"]["leader"]
    odds = result["prior_odds"]
    curves = {hid: (o["curve"]["prior"], o["curve"]["posterior"]) for hid, o in odds.items() if o["curve"]["prior"]}
    points = {hid: (odds[hid]["prior_probability"], odds[hid]["posterior_probability"]) for hid in curves}
    flip = odds.get(leader, {}).get("flip_prior")
    return sensitivity_plots.prior_odds(curves, points, flip, leader, labels, palette(list(labels)))


def sensitivity_pngs(result: dict) -> dict[str, tuple[str, bytes]]:
    """Both sensitivity plots: key -> (file name in the run, PNG bytes)."""
    return {
        "tornado": (SENSITIVITY_TORNADO_PLOT, tornado_png(result)),
        "prior_odds": (SENSITIVITY_PRIOR_ODDS_PLOT, prior_odds_png(result)),
    }


# --- forecast priors -----------------------------------------------------------------------------


def prior_predictive_png(result: dict) -> bytes:
    """Per group: each hypothesis's prior predictive shares per domain at the reference quarter,
    then in a typical domain at the window's ends (median, 50% and 90% intervals)."""
    labels = _labels(result)
    hyps = result["hypotheses"]
    groups = list(dict.fromkeys(r["group"] for r in hyps[0]["predictive"]["domain_shares"]))
    columns: list[list[str]] = []
    intervals: dict[str, list[list[tuple]]] = {}
    for h in hyps:
        intervals[h["id"]] = []
        for g in groups:
            rows = [r for r in h["predictive"]["domain_shares"] if r["group"] == g]
            rows += [r for r in h["predictive"]["typical_share"] if r["group"] == g and r["at"] != "reference"]
            intervals[h["id"]].append([tuple(r[q] for q in QUANTILES) for r in rows])
            if h is hyps[0]:
                columns.append([r["domain"] if "domain" in r else f"typical, {r['quarter']}" for r in rows])
    return prior_plots.prior_predictive(
        groups, columns, intervals, labels, palette(list(labels)), result["reference_quarter"]
    )


def priors_pngs(result: dict) -> dict[str, tuple[str, bytes]]:
    """The prior predictive plot: key -> (file name in the run, PNG bytes)."""
    return {"plot": (PRIOR_PREDICTIVE_PLOT, prior_predictive_png(result))}


__all__ = ["prior_odds_png", "prior_predictive_png", "priors_pngs", "sensitivity_pngs", "tornado_png"]
