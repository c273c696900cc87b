"""The PNGs `forecast sensitivity` and `forecast priors` write into the run they analysed.

Drawn from the result's JSON (its ``to_dict()``, the same object the run stores), headless.
Workflows sit below reports and import nothing from here: the CLI hands these functions to
``run_sensitivity(plots=...)`` and ``run_priors(plot=...)``.
"""

from __future__ import annotations

import io

import numpy as np

from forecast.runs.layout import PRIOR_PREDICTIVE_PLOT, SENSITIVITY_PRIOR_ODDS_PLOT, SENSITIVITY_TORNADO_PLOT

TORNADO_ROWS = 20


def _pyplot():
    """matplotlib.pyplot on the headless Agg backend (imported on first use: it takes a second)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# --- forecast sensitivity ------------------------------------------------------------------------


def tornado_png(result: dict) -> bytes:
    """The range of the leader's posterior probability over each perturbed prior's variants, largest first."""
    plt = _pyplot()
    labels = {h["id"]: h["label"] for h in result["hypotheses"]}
    leader = result["verdict"]["leader"]
    rows = result["tornado"][:TORNADO_ROWS]
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(rows), 3) + 1.4))
    base = result["base"]["posterior_probabilities"][leader]
    for y, t in enumerate(reversed(rows)):
        ax.barh(y, t["high"] - t["low"], left=t["low"], color="tab:blue" if t["target"] != "all" else "tab:gray")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{labels[t['hypothesis']]}: {t['target']}" for t in reversed(rows)], fontsize=8)
    ax.axvline(base, color="black", lw=1)
    ax.axvline(0.5, color="tab:red", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"posterior probability of '{labels[leader]}' across prior variants")
    ax.set_title("Which prior moves the conclusion most (grey: all priors of a hypothesis jointly)", fontsize=9)
    return _png(fig)


def prior_odds_png(result: dict) -> bytes:
    """Each hypothesis's posterior probability against its prior probability (the others keep their odds)."""
    plt = _pyplot()
    labels = {h["id"]: h["label"] for h in result["hypotheses"]}
    leader = result["verdict"]["leader"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for hid, o in result["prior_odds"].items():
        if not o["curve"]["prior"]:
            continue
        (line,) = ax.plot(o["curve"]["prior"], o["curve"]["posterior"], label=labels[hid])
        ax.plot([o["prior_probability"]], [o["posterior_probability"]], "o", color=line.get_color())
        if hid == leader:
            ax.axvline(o["flip_prior"], color=line.get_color(), ls=":", lw=1)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
    ax.set_xlabel("prior probability of the hypothesis (others keep their relative odds)")
    ax.set_ylabel("posterior probability")
    ax.set_title("Prior odds: dots are the study's priors; dotted line, where the leader changes", fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


def sensitivity_pngs(result: dict) -> dict[str, tuple[str, bytes]]:
    """Both sensitivity plots: key -> (file name in the run, PNG bytes)."""
    return {
        "tornado": (SENSITIVITY_TORNADO_PLOT, tornado_png(result)),
        "prior_odds": (SENSITIVITY_PRIOR_ODDS_PLOT, prior_odds_png(result)),
    }


# --- forecast priors -----------------------------------------------------------------------------


def prior_predictive_png(result: dict) -> bytes:
    """Per group: each hypothesis's prior predictive shares (median, 50% and 90% intervals)."""
    plt = _pyplot()
    hyps = result["hypotheses"]
    groups = list(dict.fromkeys(r["group"] for r in hyps[0]["predictive"]["domain_shares"]))
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 2.4 * len(groups) + 0.6), squeeze=False, sharey=True)
    for ax, g in zip(axes[:, 0], groups, strict=True):
        for k, h in enumerate(hyps):
            rows = [r for r in h["predictive"]["domain_shares"] if r["group"] == g]
            rows += [
                {**r, "domain": f"typical, {r['at']}"}
                for r in h["predictive"]["typical_share"]
                if r["group"] == g and r["at"] != "reference"
            ]
            x = np.arange(len(rows)) + (k - (len(hyps) - 1) / 2) * 0.8 / max(len(hyps), 1)
            med = [r["median"] for r in rows]
            ax.vlines(x, [r["q05"] for r in rows], [r["q95"] for r in rows], lw=1, color=f"C{k}")
            ax.vlines(x, [r["q25"] for r in rows], [r["q75"] for r in rows], lw=3.5, color=f"C{k}")
            ax.plot(x, med, "o", ms=3, color=f"C{k}", label=h["label"] if g == groups[0] else None)
            ax.set_xticks(np.arange(len(rows)))
            ax.set_xticklabels([r["domain"] for r in rows], fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"{g}\ncooperative share", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=len(hyps), loc="upper left", bbox_to_anchor=(0, 1.35))
    fig.suptitle(
        f"Prior predictive cooperative shares at {result['reference_quarter']} (median, 50% and 90% intervals)",
        fontsize=9,
    )
    return _png(fig)


def priors_pngs(result: dict) -> dict[str, tuple[str, bytes]]:
    """The prior predictive plot: key -> (file name in the run, PNG bytes)."""
    return {"plot": (PRIOR_PREDICTIVE_PLOT, prior_predictive_png(result))}


__all__ = ["prior_odds_png", "prior_predictive_png", "priors_pngs", "sensitivity_pngs", "tornado_png"]
